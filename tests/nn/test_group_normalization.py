"""Spec of GroupNorm and InstanceNorm (InstanceNorm is GroupNorm with one channel per group).

Each layer is built twice, by nnx_edu and by flax 0.12.8 from the same seed,
and must give bit-identical parameters and state, outputs within 1e-6 and
equal repr text.  GroupNorm also runs in the tests of test_normalization.py
that cover every layer of that chapter; the dtype error here covers the next
chapter's SpectralNorm and WeightNorm too.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx as fnnx

import nnx_edu as nnx
from tests.parity import (assert_close, assert_same_module, assert_same_state,
                          assert_same_variables, build_both, offset_inputs, random_mask)


# -- GroupNorm --------------------------------------------------------------------
GROUP_CASES = [  # (input shape, constructor arguments, masked)
    ((2, 4, 5, 6), dict(num_groups=3), False),
    ((2, 4, 5, 6), dict(num_groups=3), True),
    ((2, 4, 6), dict(num_groups=None, group_size=3), False),
    ((2, 4, 6), dict(num_groups=1), True),
    ((2, 4, 6), dict(num_groups=6, use_fast_variance=False), False),
    ((2, 4, 5, 6), dict(num_groups=2, reduction_axes=(1, 2, 3)), True),
    ((2, 6), dict(num_groups=2, epsilon=1e-3), False),
    ((5, 6), dict(num_groups=3, use_bias=False, use_scale=False), False),  # no batch axis
    ((2, 4, 6), dict(num_groups=2, dtype=jnp.bfloat16), False),
    ((2, 4, 6), dict(num_groups=2, param_dtype=jnp.bfloat16,
                     scale_init=nnx.initializers.normal(1.0)), True),
]


@pytest.mark.parametrize('shape, kwargs, masked', GROUP_CASES)
def test_groupnorm_matches_flax(shape, kwargs, masked):
  ours, theirs = build_both('GroupNorm', 6, **kwargs)
  x = offset_inputs(*shape)
  mask = random_mask(*shape).at[..., 0].set(True) if masked else None
  assert_close(ours(x, mask=mask), theirs(x, mask=mask))
  assert_same_variables(ours, theirs)


def test_groupnorm_accepts_a_mask_that_broadcasts_over_the_channels():
  layer = nnx.GroupNorm(6, num_groups=2, rngs=nnx.Rngs(0))
  x, mask = offset_inputs(2, 4, 6), random_mask(2, 4, 1).at[:, 0].set(True)
  np.testing.assert_array_equal(layer(x, mask=mask),
                                layer(x, mask=jnp.broadcast_to(mask, x.shape)))


def test_groupnorm_keeps_two_unreduced_axes_apart():
  # Flax 0.12.8 repeats the group statistics along axis 1, which mixes them
  # up when two axes are not reduced; each (b, t, group) has its own here.
  layer = nnx.GroupNorm(6, num_groups=2, reduction_axes=(2, 3), rngs=nnx.Rngs(0))
  x = offset_inputs(2, 3, 4, 6)
  groups = np.asarray(x).reshape(2, 3, 4, 2, 3)  # (b, t, h, group, channel in group)
  mean, var = groups.mean((2, 4), keepdims=True), groups.var((2, 4), keepdims=True)
  expected = ((groups - mean) / np.sqrt(var + 1e-6)).reshape(x.shape)
  np.testing.assert_allclose(layer(x), expected, atol=1e-5)


# -- InstanceNorm ------------------------------------------------------------------
@pytest.mark.parametrize('kwargs', [
    dict(),
    dict(use_bias=False),
    dict(use_scale=False, epsilon=1e-3),
    dict(param_dtype=jnp.bfloat16, scale_init=nnx.initializers.normal(1.0),
         bias_init=nnx.initializers.uniform()),
    dict(param_dtype=jnp.float16, dtype=jnp.float16, feature_axes=(1, 2)),
    dict(axis_name='batch', axis_index_groups=[[0, 1]], use_fast_variance=False),
])
def test_instancenorm_repr_and_parameters_match_flax(kwargs):
  assert_same_module(*build_both('InstanceNorm', 6, **kwargs))


def test_instancenorm_metadata_reaches_the_parameters():
  ours, theirs = build_both('InstanceNorm', 4, scale_metadata={'note': 'gamma'},
                                bias_metadata={'note': 'beta'})
  assert ours.scale.note == theirs.scale.note == 'gamma'
  assert ours.bias.note == theirs.bias.note == 'beta'


INSTANCE_CASES = [  # (input shape, num_features, constructor arguments, mask shape or None)
    ((2, 4, 5, 6), 6, dict(), None),
    ((2, 4, 5, 6), 6, dict(), (2, 4, 5, 6)),
    ((2, 4, 5, 6), 6, dict(), (2, 4, 5, 1)),
    ((2, 4, 6), 6, dict(use_fast_variance=False, epsilon=1e-3), (2, 4, 6)),
    ((2, 4, 5, 6), 4, dict(feature_axes=1), None),
    ((2, 4, 5, 6), 24, dict(feature_axes=(1, -1)), None),
    ((2, 4, 5, 6), 30, dict(feature_axes=(-1, -2)), (2, 1, 5, 6)),
    ((2, 3, 6), 6, dict(use_bias=False, use_scale=False), None),
    ((2, 3, 6), 6, dict(dtype=jnp.bfloat16), None),
    ((2, 3, 6), 6, dict(dtype=jnp.float16, param_dtype=jnp.float16), None),
    ((2, 3, 6), 6, dict(param_dtype=jnp.bfloat16, scale_init=nnx.initializers.normal(1.0)),
     (2, 3, 1)),
    ((2, 6), 6, dict(), None),  # nothing left to reduce: every output is the bias
]


@pytest.mark.parametrize('shape, num_features, kwargs, mask_shape', INSTANCE_CASES)
def test_instancenorm_matches_flax(shape, num_features, kwargs, mask_shape):
  ours, theirs = build_both('InstanceNorm', num_features, **kwargs)
  x = offset_inputs(*shape)
  mask = None if mask_shape is None else random_mask(*mask_shape).at[:, 0].set(True)
  assert_close(ours(x, mask=mask), theirs(x, mask=mask))
  assert_same_state(ours, theirs)


@pytest.mark.parametrize('dtype', [jnp.bfloat16, jnp.float16])
def test_instancenorm_half_precision_input_keeps_its_dtype_like_flax(dtype):
  ours, theirs = build_both('InstanceNorm', 6, param_dtype=dtype)
  x = offset_inputs(2, 5, 6, dtype=dtype)
  assert ours(x).dtype == dtype
  assert_close(ours(x), theirs(x))


def test_instancenorm_is_groupnorm_with_one_channel_per_group():
  x = offset_inputs(2, 4, 5, 6)
  y = nnx.InstanceNorm(6, rngs=nnx.Rngs(0))(x)
  np.testing.assert_allclose(y, nnx.GroupNorm(6, num_groups=6, rngs=nnx.Rngs(0))(x), atol=1e-5)
  layer_norm = nnx.LayerNorm(6, reduction_axes=(1, 2), feature_axes=-1, rngs=nnx.Rngs(0))
  np.testing.assert_allclose(y, layer_norm(x), atol=1e-5)


def test_instancenorm_axis_name_averages_across_vmap_like_flax():
  ours, theirs = build_both('InstanceNorm', 6, axis_name='batch')
  x = offset_inputs(4, 2, 3, 6)  # vmapped over the 4: each call sees (2, 3, 6)

  def under_vmap(lib, layer):
    graphdef, state = lib.split(layer)
    return jax.vmap(lambda x, state: lib.merge(graphdef, state)(x), axis_name='batch',
                    in_axes=(0, None))(x, state)

  assert_close(under_vmap(nnx, ours), under_vmap(fnnx, theirs))


# -- errors that teach ---------------------------------------------------------------
@pytest.mark.parametrize('kwargs, given', [(dict(num_groups=4), 'num_groups=4'),
                                           (dict(num_groups=None, group_size=4), 'group_size=4')])
def test_groupnorm_raises_when_the_groups_do_not_divide_num_features(kwargs, given):
  with pytest.raises(ValueError, match=re.escape(
      f'{given} does not divide num_features=6 into equal groups. Choose')) as error:
    nnx.GroupNorm(6, **kwargs, rngs=nnx.Rngs(0))
  assert '[1, 2, 3, 6]' in str(error.value)
  with pytest.raises(ValueError):  # Flax refuses it too
    fnnx.GroupNorm(6, **kwargs, rngs=fnnx.Rngs(0))


@pytest.mark.parametrize('num_groups, group_size', [(None, None), (2, 3)])
def test_groupnorm_raises_unless_given_exactly_one_of_num_groups_and_group_size(
    num_groups, group_size):
  with pytest.raises(ValueError, match='exactly one of num_groups and group_size.*num_groups=None'):
    nnx.GroupNorm(6, num_groups, group_size, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError):
    fnnx.GroupNorm(6, num_groups, group_size, rngs=fnnx.Rngs(0))


def test_groupnorm_raises_when_reduction_axes_leave_out_the_channels():
  layer = nnx.GroupNorm(6, num_groups=2, reduction_axes=(1, 2), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r'must include the last axis.*Add -1'):
    layer(offset_inputs(2, 3, 4, 6))


@pytest.mark.parametrize('name', ['InstanceNorm', 'SpectralNorm', 'WeightNorm'])
def test_layers_raise_when_dtype_is_not_floating_point(name):
  def build(lib):
    if name == 'InstanceNorm':
      return lib.InstanceNorm(6, dtype=jnp.int32, rngs=lib.Rngs(0))
    return getattr(lib, name)(lib.Linear(6, 2, rngs=lib.Rngs(0)), dtype=jnp.int32,
                              rngs=lib.Rngs(1))

  with pytest.raises(ValueError, match=rf'{name}: dtype=int32 is not a floating-point type'):
    build(nnx)
  with pytest.raises(ValueError):  # Flax refuses it only when called
    build(fnnx)(jnp.ones((2, 6)))


def test_instancenorm_raises_when_the_input_features_differ_from_num_features():
  with pytest.raises(ValueError, match=r'InstanceNorm was built for num_features=6, but the '
                                       r'input of shape \(2, 3, 4\) has 4 features on '
                                       r'feature_axes=-1.*num_features=4'):
    nnx.InstanceNorm(6, rngs=nnx.Rngs(0))(jnp.ones((2, 3, 4)))
  with pytest.raises((TypeError, ValueError)):  # Flax fails too, deep inside JAX
    fnnx.InstanceNorm(6, rngs=fnnx.Rngs(0))(jnp.ones((2, 3, 4)))


def test_instancenorm_raises_when_feature_axes_include_the_batch_axis():
  with pytest.raises(ValueError, match=r'InstanceNorm: feature_axes=\(0, -1\) includes axis 0 '
                                       r'.*axis 0 is the batch.*x\[None\]'):
    nnx.InstanceNorm(6, feature_axes=(0, -1), rngs=nnx.Rngs(0))(jnp.ones((2, 3, 6)))
  with pytest.raises(ValueError):  # Flax refuses it too
    fnnx.InstanceNorm(6, feature_axes=(0, -1), rngs=fnnx.Rngs(0))(jnp.ones((2, 3, 6)))


def test_instancenorm_raises_when_feature_axes_are_out_of_range():
  with pytest.raises(ValueError, match=r'InstanceNorm: feature_axes=3 names axis 3, but the '
                                       r'input of shape \(2, 3, 6\) has rank 3, so its axes '
                                       r'are -3..2'):
    nnx.InstanceNorm(6, feature_axes=3, rngs=nnx.Rngs(0))(jnp.ones((2, 3, 6)))
  with pytest.raises(IndexError):  # Flax fails deep inside
    fnnx.InstanceNorm(6, feature_axes=3, rngs=fnnx.Rngs(0))(jnp.ones((2, 3, 6)))


def test_instancenorm_raises_when_the_mask_does_not_broadcast_to_the_input():
  with pytest.raises(ValueError, match=r'InstanceNorm: the mask of shape \(4,\) does not '
                                       r'broadcast to the input of shape \(2, 3, 6\)'):
    nnx.InstanceNorm(6, rngs=nnx.Rngs(0))(jnp.ones((2, 3, 6)), mask=jnp.ones(4, bool))
  with pytest.raises((TypeError, ValueError)):
    fnnx.InstanceNorm(6, rngs=fnnx.Rngs(0))(jnp.ones((2, 3, 6)), mask=jnp.ones(4, bool))
