"""Convolutions: Conv and ConvTranspose, parity with Flax 0.12.8, and errors that teach.

Every parity case builds the layer in both libraries from the same seed and
checks: parameters bit-identical, ``repr`` text equal, the State's shape tree
equal, and outputs within 1e-6 (``tests.parity.check_parity``).  2-D conv
kernels are drawn as (3, 2, 4, 8) where possible: each new shape compiles the
initializer again.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx_edu as nnx
from tests.parity import check_parity, inputs

BF16 = jnp.bfloat16


# -- Conv ----------------------------------------------------------------------------
PADDINGS_2D = ['SAME', 'VALID', 'CIRCULAR', 'REFLECT', 2, (1, 0), ((1, 2), (0, 1))]


@pytest.mark.parametrize('options', [
    {}, {'kernel_dilation': (2, 1), 'feature_group_count': 2, 'use_bias': False}])
@pytest.mark.parametrize('strides', [1, (2, 1)])
@pytest.mark.parametrize('padding', PADDINGS_2D)
def test_conv_matches_flax(padding, strides, options):
  check_parity('Conv', (4, 8, (3, 2), strides), {'padding': padding, **options},
               inputs(2, 7, 6, 4))


@pytest.mark.parametrize('options', [
    {'param_dtype': BF16, 'padding': 'same'},
    {'dtype': BF16, 'preferred_element_type': jnp.float32, 'kernel_dilation': 2},
    {'precision': jax.lax.Precision.HIGHEST, 'padding': 'CIRCULAR', 'strides': 2},
    # lax cannot work out string paddings for dilated inputs, in Flax too
    {'padding': ((1, 2), (0, 1)), 'input_dilation': (1, 2), 'strides': (2, 1)}])
def test_conv_dtypes_precision_and_input_dilation_match_flax(options):
  check_parity('Conv', (4, 8, (3, 2)), options, inputs(2, 7, 6, 4))


@pytest.mark.parametrize('shape', [(7, 6, 4), (2, 3, 7, 6, 4)])
def test_conv_takes_inputs_without_or_with_several_batch_axes(shape):
  check_parity('Conv', (4, 8, (3, 2)), {'strides': 2}, inputs(*shape))


@pytest.mark.parametrize('kernel_dilation', [1, 2])
@pytest.mark.parametrize('strides', [1, 2])
def test_conv_causal_padding_matches_flax(strides, kernel_dilation):
  x = inputs(2, 9, 4)
  ours, _ = check_parity('Conv', (4, 8, 3, strides),
                         {'padding': 'CAUSAL', 'kernel_dilation': kernel_dilation}, x)
  if strides == 1:  # output t sees inputs <= t only
    changed_future = x.at[:, 5:].set(0.0)
    np.testing.assert_array_equal(ours(x)[:, :5], ours(changed_future)[:, :5])


def test_conv_with_mask_matches_flax_and_multiplies_the_kernel():
  mask = jnp.tril(jnp.ones((3, 4, 8)))
  x = inputs(2, 9, 4)
  masked, _ = check_parity('Conv', (4, 8, 3), {'mask': mask, 'padding': 'VALID'}, x)
  plain = nnx.Conv(4, 8, 3, padding='VALID', rngs=nnx.Rngs(0))
  plain.kernel[...] = plain.kernel[...] * mask
  np.testing.assert_array_equal(masked(x), plain(x))


# -- ConvTranspose -------------------------------------------------------------------
@pytest.mark.parametrize('options', [
    {}, {'transpose_kernel': True, 'kernel_dilation': (1, 2), 'use_bias': False}])
@pytest.mark.parametrize('strides', [None, (2, 1)])
@pytest.mark.parametrize('padding', ['SAME', 'VALID', 'CIRCULAR', 1, ((1, 2), (0, 1))])
def test_conv_transpose_matches_flax(padding, strides, options):
  check_parity('ConvTranspose', (4, 3, (3, 2), strides), {'padding': padding, **options},
               inputs(2, 5, 4, 4))


@pytest.mark.parametrize('options', [
    {'param_dtype': BF16, 'padding': 'CIRCULAR', 'strides': 2},
    {'dtype': BF16, 'preferred_element_type': jnp.float32, 'kernel_dilation': 2},
    {'precision': jax.lax.Precision.HIGHEST, 'transpose_kernel': True, 'padding': 'CIRCULAR',
     'strides': (1, 3)}])
def test_conv_transpose_dtypes_and_precision_match_flax(options):
  check_parity('ConvTranspose', (4, 3, (3, 2)), options, inputs(2, 5, 4, 4))


@pytest.mark.parametrize('shape', [(5, 4, 4), (2, 3, 5, 4, 4)])
def test_conv_transpose_takes_inputs_without_or_with_several_batch_axes(shape):
  mask = jnp.ones((3, 2, 4, 3)).at[0].set(0.0)
  check_parity('ConvTranspose', (4, 3, (3, 2), 2), {'mask': mask, 'padding': 'CIRCULAR'},
               inputs(*shape))


# -- errors that teach ---------------------------------------------------------------
@pytest.mark.parametrize('name', ['Conv', 'ConvTranspose'])
def test_convs_raise_on_an_unknown_padding_string_and_list_the_valid_ones(name):
  layer = getattr(nnx, name)(4, 3, (3, 2), padding='SAMEE', rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=rf"{name}: unknown padding 'SAMEE'; use one of \['SAME'"):
    layer(jnp.ones((1, 5, 4, 4)))


def test_conv_raises_when_causal_padding_is_not_1d():
  layer = nnx.Conv(4, 8, (3, 2), padding='CAUSAL', rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='1-D convolutions only'):
    layer(jnp.ones((1, 5, 5, 4)))


def test_conv_raises_when_padding_pairs_do_not_match_the_kernel_rank():
  layer = nnx.Conv(4, 8, (3, 2), padding=((1, 1),), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='for each of the 2 spatial axes'):
    layer(jnp.ones((1, 5, 5, 4)))


def test_conv_raises_when_strides_do_not_match_the_kernel_rank():
  layer = nnx.Conv(4, 8, (3, 2), strides=(1, 2, 1), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r'strides=\(1, 2, 1\) has 3 entries'):
    layer(jnp.ones((1, 5, 5, 4)))


def test_conv_raises_when_kernel_size_does_not_fit_input_rank():
  layer = nnx.Conv(4, 8, (3, 2), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r'kernel_size \(3, 2\) has 2 spatial axes.*\(8, 4\)'):
    layer(jnp.ones((8, 4)))


@pytest.mark.parametrize('in_features,out_features', [(6, 4), (4, 6)])
def test_conv_raises_when_feature_group_count_does_not_divide_the_features(in_features,
                                                                           out_features):
  with pytest.raises(ValueError, match='feature_group_count=4 must divide both'):
    nnx.Conv(in_features, out_features, 3, feature_group_count=4, rngs=nnx.Rngs(0))


@pytest.mark.parametrize('name', ['Conv', 'ConvTranspose'])
def test_convs_raise_when_the_mask_shape_differs_from_the_kernel(name):
  with pytest.raises(ValueError, match=rf'{name}: mask of shape \(3, 3\) .* \(3, 2, 4\)'):
    getattr(nnx, name)(2, 4, 3, mask=jnp.ones((3, 3)), rngs=nnx.Rngs(0))
