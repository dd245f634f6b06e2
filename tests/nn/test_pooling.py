"""Pooling functions: parity with Flax 0.12.8, and errors that teach.

Pooling has no parameters, so parity means the same outputs (shape, dtype,
values within 1e-6) for the same inputs, over a grid of window shapes,
strides, paddings, batch axes and dtypes.  The inputs are scaled by 4, so that
integer inputs (rounded) take more values than -1, 0 and 1.
"""

import jax
import jax.numpy as jnp
import pytest
from flax import nnx as fnnx
from jax import lax

import nnx_edu as nnx
from tests.parity import assert_close, inputs

BF16 = jnp.bfloat16


# (spatial shape, window_shape, strides, padding)
WINDOWS = [
    ((7,), (3,), None, 'VALID'),
    ((7,), (2,), (2,), 'SAME'),
    ((7,), (4,), (3,), 'same_lower'),
    ((7,), (3,), (2,), ((1, 2),)),
    ((5, 6), (2, 2), (2, 2), 'VALID'),
    ((5, 6), (3, 2), (1, 2), 'same'),
    ((5, 6), (2, 3), None, 'SAME_LOWER'),
    ((5, 6), (3, 3), (2, 1), ((1, 1), (0, 2))),
    ((4, 5, 3), (2, 2, 2), (2, 2, 1), 'SAME'),
    ((4, 5, 3), (3, 2, 1), None, ((1, 0), (1, 1), (0, 0))),
]


FUNCTIONS = ['max_pool', 'min_pool', 'avg_pool']


@pytest.mark.parametrize('fn', FUNCTIONS)
@pytest.mark.parametrize('spatial, window, strides, padding', WINDOWS)
def test_pooling_matches_flax(fn, spatial, window, strides, padding):
  x = inputs(2, *spatial, 3, scale=4)
  assert_close(getattr(nnx, fn)(x, window, strides, padding),
                     getattr(fnnx, fn)(x, window, strides, padding))


@pytest.mark.parametrize('spatial, window, strides, padding', WINDOWS)
def test_avg_pool_without_counting_pads_matches_flax(spatial, window, strides, padding):
  x = inputs(2, *spatial, 3, scale=4)
  assert_close(nnx.avg_pool(x, window, strides, padding, count_include_pad=False),
                     fnnx.avg_pool(x, window, strides, padding, count_include_pad=False))


POOLS = [('max_pool', {}), ('min_pool', {}), ('avg_pool', {'count_include_pad': True}),
         ('avg_pool', {'count_include_pad': False})]


@pytest.mark.parametrize('fn, options', POOLS)
@pytest.mark.parametrize('batch', [(), (2,), (2, 3)])
def test_pooling_takes_any_number_of_batch_axes_like_flax(fn, options, batch):
  x = inputs(*batch, 5, 6, 3, scale=4)
  assert_close(getattr(nnx, fn)(x, (2, 3), (2, 2), 'SAME', **options),
                     getattr(fnnx, fn)(x, (2, 3), (2, 2), 'SAME', **options))


@pytest.mark.parametrize('fn', FUNCTIONS)
@pytest.mark.parametrize('dtype', [BF16, jnp.float16, jnp.int32])
def test_pooling_keeps_the_dtypes_of_flax(fn, dtype):
  x = inputs(2, 5, 6, 3, dtype=dtype, scale=4)
  assert_close(getattr(nnx, fn)(x, (2, 2), padding='SAME'),
                     getattr(fnnx, fn)(x, (2, 2), padding='SAME'))


def test_pool_with_a_custom_reduction_matches_flax():
  x = inputs(2, 5, 6, 3, scale=4)
  assert_close(nnx.pool(x, 1.0, lax.mul, (2, 2), (1, 2), 'SAME'),
                     fnnx.pool(x, 1.0, lax.mul, (2, 2), (1, 2), 'SAME'))


def test_pooling_accepts_lists_where_flax_needs_tuples():
  x = inputs(2, 5, 6, 3, scale=4)
  assert_close(nnx.max_pool(x, [2, 2], [2, 1], [[1, 0], [0, 1]]),
                     fnnx.max_pool(x, (2, 2), (2, 1), ((1, 0), (0, 1))))


def test_pooling_is_differentiable_under_jit_like_flax():
  x = inputs(2, 5, 6, 3, scale=4)
  ours = jax.jit(jax.grad(lambda x: nnx.max_pool(x, (2, 2), padding='SAME').sum()))(x)
  theirs = jax.jit(jax.grad(lambda x: fnnx.max_pool(x, (2, 2), padding='SAME').sum()))(x)
  assert_close(ours, theirs)


# -- errors that teach ------------------------------------------------------------------
def test_pooling_raises_when_window_has_more_axes_than_the_inputs_allow():
  with pytest.raises(ValueError, match=r'max_pool: window_shape \(2, 2\) has 2 spatial axes, so '
                                       r'the inputs need at least 3 axes.*got shape \(4, 4\).*'
                                       r'x\[\.\.\., None\]'):
    nnx.max_pool(jnp.ones((4, 4)), (2, 2))


def test_pooling_raises_on_an_unknown_padding_name():
  with pytest.raises(ValueError, match=r"avg_pool: unknown padding 'FULL'; use one of "
                                       r"\['SAME', 'VALID', 'SAME_LOWER'\]"):
    nnx.avg_pool(jnp.ones((1, 4, 4, 1)), (2, 2), padding='FULL')


def test_pooling_raises_when_strides_do_not_have_one_entry_per_window_axis():
  with pytest.raises(ValueError, match=r'min_pool: strides=\(2,\) has 1 entries but window_shape '
                                       r'\(2, 2\) has 2; give one stride per spatial axis'):
    nnx.min_pool(jnp.ones((1, 4, 4, 1)), (2, 2), strides=(2,))


@pytest.mark.parametrize('padding', [((1, 1),), (1, 1), ((1, 1), (1, 1, 1))])
def test_pooling_raises_when_padding_pairs_do_not_fit_the_window(padding):
  with pytest.raises(ValueError, match=r'pool: padding=.* must give one \(low, high\) pair for '
                                       r'each of the 2 spatial axes'):
    nnx.pool(jnp.ones((1, 4, 4, 1)), 0.0, lax.add, (2, 2), None, padding)
