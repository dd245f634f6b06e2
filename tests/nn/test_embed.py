"""Embed: parity with Flax 0.12.8 (the table, lookups, ``attend``), and errors that teach.

``test_layers_check_their_inputs_under_jit`` runs Conv, of the next chapter, too.
(``out_sharding`` and the wrong-features error for Embed are in test_linear.py, with
Linear's.)
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx_edu as nnx
from tests.parity import assert_close, assert_same_module, build_both, inputs

BF16 = jnp.bfloat16


@pytest.mark.parametrize('num_embeddings,options', [
    (5, {}), (5, {'param_dtype': BF16}), (5, {'dtype': BF16}), (1, {})])
def test_embed_matches_flax_and_follows_its_index_rules(num_embeddings, options):
  ours, theirs = build_both('Embed', num_embeddings, 3, **options)
  assert_same_module(ours, theirs)
  indices = jnp.array([[0, 1, 2], [-1, -2, 4], [5, 7, -6]])
  y = ours(indices)
  y_theirs = theirs(indices)
  assert y.dtype == y_theirs.dtype
  table = ours.embedding[...].astype(y.dtype).astype(jnp.float32)
  y, y_theirs = y.astype(jnp.float32), y_theirs.astype(jnp.float32)
  np.testing.assert_array_equal(y, y_theirs)  # nan == nan here
  if num_embeddings == 1:  # the single row, broadcast to every index
    np.testing.assert_array_equal(y, jnp.broadcast_to(table[0], (3, 3, 3)))
  else:  # negative indices count from the end; out of range gives nan
    np.testing.assert_array_equal(y[1, 0], table[4])
    assert jnp.isnan(y[2]).all()
  query = inputs(2, 3, dtype=options.get('param_dtype', jnp.float32))
  assert_close(ours.attend(query), theirs.attend(query))


def test_embed_uses_flax_default_initializer():
  ours = nnx.Embed(5, 3, rngs=nnx.Rngs(3))
  expected = jax.nn.initializers.variance_scaling(1.0, 'fan_in', 'normal', out_axis=0)(
      nnx.Rngs(3).params(), (5, 3), jnp.float32)
  np.testing.assert_array_equal(ours.embedding[...], expected)


def test_embed_with_an_integer_table_stays_integer():
  ours, theirs = build_both('Embed', 4, 2, param_dtype=jnp.int32,
                            embedding_init=jax.nn.initializers.constant(7))
  indices = jnp.array([0, 3, -1])
  assert ours(indices).dtype == jnp.int32
  np.testing.assert_array_equal(ours(indices), theirs(indices))


def test_layers_check_their_inputs_under_jit():
  conv, embed = nnx.Conv(4, 8, 3, rngs=nnx.Rngs(0)), nnx.Embed(5, 3, rngs=nnx.Rngs(0))
  x, indices = inputs(2, 9, 4), jnp.array([0, 4])
  np.testing.assert_array_equal(jax.jit(conv)(x), conv(x))
  np.testing.assert_array_equal(jax.jit(embed)(indices), embed(indices))
  with pytest.raises(ValueError, match='Conv: inputs of shape'):
    jax.jit(conv)(inputs(2, 9, 3))


# -- errors that teach ---------------------------------------------------------------
def test_embed_raises_on_float_indices():
  layer = nnx.Embed(5, 3, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='Embed: inputs must be integer indices.*float32'):
    layer(jnp.array([0.0, 1.0]))
