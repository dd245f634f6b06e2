"""Layers -- attention: every position looks at every other.

Attention mixes a sequence by letting each *query* position take a weighted
average of *value* vectors, with weights from how well the query matches
each *key*::

    weights = softmax(q . k / sqrt(depth))     # [batch..., heads, q_len, kv_len]
    output  = weights @ v                       # [batch..., q_len, heads, depth]

``MultiHeadAttention`` projects its inputs to ``num_heads`` queries, keys and
values with ``LinearGeneral`` (the linear chapter), runs ``dot_product_attention``
on all heads at once, and projects the heads back to ``out_features``.

A **mask** (``True`` = may attend) removes pairs of positions, e.g.
``make_causal_mask`` so a token never sees the future.  Masks are combined
with ``combine_masks``; they must broadcast to the weights' shape
``[batch..., heads, q_len, kv_len]``.

For generating text one token at a time, ``decode=True`` keeps the keys and
values of earlier tokens in ``Cache`` Variables (created by ``init_cache``),
so each step only projects the new token.

>>> import jax.numpy as jnp
>>> import nnx_edu as nnx
>>> layer = nnx.MultiHeadAttention(num_heads=2, in_features=4, decode=False,
...                                rngs=nnx.Rngs(0))
>>> x = jnp.ones((1, 5, 4))                 # [batch, length, features]
>>> mask = nnx.make_causal_mask(jnp.ones((1, 5)))
>>> layer(x, mask=mask).shape
(1, 5, 4)
"""

from __future__ import annotations

import functools
import typing as tp

import jax
import jax.numpy as jnp

from nnx_edu.core.module import Module
from nnx_edu.core.pytrees import data
from nnx_edu.core.rngs import Rngs, RngStream
from nnx_edu.core.variable_types import Cache
from nnx_edu.nn import initializers
from nnx_edu.nn.attention_functions import check_mask, combine_masks, dot_product_attention
from nnx_edu.nn.common import NO_METADATA, Array, Initializer, Metadata, PromoteDtype
from nnx_edu.nn.dtypes import promote_dtype as default_promote_dtype
from nnx_edu.nn.linear import LinearGeneral, default_kernel_init
from nnx_edu.nn.normalization import LayerNorm

Shape = tp.Sequence[int]  # a batch shape, in set_view's signature

__all__ = ['MultiHeadAttention']


