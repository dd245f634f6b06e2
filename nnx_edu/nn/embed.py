"""Layers -- Embed: a table of learned vectors, looked up by index.

An embedding is a linear layer for one-hot inputs: multiplying a one-hot
vector by a ``(num_embeddings, features)`` table picks one row, so ``Embed``
looks the row up instead of multiplying.  ``attend`` goes the other way and
multiplies vectors by the transposed table, which is how a language model
shares one table between its input embedding and its output logits.

The table is drawn from ``rngs.params()`` with a fan-in scaled normal, as
in Flax, so the same seed gives the same rows.

>>> import jax.numpy as jnp
>>> import nnx_edu as nnx
>>> nnx.Embed(num_embeddings=10, features=4, rngs=nnx.Rngs(0))(jnp.array([1, 7])).shape
(2, 4)
"""

from __future__ import annotations

import typing as tp

import jax
import jax.numpy as jnp

from nnx_edu.core.module import Module
from nnx_edu.core.rngs import Rngs
from nnx_edu.core.variable_types import Param
from nnx_edu.nn import dtypes, initializers
from nnx_edu.nn.common import NO_METADATA, Array, Dtype, Initializer, Metadata, check_features

__all__ = ['Embed']

# Embedding rows are unit vectors in expectation: fan_in counts the features.
default_embed_init = initializers.variance_scaling(1.0, 'fan_in', 'normal', out_axis=0)


class Embed(Module):
  """A table of ``num_embeddings`` learned vectors of size ``features``.

  Calling it with integer indices returns their rows, with a ``features``
  axis appended to the indices' shape.  Negative indices count from the end;
  indices ``>= num_embeddings`` give ``nan``.  With ``num_embeddings == 1``
  the single row is broadcast to every index.

  Args:
    num_embeddings: number of rows (the vocabulary size).
    features: size of each row.
    dtype: dtype of the output (default: the embedding's dtype).
    param_dtype: dtype of the table (default float32).
    embedding_init: initializer of the table (default
      ``variance_scaling(1.0, 'fan_in', 'normal', out_axis=0)``).
    promote_dtype: casts ``(embedding,)`` in a call, ``(query, embedding)``
      in ``attend``.
    rngs: where the table's key comes from (``rngs.params()``).
    embedding_metadata: extra metadata for the ``embedding`` Param.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> layer = nnx.Embed(num_embeddings=5, features=3, rngs=nnx.Rngs(0))
  >>> layer(jnp.array([[0, 1, 2], [-1, -2, -3]])).shape
  (2, 3, 3)
  >>> bool(jnp.isnan(layer(jnp.array(5))).all())   # out of range
  True
  """

  def __init__(self, num_embeddings: int, features: int, *, dtype: Dtype | None = None,
               param_dtype: Dtype = jnp.float32,
               embedding_init: Initializer = default_embed_init,
               promote_dtype: tp.Callable[..., tuple] = dtypes.promote_dtype, rngs: Rngs,
               embedding_metadata: Metadata = NO_METADATA):
    self.embedding = Param(embedding_init(rngs.params(), (num_embeddings, features), param_dtype),
                           **embedding_metadata)
    self.num_embeddings = num_embeddings
    self.features = features
    self.dtype = dtype or self.embedding.dtype
    self.param_dtype = param_dtype
    self.promote_dtype = promote_dtype

  def __call__(self, inputs: Array, out_sharding: tp.Any = None) -> Array:
    inputs = jnp.asarray(inputs)
    if not jnp.issubdtype(inputs.dtype, jnp.integer):
      raise ValueError(
          f'Embed: inputs must be integer indices into the embedding table, got dtype '
          f'{inputs.dtype}. Cast them, e.g. inputs.astype(jnp.int32); to multiply '
          'vectors by the table, use Embed.attend.')
    # inexact=False: an integer table stays integer.
    (embedding,) = self.promote_dtype((self.embedding[...],), dtype=self.dtype, inexact=False)
    if self.num_embeddings == 1:
      return jnp.broadcast_to(embedding, (*inputs.shape, self.features))

    def take(table: Array, indices: Array) -> Array:
      # jnp.take wraps negative indices and fills out-of-range ones with nan.
      return jnp.take(table, indices, axis=0)

    if out_sharding is not None:  # jnp.take has no out_sharding argument
      take = jax.sharding.auto_axes(out_sharding=out_sharding)(take)
    return take(embedding, inputs)

  def attend(self, query: Array, out_sharding: tp.Any = None) -> Array:
    """Scores of ``query`` against every row: ``query @ embedding.T``.

    Used to share one table between the input embedding and the output
    logits of a language model.

    >>> import jax.numpy as jnp
    >>> import nnx_edu as nnx
    >>> layer = nnx.Embed(num_embeddings=5, features=3, rngs=nnx.Rngs(0))
    >>> layer.attend(jnp.ones((2, 3))).shape
    (2, 5)
    """
    check_features(self, query, (-1,), (self.features,), param='embedding',
                   what='features')
    query, embedding = self.promote_dtype((query, self.embedding[...]), dtype=self.dtype)
    return jnp.dot(query, embedding.T, out_sharding=out_sharding)
