"""Layers -- attention functions: masks and scaled dot-product attention.

The pure functions that ``MultiHeadAttention`` (the next chapter) is built
on, usable on their own:

* ``dot_product_attention_weights`` -- ``softmax(q . k / sqrt(depth))``,
  with a mask, a bias and dropout;
* ``dot_product_attention`` -- those weights applied to the values;
* masks: ``make_attention_mask`` (from padding), ``make_causal_mask`` (no
  peeking at the future) and ``combine_masks``.  ``True`` means "may attend";
  a mask must broadcast to the weights' shape ``[batch..., heads, q_len, kv_len]``.

>>> import jax.numpy as jnp
>>> import nnx_edu as nnx
>>> q = k = v = jnp.ones((1, 5, 2, 4))         # [batch, length, heads, depth]
>>> mask = nnx.make_causal_mask(jnp.ones((1, 5)))
>>> nnx.dot_product_attention(q, k, v, mask=mask).shape
(1, 5, 2, 4)
"""

from __future__ import annotations

import functools
import math
import typing as tp

import jax
import jax.numpy as jnp
import numpy as np

from nnx_edu.core.module import Module
from nnx_edu.core.variable_types import Intermediate
from nnx_edu.nn.common import Array, PromoteDtype
from nnx_edu.nn.dtypes import promote_dtype as default_promote_dtype

__all__ = ['combine_masks', 'dot_product_attention', 'dot_product_attention_weights',
           'make_attention_mask', 'make_causal_mask']


# -- masks ------------------------------------------------------------------------
def make_attention_mask(query_input: Array, key_input: Array,
                        pairwise_fn: tp.Callable[..., Array] = jnp.multiply,
                        extra_batch_dims: int = 0, dtype: tp.Any = jnp.float32) -> Array:
  """A ``[batch..., 1, q_len, kv_len]`` mask: ``pairwise_fn(query_i, key_j)``.

  The size-1 axis broadcasts over the heads.  With the default
  ``jnp.multiply``, a padding indicator (1 = real token, 0 = padding) gives
  a mask that hides padded positions.

  >>> import jax.numpy as jnp
  >>> tokens = jnp.array([[1, 1, 0]])   # the last token is padding
  >>> make_attention_mask(tokens, tokens)[0, 0]
  Array([[1., 1., 0.],
         [1., 1., 0.],
         [0., 0., 0.]], dtype=float32)
  """
  mask = pairwise_fn(jnp.expand_dims(query_input, -1), jnp.expand_dims(key_input, -2))
  mask = jnp.expand_dims(mask, -3)
  mask = jnp.expand_dims(mask, tuple(range(extra_batch_dims)))
  return mask.astype(dtype)


def make_causal_mask(x: Array, extra_batch_dims: int = 0, dtype: tp.Any = jnp.float32) -> Array:
  """A ``[batch..., 1, len, len]`` mask letting position ``i`` see positions ``<= i``.

  Only the shape of ``x`` (``[batch..., len]``) is used.

  >>> import jax.numpy as jnp
  >>> make_causal_mask(jnp.ones((1, 3)))[0, 0]
  Array([[1., 0., 0.],
         [1., 1., 0.],
         [1., 1., 1.]], dtype=float32)
  """
  positions = jnp.broadcast_to(jnp.arange(x.shape[-1], dtype=jnp.int32), x.shape)
  return make_attention_mask(positions, positions, jnp.greater_equal,
                             extra_batch_dims=extra_batch_dims, dtype=dtype)


def combine_masks(*masks: Array | None, dtype: tp.Any = jnp.float32) -> Array | None:
  """The logical AND of the masks that are not ``None`` (``None`` if there are none).

  >>> import jax.numpy as jnp
  >>> combine_masks(jnp.array([1, 1, 0]), None, jnp.array([0, 1, 1]))
  Array([0., 1., 0.], dtype=float32)
  """
  given = [m for m in masks if m is not None]
  if not given:
    return None
  if len({m.ndim for m in given}) > 1:
    raise ValueError(
        f'combine_masks: all masks must have the same rank, got shapes '
        f'{[m.shape for m in given]}. Add size-1 axes (jnp.expand_dims) so the ranks agree.'
    )
  return functools.reduce(jnp.logical_and, given).astype(dtype)


