"""Layers -- linear layers: multiply by a learned kernel, add a bias.

``Linear`` computes ``y = x @ kernel + bias`` over the last axis of ``x``.
The other layers change which axes meet the kernel: ``LinearGeneral``
contracts several axes at once (and may give each entry of leading batch
axes its own kernel), and ``Einsum`` says it with an einsum string.
``Embed``, a linear layer for one-hot inputs, is the next chapter
(``embed.py``); convolutions come after it (``conv.py``).

The same seed gives Flax's parameters because every layer draws its keys
from ``rngs.params()`` in Flax's order, kernel first, then bias; the same
outputs because inputs and parameters are cast to one dtype by
``promote_dtype`` (``dtypes.py``) before computing.

>>> import jax.numpy as jnp
>>> import nnx_edu as nnx
>>> nnx.Linear(3, 4, rngs=nnx.Rngs(0))(jnp.ones((2, 3))).shape
(2, 4)
"""

from __future__ import annotations

import typing as tp

import jax.numpy as jnp
import numpy as np
import opt_einsum  # a dependency of jax; jnp.einsum uses it too
from jax import lax

from nnx_edu.core.module import Module
from nnx_edu.core.pytrees import data
from nnx_edu.core.rngs import Rngs
from nnx_edu.core.variable_types import Param
from nnx_edu.core.variables import VariableMetadata
from nnx_edu.nn import dtypes, initializers
from nnx_edu.nn.common import (NO_METADATA, Array, Dtype, FrozenDict, Initializer, Metadata,
                               PrecisionLike, check_features, op_kwargs, value_or_none)

__all__ = ['Linear', 'LinearGeneral', 'Einsum']

default_kernel_init = initializers.lecun_normal()
default_bias_init = initializers.zeros_init()


class Linear(Module):
  """``y = x @ kernel + bias`` over the last axis of the input.

  The input may have any number of leading axes (or none); they are kept.

  Args:
    in_features: size of the input's last axis.
    out_features: size of the output's last axis.
    use_bias: whether to add a bias (default True).
    dtype: dtype of the computation (default: promoted from inputs and params).
    param_dtype: dtype of the parameters (default float32).
    precision: ``jax.lax.Precision`` of the matrix product.
    kernel_init: initializer of the ``(in_features, out_features)`` kernel
      (default ``lecun_normal()``).
    bias_init: initializer of the ``(out_features,)`` bias (default zeros).
    dot_general: the product function (default ``jax.lax.dot_general``).
    promote_dtype: casts ``(inputs, kernel, bias)`` to one dtype.
    preferred_element_type: dtype the product accumulates and returns in.
    rngs: where the parameters' keys come from (``rngs.params()``).
    kernel_metadata, bias_metadata: extra metadata for the two Params.

  >>> import jax, jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> layer = nnx.Linear(in_features=3, out_features=4, rngs=nnx.Rngs(0))
  >>> jax.tree.map(jnp.shape, nnx.state(layer))
  State({
    'bias': Param(
      value=(4,)
    ),
    'kernel': Param(
      value=(3, 4)
    )
  })
  >>> layer(jnp.ones((5, 3))).shape
  (5, 4)
  """

  def __init__(self, in_features: int, out_features: int, *, use_bias: bool = True,
               dtype: Dtype | None = None, param_dtype: Dtype = jnp.float32,
               precision: PrecisionLike = None,
               kernel_init: Initializer = default_kernel_init,
               bias_init: Initializer = default_bias_init,
               dot_general: tp.Callable[..., Array] = lax.dot_general,
               promote_dtype: tp.Callable[..., tuple] = dtypes.promote_dtype,
               preferred_element_type: Dtype | None = None, rngs: Rngs,
               kernel_metadata: Metadata = NO_METADATA, bias_metadata: Metadata = NO_METADATA):
    self.kernel = Param(kernel_init(rngs.params(), (in_features, out_features), param_dtype),
                        **kernel_metadata)
    self.bias = (Param(bias_init(rngs.params(), (out_features,), param_dtype), **bias_metadata)
                 if use_bias else data(None))
    self.in_features = in_features
    self.out_features = out_features
    self.use_bias = use_bias
    self.dtype = dtype
    self.param_dtype = param_dtype
    self.precision = precision
    self.dot_general = dot_general
    self.promote_dtype = promote_dtype
    self.preferred_element_type = preferred_element_type

  def __call__(self, inputs: Array, out_sharding: tp.Any = None) -> Array:
    check_features(self, inputs, (-1,), (self.in_features,))
    inputs, kernel, bias = self.promote_dtype(
        (inputs, self.kernel[...], value_or_none(self.bias)), dtype=self.dtype)
    contract_last_with_first = (((inputs.ndim - 1,), (0,)), ((), ()))
    y = self.dot_general(inputs, kernel, contract_last_with_first, precision=self.precision,
                         **op_kwargs(out_sharding, self.preferred_element_type))
    return y if bias is None else y + bias