class MultiHeadAttention(Module):
  """Multi-head attention: project to heads, attend, project back.

  Args:
    num_heads: number of heads; must divide ``qkv_features``.  With
      ``num_kv_heads < num_heads`` (which must divide it), groups of query
      heads share key/value heads (grouped-query attention).
    in_features, in_kv_features: last-axis sizes of ``inputs_q`` and of
      ``inputs_k``/``inputs_v`` (the latter defaults to the former).
    qkv_features: size of queries/keys/values over all heads (default
      ``in_features``); each head gets ``head_dim = qkv_features // num_heads``.
    out_features: size of the output's last axis (default ``in_features``).
    dropout_rate, broadcast_dropout, deterministic: dropout on the attention
      weights, one mask shared over batch and heads, and its off switch
      (``eval()`` sets ``deterministic=True``).
    decode: use the key/value cache made by ``init_cache``.
    normalize_qk: LayerNorm the queries and keys (arxiv.org/abs/2302.05442).
    attention_fn: the attention function, ``dot_product_attention``.
    rngs, keep_rngs: ``rngs.params`` initializes the parameters; with
      ``dropout_rate > 0`` and ``keep_rngs``, a fork of ``rngs.dropout`` is kept.

  The rest are passed on to the projections (``LinearGeneral``) and the
  LayerNorms: ``dtype``, ``param_dtype``, ``precision``, ``use_bias``, the
  initializers (``out_*`` override them for the output projection), the
  ``*_promote_dtype`` functions, the ``*_metadata`` mappings, and the
  ``*_dot_general*`` arguments that Flax deprecates.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> layer = nnx.MultiHeadAttention(num_heads=4, in_features=8, qkv_features=16,
  ...                                decode=False, rngs=nnx.Rngs(0))
  >>> layer.query.kernel.shape, layer.out.kernel.shape
  ((8, 4, 4), (4, 4, 8))
  >>> q, kv = jnp.ones((2, 3, 8)), jnp.ones((2, 7, 8))
  >>> layer(q, kv).shape                     # cross-attention: 3 queries, 7 keys
  (2, 3, 8)
  """

  def __init__(
      self, num_heads: int, in_features: int, qkv_features: int | None = None,
      out_features: int | None = None, num_kv_heads: int | None = None,
      in_kv_features: int | None = None, *, dtype: tp.Any = None,
      param_dtype: tp.Any = jnp.float32, broadcast_dropout: bool = True,
      dropout_rate: float = 0.0, deterministic: bool | None = None, precision: tp.Any = None,
      kernel_init: Initializer = default_kernel_init, out_kernel_init: Initializer | None = None,
      bias_init: Initializer = initializers.zeros_init(), out_bias_init: Initializer | None = None,
      use_bias: bool = True, attention_fn: tp.Callable[..., Array] = dot_product_attention,
      decode: bool | None = None, normalize_qk: bool = False,
      qkv_promote_dtype: PromoteDtype = default_promote_dtype,
      out_promote_dtype: PromoteDtype = default_promote_dtype,
      ln_promote_dtype: PromoteDtype = default_promote_dtype,
      qkv_dot_general: tp.Any = None, out_dot_general: tp.Any = None,
      qkv_dot_general_cls: tp.Any = None, out_dot_general_cls: tp.Any = None,
      rngs: Rngs, keep_rngs: bool = True, kernel_metadata: Metadata = NO_METADATA,
      out_kernel_metadata: Metadata = NO_METADATA, bias_metadata: Metadata = NO_METADATA,
      out_bias_metadata: Metadata = NO_METADATA,
      query_ln_scale_metadata: Metadata = NO_METADATA,
      key_ln_scale_metadata: Metadata = NO_METADATA):
    self.num_heads = num_heads
    self.in_features = in_features
    self.qkv_features = qkv_features if qkv_features is not None else in_features
    self.out_features = out_features if out_features is not None else in_features
    self.in_kv_features = in_kv_features if in_kv_features is not None else in_features
    self.num_kv_heads = num_kv_heads if num_kv_heads is not None else num_heads
    if self.qkv_features % num_heads:
      raise ValueError(
          f'MultiHeadAttention: qkv_features={self.qkv_features} must be divisible by '
          f'num_heads={num_heads}, since each head gets qkv_features // num_heads '
          f'features. Try qkv_features={num_heads * max(1, self.qkv_features // num_heads)}.'
      )
    if num_heads % self.num_kv_heads:
      raise ValueError(
          f'MultiHeadAttention: num_heads={num_heads} must be divisible by num_kv_heads='
          f'{self.num_kv_heads}, since each key/value head serves an equal group of query heads.'
      )
    self.dtype = dtype
    self.param_dtype = param_dtype
    self.broadcast_dropout = broadcast_dropout
    self.dropout_rate = dropout_rate
    self.deterministic = deterministic
    self.precision = precision
    self.use_bias = use_bias
    self.attention_fn = attention_fn
    self.decode = decode
    self.normalize_qk = normalize_qk
    self.qkv_promote_dtype = qkv_promote_dtype
    self.out_promote_dtype = out_promote_dtype
    self.ln_promote_dtype = ln_promote_dtype
    self.qkv_dot_general = qkv_dot_general
    self.out_dot_general = out_dot_general
    self.qkv_dot_general_cls = qkv_dot_general_cls
    self.out_dot_general_cls = out_dot_general_cls
    self.head_dim = self.qkv_features // num_heads

    # Submodules are created in Flax's order, so they draw the same keys.
    linear = functools.partial(
        LinearGeneral, dtype=dtype, param_dtype=param_dtype, precision=precision,
        use_bias=use_bias, rngs=rngs)
    projection = functools.partial(
        linear, kernel_init=kernel_init, bias_init=bias_init,
        promote_dtype=qkv_promote_dtype, dot_general=qkv_dot_general,
        dot_general_cls=qkv_dot_general_cls, kernel_metadata=kernel_metadata,
        bias_metadata=bias_metadata)
    self.query = projection(in_features, (num_heads, self.head_dim))
    self.key = projection(self.in_kv_features, (self.num_kv_heads, self.head_dim))
    self.value = projection(self.in_kv_features, (self.num_kv_heads, self.head_dim))
    if normalize_qk:  # see arxiv.org/abs/2302.05442: stabilizes training at high learning rates
      layer_norm = functools.partial(
          LayerNorm, self.head_dim, use_bias=False, dtype=dtype,
          param_dtype=param_dtype, promote_dtype=ln_promote_dtype, rngs=rngs)
      self.query_ln = layer_norm(scale_metadata=query_ln_scale_metadata)
      self.key_ln = layer_norm(scale_metadata=key_ln_scale_metadata)
    else:
      self.query_ln = data(None)
      self.key_ln = data(None)
    self.out = linear(
        (num_heads, self.head_dim), self.out_features, axis=(-2, -1),
        kernel_init=out_kernel_init or kernel_init, bias_init=out_bias_init or bias_init,
        promote_dtype=out_promote_dtype, dot_general=out_dot_general,
        dot_general_cls=out_dot_general_cls,
        kernel_metadata=out_kernel_metadata or kernel_metadata,
        bias_metadata=out_bias_metadata or bias_metadata)
    self.rngs = rngs.dropout.fork() if keep_rngs and dropout_rate > 0 else None
    # Filled by init_cache, for decode=True.
    self.cached_key = data(None)
    self.cached_value = data(None)
    self.cache_index = data(None)

  def __call__(self, inputs_q: Array, inputs_k: Array | None = None,
               inputs_v: Array | None = None, *, mask: Array | None = None,
               deterministic: bool | None = None, rngs: Rngs | RngStream | None = None,
               sow_weights: bool = False, decode: bool | None = None,
               is_causal: bool = False, out_sharding: tp.Any = None,
               qkv_sharding: tp.Any = None) -> Array:
    """Attend from ``inputs_q`` to ``inputs_k`` / ``inputs_v``.

    ``inputs_k`` defaults to ``inputs_q`` (self-attention) and ``inputs_v``
    to ``inputs_k``.  All are ``[batch..., length, features]``.  ``mask``
    must broadcast to ``[batch..., num_heads, q_length, kv_length]``.
    ``deterministic``, ``rngs`` and ``decode`` given here win over the
    constructor's; ``sow_weights=True`` stores the attention weights as the
    ``Intermediate`` ``attention_weights``; ``is_causal=True`` adds a causal
    mask.  ``qkv_sharding`` / ``out_sharding`` are passed on to the
    projections.

    >>> import jax.numpy as jnp
    >>> import nnx_edu as nnx
    >>> layer = nnx.MultiHeadAttention(2, 4, decode=False, rngs=nnx.Rngs(0))
    >>> _ = layer(jnp.ones((1, 3, 4)), sow_weights=True)
    >>> layer.attention_weights.value[0].shape   # [batch, heads, q_len, kv_len]
    (1, 2, 3, 3)
    """
    if inputs_k is None:
      if inputs_v is not None:
        raise ValueError(
            'MultiHeadAttention: inputs_v was given without inputs_k. For keys and '
            'values from the same array, pass it as inputs_k and leave inputs_v out.'
        )
      inputs_k = inputs_q
    if inputs_v is None:
      inputs_v = inputs_k
    decode = self._flag('decode', decode)
    self._check_call(inputs_q, inputs_k, inputs_v, mask, decode)

    query = self.query(inputs_q, out_sharding=qkv_sharding)
    key = self.key(inputs_k, out_sharding=qkv_sharding)
    value = self.value(inputs_v, out_sharding=qkv_sharding)
    if self.normalize_qk:
      query, key = self.query_ln(query), self.key_ln(key)
    if decode:
      key, value, mask = self._extend_cache(key, value, mask)

    dropout_rng = None
    deterministic = self._flag('deterministic', deterministic) if self.dropout_rate > 0 else True
    if not deterministic:
      dropout_rng = self._dropout_key(rngs)
    x = self.attention_fn(
        query, key, value, mask=mask, dropout_rng=dropout_rng,
        dropout_rate=self.dropout_rate, broadcast_dropout=self.broadcast_dropout,
        deterministic=deterministic, dtype=self.dtype, precision=self.precision,
        module=self if sow_weights else None, is_causal=is_causal)
    return self.out(x, out_sharding=out_sharding)

  def init_cache(self, input_shape: tuple[int, ...], dtype: tp.Any = jnp.float32) -> None:
    """Create the decoding cache for inputs of shape ``[batch..., max_length, features]``.

    Makes three ``Cache`` Variables: ``cached_key`` and ``cached_value`` of
    shape ``[batch..., max_length, num_kv_heads, head_dim]``, and
    ``cache_index``, the position the next token will be written to.

    >>> import jax.numpy as jnp
    >>> import nnx_edu as nnx
    >>> layer = nnx.MultiHeadAttention(2, 4, decode=True, rngs=nnx.Rngs(0))
    >>> layer.init_cache((1, 10, 4))
    >>> layer.cached_key.shape
    (1, 10, 2, 2)
    >>> for _ in range(3):
    ...   y = layer(jnp.ones((1, 1, 4)))   # one token per call
    >>> int(layer.cache_index.value)
    3
    """
    shape = (*input_shape[:-1], self.num_kv_heads, self.head_dim)
    self.cached_key = Cache(jnp.zeros(shape, dtype))
    self.cached_value = Cache(jnp.zeros(shape, dtype))
    self.cache_index = Cache(jnp.array(0, dtype=jnp.int32))

  def set_view(self, deterministic: bool | None = None, decode: bool | None = None,
               batch_size: int | Shape | None = None, max_length: int | None = None) -> None:
    """Used by ``nnx.view``: dropout and decoding modes; None leaves a mode as it is.

    ``decode=True`` with ``batch_size`` (an int or a batch shape) and
    ``max_length`` also makes the cache, if the layer has none yet.  (Flax
    0.12.8 never makes it here: its layer always has the attribute.)

    >>> import nnx_edu as nnx
    >>> layer = nnx.MultiHeadAttention(2, 4, rngs=nnx.Rngs(0))
    >>> decoder = nnx.view(layer, decode=True, batch_size=1, max_length=8)
    >>> decoder.decode, decoder.cached_key.shape, layer.cached_key
    (True, (1, 8, 2, 2), None)

    Args:
      deterministic: if True, the module is set to deterministic mode.
      decode: if True, the module is set to decode mode.
      batch_size: the batch size to use for the cache.
      max_length: the max length to use for the cache.
    """
    if deterministic is not None:
      self.deterministic = deterministic
    if decode is None:
      return
    self.decode = decode
    sizes = {'batch_size': batch_size, 'max_length': max_length}
    if not decode or self.cached_key is not None or all(v is None for v in sizes.values()):
      return  # no cache asked for: init_cache makes it later
    for name, value in sizes.items():
      if value is None:
        raise TypeError(
            f"'{name}' must be provided when initializing cache: MultiHeadAttention has no "
            'decoding cache yet, and a cache needs both batch_size= and max_length=. Pass '
            'both to nnx.view, or neither and call init_cache(input_shape) later.'
        )
    batch = (batch_size,) if isinstance(batch_size, int) else tuple(batch_size)
    self.init_cache((*batch, max_length, self.in_features), self.dtype)

  def _flag(self, name: str, given: bool | None) -> bool:
    """A call argument if given, else the attribute; both None is an error."""
    value = given if given is not None else getattr(self, name)
    if value is None:
      hint = (' or call model.train() / model.eval()' if name == 'deterministic' else
              '; decode=True decodes one token at a time with the cache of init_cache')
      raise ValueError(
          f'MultiHeadAttention: {name} is None both in the constructor and in the '
          f'call. Pass {name}=True/False to one of them{hint}.'
      )
    return value

  def _check_call(self, inputs_q: Array, inputs_k: Array, inputs_v: Array,
                  mask: Array | None, decode: bool) -> None:
    """Check the inputs and the mask before any projection runs."""
    for name, x, size, arg in (('inputs_q', inputs_q, self.in_features, 'in_features'),
                               ('inputs_k', inputs_k, self.in_kv_features, 'in_kv_features'),
                               ('inputs_v', inputs_v, self.in_kv_features, 'in_kv_features')):
      if x.shape[-1] != size:
        raise ValueError(
            f'MultiHeadAttention: {name} has {x.shape[-1]} features (last axis of '
            f'shape {x.shape}), but the layer was built with {arg}={size}. Build it '
            f'with {arg}={x.shape[-1]}, or reshape the input.'
        )
    kv_length = inputs_k.shape[-2]
    if decode:
      if self.cached_key is None:
        raise ValueError(
            'MultiHeadAttention: decode=True needs the key/value cache, which does '
            'not exist yet. Call layer.init_cache((batch, max_length, in_features)) '
            'before the first decoding step.'
        )
      *batch, kv_length, _, _ = self.cached_key.shape
      if inputs_k.shape[:-1] != (*batch, 1):
        raise ValueError(
            f'MultiHeadAttention: when decoding, feed one token at a time: the cache '
            f'made by init_cache expects inputs of shape {(*batch, 1)} + (features,), '
            f'got {inputs_k.shape}.'
        )
    weights_shape = (*inputs_q.shape[:-2], self.num_heads, inputs_q.shape[-2], kv_length)
    check_mask('MultiHeadAttention', mask, weights_shape)

  def _extend_cache(self, key: Array, value: Array,
                    mask: Array | None) -> tuple[Array, Array, Array | None]:
    """Write this step's key/value at ``cache_index``; mask the empty slots."""
    *batch, max_length, _, _ = self.cached_key.shape
    index = self.cache_index[...]
    zero = jnp.array(0, dtype=index.dtype)
    start = (zero,) * len(batch) + (index, zero, zero)
    self.cached_key[...] = jax.lax.dynamic_update_slice(self.cached_key[...], key, start)
    self.cached_value[...] = jax.lax.dynamic_update_slice(self.cached_value[...], value, start)
    self.cache_index[...] = index + 1
    # The new query may attend to the positions filled so far, not to the zeros after them.
    filled = jnp.broadcast_to(jnp.arange(max_length) <= index, (*batch, 1, 1, max_length))
    return self.cached_key[...], self.cached_value[...], combine_masks(mask, filled)

  def _dropout_key(self, rngs: Rngs | RngStream | None) -> Array:
    """The next dropout key: from the call's rngs if given, else the kept stream."""
    stream = rngs if rngs is not None else self.rngs
    if isinstance(stream, Rngs):
      stream = stream.dropout
    if stream is None:
      raise ValueError(
          f'MultiHeadAttention: dropout_rate={self.dropout_rate} with '
          'deterministic=False needs random keys, but the layer keeps none '
          '(keep_rngs=False) and the call got no rngs. Pass rngs=nnx.Rngs(dropout=0) '
          'to the call, or switch dropout off with deterministic=True / model.eval().'
      )
    return stream()