def check_mask(caller: str, mask: Array | None, weights_shape: tuple[int, ...]) -> None:
  """Raise if ``mask`` cannot broadcast to the attention weights' shape.

  >>> import jax.numpy as jnp
  >>> check_mask('MultiHeadAttention', jnp.ones((2, 1, 4, 4)), (2, 8, 4, 4))   # fits
  """
  if mask is None:
    return
  try:
    fits = np.broadcast_shapes(mask.shape, weights_shape) == tuple(weights_shape)
  except ValueError:
    fits = False
  if not fits:
    raise ValueError(
        f'{caller}: mask of shape {mask.shape} cannot broadcast to the attention '
        f'weights, of shape {tuple(weights_shape)} = [batch..., num_heads, q_length, '
        'kv_length]. Use size 1 for the axes the mask does not depend on, e.g. '
        'make_causal_mask / make_attention_mask give [batch..., 1, q_length, kv_length].'
    )


# -- the attention functions ----------------------------------------------------
def dot_product_attention_weights(
    query: Array, key: Array, bias: Array | None = None, mask: Array | None = None,
    broadcast_dropout: bool = True, dropout_rng: Array | None = None,
    dropout_rate: float = 0.0, deterministic: bool = False, dtype: tp.Any = None,
    precision: tp.Any = None, module: Module | None = None,
    promote_dtype: PromoteDtype = default_promote_dtype, is_causal: bool = False) -> Array:
  """The attention weights ``softmax(q . k / sqrt(depth))``, masked and dropped out.

  ``query`` is ``[batch..., q_len, heads, depth]`` and ``key``
  ``[batch..., kv_len, kv_heads, depth]``; with fewer key heads than query
  heads, each key head serves a group of query heads (grouped-query
  attention).  If ``module`` is given, the weights are sown into it as
  ``attention_weights`` (an ``Intermediate``).

  >>> import jax.numpy as jnp
  >>> q = k = jnp.ones((1, 3, 2, 4))   # [batch, length, heads, depth]
  >>> w = dot_product_attention_weights(q, k, is_causal=True)
  >>> w.shape, (6 * w[0, 0]).round().tolist()   # row i spreads over positions <= i
  ((1, 2, 3, 3), [[6.0, 0.0, 0.0], [3.0, 3.0, 0.0], [2.0, 2.0, 2.0]])
  """
  query, key = promote_dtype((query, key), dtype=dtype)
  dtype = query.dtype
  weights_shape = _check_shapes('dot_product_attention_weights', query, key, None, mask)
  heads, kv_heads = query.shape[-2], key.shape[-2]
  # Scale the queries (not the product) by 1/sqrt(depth), as Flax does.
  query = query / jnp.sqrt(query.shape[-1]).astype(dtype)
  # Grouped-query attention: split query heads into [kv_heads, group] so that
  # each key head is contracted with its group, then merge the two axes back.
  group = heads // kv_heads
  query = query.reshape(*query.shape[:-2], kv_heads, group, query.shape[-1])
  weights = jnp.einsum('...qhgd,...khd->...hgqk', query, key, precision=precision)
  weights = weights.reshape(weights_shape)
  if bias is not None:
    weights = weights + bias
  # Masked-out logits get finfo.min, not -inf, so that a row with every
  # position masked becomes uniform after the softmax instead of NaN.
  if mask is not None:
    weights = jnp.where(mask, weights, jnp.finfo(dtype).min)
  if is_causal:
    causal = jnp.tril(jnp.ones(weights_shape[-2:], dtype=bool))
    weights = jnp.where(causal, weights, jnp.finfo(dtype).min)
  weights = jax.nn.softmax(weights).astype(dtype)
  if module is not None:
    module.sow(Intermediate, 'attention_weights', weights)
  if not deterministic and dropout_rate > 0.0:
    keep_prob = 1.0 - dropout_rate
    # broadcast_dropout shares one mask over the batch and head axes
    shape = (1,) * (key.ndim - 2) + weights_shape[-2:] if broadcast_dropout else weights_shape
    keep = jax.random.bernoulli(dropout_rng, keep_prob, shape)
    weights = weights * (keep.astype(dtype) / jnp.asarray(keep_prob, dtype=dtype))
  return weights