def _as_tuple(x: int | tp.Iterable[int]) -> tuple[int, ...]:
  return tuple(x) if isinstance(x, tp.Iterable) else (x,)


def _init_flat(init: Initializer, key: Array, shape: tuple[int, ...],
               flat_shape: tuple[int, ...], dtype: Dtype) -> tp.Any:
  """Draw a parameter of ``flat_shape`` and reshape it to ``shape``.

  LinearGeneral draws its kernel as one (inputs, outputs) matrix so that
  the initializer's fan-in and fan-out count *all* input and output features.
  """
  value = init(key, tuple(int(n) for n in flat_shape), dtype)
  if isinstance(value, VariableMetadata):  # an initializer wrapped with_metadata
    return value._replace(raw_value=jnp.reshape(value.raw_value, shape))
  return jnp.reshape(value, shape)


def _normalize_axes(axes: tp.Iterable[int], ndim: int) -> tuple[int, ...]:
  """Axes as sorted non-negative numbers: the order lax.dot_general takes them in."""
  return tuple(sorted(a if a >= 0 else ndim + a for a in axes))


class LinearGeneral(Module):
  """A linear map that contracts any input axes into any number of output axes.

  The kernel has shape ``(*batch sizes, *in_features, *out_features)``.
  The contracted ``axis`` are taken in increasing order.  ``batch_axis``
  maps leading input axes (0, 1, ...) to their sizes: each entry along them
  gets its own kernel and bias.

  Args:
    in_features: size(s) of the contracted input axes.
    out_features: size(s) of the new output axes, appended at the end.
    axis: the input axis or axes to contract (default -1).
    batch_axis: ``{axis: size}`` of leading batch axes (default none).
    use_bias, dtype, param_dtype, kernel_init, bias_init, precision,
      promote_dtype, preferred_element_type, rngs, kernel_metadata,
      bias_metadata: as in ``Linear``.
    dot_general: the product function (default ``jax.lax.dot_general``).
    dot_general_cls: a class whose instance is the product function; it
      wins over ``dot_general``.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> layer = nnx.LinearGeneral((2, 3), (4, 5), axis=(1, -1), rngs=nnx.Rngs(0))
  >>> layer.kernel.shape, layer.bias.shape
  ((2, 3, 4, 5), (4, 5))
  >>> layer(jnp.ones((16, 2, 3))).shape
  (16, 4, 5)
  """

  def __init__(self, in_features: int | tp.Sequence[int], out_features: int | tp.Sequence[int],
               *, axis: int | tp.Sequence[int] = -1,
               batch_axis: tp.Mapping[int, int] = FrozenDict(), use_bias: bool = True,
               dtype: Dtype | None = None, param_dtype: Dtype = jnp.float32,
               kernel_init: Initializer = default_kernel_init,
               bias_init: Initializer = default_bias_init, precision: PrecisionLike = None,
               promote_dtype: tp.Callable[..., tuple] = dtypes.promote_dtype,
               dot_general: tp.Callable[..., Array] | None = None,
               dot_general_cls: tp.Any = None, preferred_element_type: Dtype | None = None,
               rngs: Rngs, kernel_metadata: Metadata = NO_METADATA,
               bias_metadata: Metadata = NO_METADATA):
    self.in_features = _as_tuple(in_features)
    self.out_features = _as_tuple(out_features)
    self.axis = _as_tuple(axis)
    self.batch_axis = FrozenDict(batch_axis)
    self.use_bias = use_bias
    self.dtype = dtype
    self.param_dtype = param_dtype
    self.precision = precision
    self.dot_general = dot_general
    self.dot_general_cls = dot_general_cls
    self.promote_dtype = promote_dtype
    self.preferred_element_type = preferred_element_type
    if len(self.in_features) != len(self.axis):
      raise ValueError(
          f'LinearGeneral: in_features={self.in_features} and axis={self.axis} must have '
          'the same length: one input size for each contracted axis.')
    if sorted(self.batch_axis) != list(range(len(self.batch_axis))):
      raise ValueError(
          f'LinearGeneral: batch_axis={dict(self.batch_axis)} must name the leading axes '
          '0, 1, ... without gaps, e.g. {0: 8} or {0: 8, 1: 2}.')

    batch_shape = tuple(self.batch_axis.values())
    kernel_shape = (*batch_shape, *self.in_features, *self.out_features)
    n_out = len(self.out_features)
    self.kernel = Param(_init_flat(kernel_init, rngs.params(), kernel_shape,
                                   (np.prod(kernel_shape[:-n_out]), np.prod(self.out_features)),
                                   param_dtype), **kernel_metadata)
    bias_shape = (*batch_shape, *self.out_features)
    self.bias = (Param(_init_flat(bias_init, rngs.params(), bias_shape, (np.prod(bias_shape),),
                                  param_dtype), **bias_metadata)
                 if use_bias else data(None))

  def __call__(self, inputs: Array, out_sharding: tp.Any = None) -> Array:
    ndim = jnp.ndim(inputs)
    axis = _normalize_axes(self.axis, ndim)
    batch_axis = _normalize_axes(self.batch_axis, ndim)
    check_features(self, inputs, axis, self.in_features)
    check_features(self, inputs, batch_axis, tuple(self.batch_axis.values()),
                   what='batch_axis sizes')
    inputs, kernel, bias = self.promote_dtype(
        (inputs, self.kernel[...], value_or_none(self.bias)), dtype=self.dtype)

    n_batch = len(batch_axis)
    kernel_in = tuple(range(n_batch, n_batch + len(axis)))
    dimensions = ((axis, kernel_in), (batch_axis, tuple(range(n_batch))))
    if self.dot_general_cls is not None:
      dot_general = self.dot_general_cls()
    else:
      dot_general = self.dot_general or lax.dot_general
    y = dot_general(inputs, kernel, dimensions, precision=self.precision,
                    **op_kwargs(out_sharding, self.preferred_element_type))
    if bias is None:
      return y
    # The output is (batch axes, other input axes, out_features); the bias
    # varies along the batch axes only, so it gets size-1 axes elsewhere.
    kept_axes = [ax for ax in range(ndim) if ax not in axis]
    bias_axes = [inputs.shape[ax] if ax in batch_axis else 1 for ax in kept_axes]
    return y + jnp.reshape(bias, (*bias_axes, *self.out_features))


