"""The attention functions (masks, dot_product_attention and its weights), against Flax 0.12.8."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx as fnnx
from flax.nnx.nn import attention as fattention

import nnx_edu as nnx

# Test data comes from NumPy: every new shape given to jax.random costs a compile.
RNG = np.random.default_rng(0)
PADDING = jnp.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])


@pytest.mark.parametrize('extra_batch_dims', [0, 2])
def test_mask_helpers_match_flax(extra_batch_dims):
  ours = nnx.make_causal_mask(PADDING, extra_batch_dims=extra_batch_dims)
  np.testing.assert_array_equal(ours, fnnx.make_causal_mask(PADDING, extra_batch_dims))
  pad = lambda lib: lib.make_attention_mask(PADDING, PADDING[:, :4], jnp.logical_and,
                                            extra_batch_dims, dtype=jnp.int32)
  np.testing.assert_array_equal(pad(nnx), pad(fnnx))
  assert nnx.combine_masks(None, None) is None


@pytest.mark.parametrize('heads, kv_heads, depth, dropout_rate', [(2, 2, 4, 0.0), (4, 2, 2, 0.4)])
def test_attention_functions_match_flax_with_two_batch_axes(heads, kv_heads, depth, dropout_rate):
  # (head shapes as in the layers above, so that JAX compiles little that is new)
  q = jnp.asarray(RNG.normal(size=(1, 2, 5, heads, depth)), jnp.float32)
  k, v = (jnp.asarray(RNG.normal(size=(1, 2, 5, kv_heads, depth)), jnp.float32) for _ in 'kv')
  mask = jnp.asarray(RNG.random((1, 2, 1, 5, 5)) < 0.7)
  kwargs = dict(mask=mask, dropout_rate=dropout_rate, dropout_rng=jax.random.key(0))
  np.testing.assert_allclose(nnx.dot_product_attention(q, k, v, **kwargs),
                             fattention.dot_product_attention(q, k, v, **kwargs), atol=1e-6)
  np.testing.assert_allclose(nnx.dot_product_attention_weights(q, k, **kwargs),
                             fattention.dot_product_attention_weights(q, k, **kwargs), atol=1e-6)


# -- errors that teach ----------------------------------------------------------
def test_combine_masks_raises_when_ranks_differ():
  with pytest.raises(ValueError, match='combine_masks: all masks must have the same rank'):
    nnx.combine_masks(jnp.ones((1, 5, 5)), jnp.ones((2, 1, 5, 5)))


@pytest.mark.parametrize('key_shape, value_shape, rule', [
    ((1, 5, 2, 4), (1, 5, 2, 4), 'equal batch axes'),
    ((2, 5, 2, 3), (2, 5, 2, 4), 'same depth'),
    ((2, 5, 2, 4), (2, 6, 2, 4), 'same length'),
    ((2, 5, 3, 4), (2, 5, 3, 4), 'multiple of the key/value heads'),
])
def test_dot_product_attention_raises_on_mismatched_shapes(key_shape, value_shape, rule):
  q = jnp.ones((2, 5, 2, 4))
  with pytest.raises(ValueError, match=f'dot_product_attention: .*{rule}'):
    nnx.dot_product_attention(q, jnp.ones(key_shape), jnp.ones(value_shape))