def dot_product_attention(
    query: Array, key: Array, value: Array, bias: Array | None = None,
    mask: Array | None = None, broadcast_dropout: bool = True,
    dropout_rng: Array | None = None, dropout_rate: float = 0.0,
    deterministic: bool = False, dtype: tp.Any = None, precision: tp.Any = None,
    module: Module | None = None, promote_dtype: PromoteDtype = default_promote_dtype,
    is_causal: bool = False) -> Array:
  """Attention: the attention weights applied to ``value``.

  Shapes: ``query`` ``[batch..., q_len, heads, depth]``, ``key`` and
  ``value`` ``[batch..., kv_len, kv_heads, depth]``; the result is
  ``[batch..., q_len, heads, v_depth]``.  Without dropout and without
  sowing, this calls JAX's fused ``jax.nn.dot_product_attention``;
  otherwise it computes the weights with ``dot_product_attention_weights``.

  >>> import jax, jax.numpy as jnp
  >>> q = k = v = jax.random.normal(jax.random.key(0), (2, 5, 4, 8))
  >>> dot_product_attention(q, k, v).shape
  (2, 5, 4, 8)
  """
  query, key, value = promote_dtype((query, key, value), dtype=dtype)
  _check_shapes('dot_product_attention', query, key, value, mask)
  if dropout_rate == 0.0 and module is None:
    return _fused_attention(query, key, value, bias, mask, is_causal)
  weights = dot_product_attention_weights(
      query, key, bias, mask, broadcast_dropout, dropout_rng, dropout_rate,
      deterministic, dtype, precision, module, promote_dtype, is_causal)
  # Grouped-query attention again: weights [.., kv_heads, group, q, k] x value.
  kv_heads = value.shape[-2]
  weights = weights.reshape(*weights.shape[:-3], kv_heads, -1, *weights.shape[-2:])
  out = jnp.einsum('...hgqk,...khd->...qhgd', weights, value, precision=precision)
  return out.reshape(*out.shape[:-3], query.shape[-2], value.shape[-1])


def _fused_attention(query: Array, key: Array, value: Array, bias: Array | None,
                     mask: Array | None, is_causal: bool) -> Array:
  """``jax.nn.dot_product_attention``, which takes at most one batch axis."""
  shape = query.shape
  if len(shape) > 4:  # fold the batch axes into one, and unfold after
    query, key, value, bias, mask = jax.tree.map(
        lambda x: x.reshape(math.prod(x.shape[:-3]), *x.shape[-3:]),
        (query, key, value, bias, mask))
  if mask is not None:
    mask = mask.astype(jnp.bool_)
  out = jax.nn.dot_product_attention(query, key, value, bias, mask, is_causal=is_causal)
  return out.reshape(shape[:-1] + out.shape[-1:])


def _check_shapes(caller: str, query: Array, key: Array, value: Array | None,
                  mask: Array | None) -> tuple[int, ...]:
  """Check shapes before any einsum; return the attention weights' shape."""
  arrays = [a for a in (query, key, value) if a is not None]
  rules = [
      (any(a.ndim != query.ndim or a.shape[:-3] != query.shape[:-3] for a in arrays),
       'query, key and value must be [batch..., length, heads, depth] with equal batch axes'),
      (query.shape[-1] != key.shape[-1], 'query and key need the same depth (last axis)'),
      (value is not None and key.shape[-3] != value.shape[-3],
       'key and value need the same length'),
      (any(query.shape[-2] % a.shape[-2] for a in arrays),
       'the query heads must be a multiple of the key/value heads (grouped-query attention)'),
  ]
  for broken, rule in rules:
    if broken:
      raise ValueError(f'{caller}: {rule}; got shapes {[a.shape for a in arrays]} '
                       '(query, key[, value]).')
  weights_shape = (*query.shape[:-3], query.shape[-2], query.shape[-3], key.shape[-3])
  check_mask(caller, mask, weights_shape)
  return weights_shape


# -- the layer ------------------------------------------------------------------