def _check_einsum_str(einsum_str: str) -> str:
  """The einsum string without spaces, once it is known to read ``input,kernel->output``."""
  einsum_str = einsum_str.replace(' ', '')
  operands = einsum_str.split('->')[0].split(',')
  if '->' not in einsum_str or len(operands) != 2:
    raise ValueError(
        f"Einsum: einsum_str={einsum_str!r} must have exactly two operands, the input "
        f"and the kernel, and an explicit output, like 'nta,hab->nthb'; it has "
        f"{len(operands)} operand(s){'' if '->' in einsum_str else ' and no ->'}.")
  return einsum_str


class Einsum(Module):
  """``jnp.einsum(einsum_str, inputs, kernel) + bias``, with a learned kernel.

  Give ``einsum_str`` to the constructor or to the call, not both.  The bias
  varies along the kernel axes that reach the output and is broadcast along
  the others.

  Args:
    einsum_str: ``'input,kernel->output'``, or None to give it at each call.
    kernel_shape: shape of the kernel.
    bias_shape: shape of the bias, or None for no bias.
    dtype, param_dtype, precision, kernel_init, bias_init, promote_dtype,
      preferred_element_type, rngs, kernel_metadata, bias_metadata: as in
      ``Linear``.
    einsum_op: the einsum function (default ``jnp.einsum``).

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> layer = nnx.Einsum('nta,hab->nthb', (8, 2, 4), (8, 4), rngs=nnx.Rngs(0))
  >>> layer(jnp.ones((16, 11, 2))).shape
  (16, 11, 8, 4)
  """

  def __init__(self, einsum_str: str | None, kernel_shape: tp.Sequence[int],
               bias_shape: tp.Sequence[int] | None = None, *, dtype: Dtype | None = None,
               param_dtype: Dtype = jnp.float32, precision: PrecisionLike = None,
               kernel_init: Initializer = default_kernel_init,
               bias_init: Initializer = default_bias_init,
               promote_dtype: tp.Callable[..., tuple] = dtypes.promote_dtype,
               einsum_op: tp.Callable[..., Array] = jnp.einsum,
               preferred_element_type: Dtype | None = None, rngs: Rngs,
               kernel_metadata: Metadata = NO_METADATA, bias_metadata: Metadata = NO_METADATA):
    if einsum_str is not None:
      einsum_str = _check_einsum_str(einsum_str)
    self.kernel = Param(kernel_init(rngs.params(), kernel_shape, param_dtype), **kernel_metadata)
    self.bias = (Param(bias_init(rngs.params(), bias_shape, param_dtype), **bias_metadata)
                 if bias_shape is not None else data(None))
    self.einsum_str = einsum_str
    self.kernel_shape = kernel_shape
    self.bias_shape = bias_shape
    self.dtype = dtype
    self.param_dtype = param_dtype
    self.precision = precision
    self.promote_dtype = promote_dtype
    self.einsum_op = einsum_op
    self.preferred_element_type = preferred_element_type

  def __call__(self, inputs: Array, einsum_str: str | None = None,
               out_sharding: tp.Any = None) -> Array:
    if (einsum_str is None) == (self.einsum_str is None):
      where = 'both to the constructor and to the call' if einsum_str else 'neither'
      raise ValueError(
          f'Einsum: einsum_str was given {where}; give it exactly once, either as '
          "Einsum('ab,bc->ac', ...) or as layer(x, 'ab,bc->ac') with Einsum(None, ...).")
    einsum_str = _check_einsum_str(einsum_str if einsum_str is not None else self.einsum_str)
    inputs, kernel, bias = self.promote_dtype(
        (inputs, self.kernel[...], value_or_none(self.bias)), dtype=self.dtype)
    y = self.einsum_op(einsum_str, inputs, kernel, precision=self.precision,
                       **op_kwargs(out_sharding, self.preferred_element_type))
    if bias is None:
      return y
    # opt_einsum spells out '...' with letters, so every output axis has one.
    operands, output, _ = opt_einsum.parser.parse_einsum_input((einsum_str, inputs, kernel))
    kernel_letters = operands.split(',')[1]
    bias_axes = [kernel.shape[kernel_letters.index(c)] if c in kernel_letters else 1
                 for c in output]
    return y + jnp.reshape(bias, bias_axes)
