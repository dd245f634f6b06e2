"""Layers -- convolutions: one small kernel slid over space.

A convolution is a linear layer (``linear.py``) applied to every window of
``kernel_size`` neighbouring positions, with the same kernel everywhere.
Inputs are channels-last: ``(*batch, *spatial, features)``, e.g. NHWC for
images.  The number of spatial axes is ``len(kernel_size)``; the input may
have any number of batch axes, or none.  ``jax.lax`` wants exactly one, so
the layers fold all batch axes into one and unfold them at the end.

``padding`` says what happens at the borders:

* ``'SAME'``: zero-pad so that (with stride 1) the output keeps the input's size
  (``'SAME_LOWER'``, Conv only: the same, with an odd pad cell before, not after);
* ``'VALID'``: no padding, the output shrinks by the kernel's reach;
* ``'CIRCULAR'``: wrap around (periodic boundaries);
* ``'REFLECT'`` (Conv only): mirror the input at the borders;
* ``'CAUSAL'`` (1-D Conv only): pad on the left only, so position ``t``
  sees positions ``<= t``;
* an int ``p``, a sequence of ints, or a sequence of ``(low, high)`` pairs:
  that many zeros before and after each spatial axis.

``ConvTranspose`` runs a convolution backwards (it upsamples): with
``strides=2`` each input position spreads over two output positions.
"""

from __future__ import annotations

import typing as tp

import jax.numpy as jnp
from jax import lax

from nnx_edu.core.module import Module
from nnx_edu.core.pytrees import data
from nnx_edu.core.rngs import Rngs
from nnx_edu.core.variable_types import Param
from nnx_edu.nn import dtypes
from nnx_edu.nn.common import (NO_METADATA, Array, Dtype, Initializer, Metadata, PrecisionLike,
                               check_features, op_kwargs, value_or_none)
from nnx_edu.nn.linear import default_bias_init, default_kernel_init

__all__ = ['Conv', 'ConvTranspose']

IntOrInts = tp.Union[None, int, tp.Sequence[int]]
Padding = tp.Union[str, int, tp.Sequence[tp.Union[int, tuple[int, int]]]]

CONV_PADDINGS = ('SAME', 'VALID', 'SAME_LOWER', 'CIRCULAR', 'REFLECT', 'CAUSAL')
CONV_TRANSPOSE_PADDINGS = ('SAME', 'VALID', 'CIRCULAR')


def lax_padding(layer: Module, rank: int, names: tp.Sequence[str]) -> str | list[tuple[int, int]]:
  """``layer.padding`` as an upper-case name from ``names`` or ``rank`` (low, high) pairs.

  >>> import nnx_edu as nnx
  >>> conv = nnx.Conv(4, 8, (3, 2), padding=(1, (0, 2)), rngs=nnx.Rngs(0))
  >>> lax_padding(conv, 2, CONV_PADDINGS)
  [(1, 1), (0, 2)]
  """
  name, padding = type(layer).__name__, layer.padding
  if isinstance(padding, str):
    if padding.upper() not in names:  # lax reads its padding names in any case
      raise ValueError(f'{name}: unknown padding {padding!r}; use one of {list(names)}, an '
                       'int, or a sequence of ints or (low, high) pairs.')
    if padding.upper() == 'CAUSAL' and rank != 1:
      raise ValueError(f"{name}: padding='CAUSAL' is for 1-D convolutions only; this kernel_size "
                       f'{layer.kernel_size} has {rank} spatial axes. Use explicit pairs such '
                       'as ((k - 1, 0), ...) to pad each axis on the left.')
    return padding.upper()
  if isinstance(padding, int):
    return [(padding, padding)] * rank
  pairs = [(p, p) if isinstance(p, int) else tuple(p) for p in padding]
  if len(pairs) != rank or any(len(p) != 2 for p in pairs):
    raise ValueError(f'{name}: padding={padding!r} must give one int or one (low, high) pair '
                     f'for each of the {rank} spatial axes of kernel_size {layer.kernel_size}.')
  return pairs


def per_axis(layer: Module, name: str, value: IntOrInts, rank: int) -> tuple[int, ...]:
  """``value`` for each of the ``rank`` spatial axes: an int is repeated, None means 1.

  >>> import nnx_edu as nnx
  >>> per_axis(nnx.Conv(4, 8, (3, 2), rngs=nnx.Rngs(0)), 'strides', 2, 2)
  (2, 2)
  """
  if value is None:
    value = 1
  if isinstance(value, int):
    return (value,) * rank
  if len(value) != rank:
    raise ValueError(f'{type(layer).__name__}: {name}={value!r} has {len(value)} entries but '
                     f'kernel_size {layer.kernel_size} has {rank} spatial axes; give one int '
                     f'or {rank} ints.')
  return tuple(value)


def fold_batch(layer: Module, inputs: Array) -> tuple[Array, tuple[int, ...]]:
  """Check the inputs' rank and features, and fold all batch axes into one.

  Returns the folded inputs and the batch shape to unfold the output with.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> conv = nnx.Conv(3, 4, (3,), rngs=nnx.Rngs(0))
  >>> x, batch = fold_batch(conv, jnp.ones((2, 5, 8, 3)))
  >>> x.shape, batch
  ((10, 8, 3), (2, 5))
  """
  shape, rank = jnp.shape(inputs), len(layer.kernel_size)
  if len(shape) < rank + 1:
    raise ValueError(
        f'{type(layer).__name__}: kernel_size {layer.kernel_size} has {rank} spatial axes, so '
        f'the inputs need at least {rank + 1} axes (*batch, {rank} spatial, features); got '
        f'shape {tuple(shape)}. Add the missing axes, or give kernel_size one entry per '
        'spatial axis of the inputs.')
  check_features(layer, inputs, (-1,), (layer.in_features,))
  batch_shape = tuple(shape[:len(shape) - rank - 1])
  return jnp.reshape(inputs, (-1, *shape[len(batch_shape):])), batch_shape


def check_mask(layer_name: str, mask: Array | None, kernel_shape: tuple[int, ...]) -> None:
  """Raise a ValueError that teaches unless ``mask`` is None or has the kernel's shape.

  >>> check_mask('Conv', None, (3, 1, 1))
  """
  if mask is not None and tuple(mask.shape) != kernel_shape:
    raise ValueError(f'{layer_name}: mask of shape {tuple(mask.shape)} must have the shape of '
                     f'the kernel, {kernel_shape}, since it multiplies the kernel entry by '
                     'entry.')


def _channels_last(ndim: int) -> lax.ConvDimensionNumbers:
  """Tell lax that the inputs are (N, *spatial, C) and the kernel (*spatial, I, O)."""
  spatial = tuple(range(1, ndim - 1))
  return lax.ConvDimensionNumbers(lhs_spec=(0, ndim - 1, *spatial),
                                  rhs_spec=(ndim - 1, ndim - 2, *range(ndim - 2)),
                                  out_spec=(0, ndim - 1, *spatial))


class Conv(Module):
  """A convolution (``jax.lax.conv_general_dilated``) over channels-last inputs.

  Args:
    in_features: number of input channels.
    out_features: number of output channels.
    kernel_size: the window's size along each spatial axis (an int for 1-D).
    strides: step between windows, an int or one per spatial axis (default 1).
    padding: see the chapter's docstring (default ``'SAME'``).
    input_dilation: spacing inserted between input positions (default 1).
    kernel_dilation: spacing between kernel taps, for atrous convolution (default 1).
    feature_group_count: split the channels into this many independent
      groups; must divide ``in_features`` and ``out_features`` (default 1).
    use_bias: whether to add a bias (default True).
    mask: an array of the kernel's shape that multiplies the kernel.
    dtype, param_dtype, precision, kernel_init, bias_init, promote_dtype,
      preferred_element_type, rngs, kernel_metadata, bias_metadata: as in
      ``Linear``.
    conv_general_dilated: the convolution function (default
      ``jax.lax.conv_general_dilated``).

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> layer = nnx.Conv(in_features=3, out_features=4, kernel_size=(3,), padding='VALID',
  ...                  rngs=nnx.Rngs(0))
  >>> layer.kernel.shape, layer(jnp.ones((1, 8, 3))).shape
  ((3, 3, 4), (1, 6, 4))
  """

  def __init__(self, in_features: int, out_features: int, kernel_size: int | tp.Sequence[int],
               strides: IntOrInts = 1, *, padding: Padding = 'SAME',
               input_dilation: IntOrInts = 1, kernel_dilation: IntOrInts = 1,
               feature_group_count: int = 1, use_bias: bool = True, mask: Array | None = None,
               dtype: Dtype | None = None, param_dtype: Dtype = jnp.float32,
               precision: PrecisionLike = None, kernel_init: Initializer = default_kernel_init,
               bias_init: Initializer = default_bias_init,
               conv_general_dilated: tp.Callable[..., Array] = lax.conv_general_dilated,
               promote_dtype: tp.Callable[..., tuple] = dtypes.promote_dtype,
               preferred_element_type: Dtype | None = None, rngs: Rngs,
               kernel_metadata: Metadata = NO_METADATA, bias_metadata: Metadata = NO_METADATA):
    if in_features % feature_group_count or out_features % feature_group_count:
      raise ValueError(
          f'Conv: feature_group_count={feature_group_count} must divide both in_features='
          f'{in_features} and out_features={out_features}: each group maps in_features/groups '
          'channels to out_features/groups channels.')
    kernel_size = (kernel_size,) if isinstance(kernel_size, int) else tuple(kernel_size)
    # Each group of in_features // groups input channels has its own filters.
    self.kernel_shape = (*kernel_size, in_features // feature_group_count, out_features)
    check_mask('Conv', mask, self.kernel_shape)
    self.kernel = Param(kernel_init(rngs.params(), self.kernel_shape, param_dtype),
                        **kernel_metadata)
    self.bias = (Param(bias_init(rngs.params(), (out_features,), param_dtype), **bias_metadata)
                 if use_bias else data(None))
    self.in_features = in_features
    self.out_features = out_features
    self.kernel_size = kernel_size
    self.strides = strides
    self.padding = padding
    self.input_dilation = input_dilation
    self.kernel_dilation = kernel_dilation
    self.feature_group_count = feature_group_count
    self.use_bias = use_bias
    self.mask = mask
    self.dtype = dtype
    self.param_dtype = param_dtype
    self.precision = precision
    self.conv_general_dilated = conv_general_dilated
    self.promote_dtype = promote_dtype
    self.preferred_element_type = preferred_element_type

  def __call__(self, inputs: Array, out_sharding: tp.Any = None) -> Array:
    rank = len(self.kernel_size)
    inputs, batch_shape = fold_batch(self, inputs)
    strides = per_axis(self, 'strides', self.strides, rank)
    input_dilation = per_axis(self, 'input_dilation', self.input_dilation, rank)
    kernel_dilation = per_axis(self, 'kernel_dilation', self.kernel_dilation, rank)
    padding = lax_padding(self, rank, CONV_PADDINGS)
    # lax pads with zeros only: other borders are padded here, then 'VALID'.
    if padding in ('CIRCULAR', 'REFLECT'):
      reach = [(k - 1) * d + 1 for k, d in zip(self.kernel_size, kernel_dilation)]
      pads = [(0, 0), *[((r - 1) // 2, r // 2) for r in reach], (0, 0)]
      inputs = jnp.pad(inputs, pads, mode={'CIRCULAR': 'wrap', 'REFLECT': 'reflect'}[padding])
      padding = 'VALID'
    elif padding == 'CAUSAL':
      left = kernel_dilation[0] * (self.kernel_size[0] - 1)
      inputs = jnp.pad(inputs, [(0, 0), (left, 0), (0, 0)])
      padding = 'VALID'

    kernel = self.kernel[...] if self.mask is None else self.kernel[...] * self.mask
    inputs, kernel, bias = self.promote_dtype((inputs, kernel, value_or_none(self.bias)),
                                              dtype=self.dtype)
    y = self.conv_general_dilated(
        inputs, kernel, strides, padding, lhs_dilation=input_dilation,
        rhs_dilation=kernel_dilation, dimension_numbers=_channels_last(inputs.ndim),
        feature_group_count=self.feature_group_count, precision=self.precision,
        **op_kwargs(out_sharding, self.preferred_element_type))
    if bias is not None:
      y = y + bias
    return jnp.reshape(y, (*batch_shape, *y.shape[1:]))


def _wrap_circular(y: Array, periods: tp.Sequence[int], transpose_kernel: bool) -> Array:
  """Fold a full transposed convolution onto one period per spatial axis.

  With periodic boundaries, what spills past one end re-enters at the other:
  pad each spatial axis to a whole number of periods, cut it into periods
  and add them up.
  """
  pads = []
  for size, period in zip(y.shape[1:-1], periods):
    extra = -(size - period) % (2 * period)
    # The odd cell goes left; a transposed kernel mirrors Conv, so it goes right.
    low = extra // 2 if transpose_kernel else (extra + 1) // 2
    pads.append((low, extra - low))
  y = jnp.pad(y, [(0, 0), *pads, (0, 0)])
  for axis, period in enumerate(periods, start=1):
    y = y.reshape(*y.shape[:axis], -1, period, *y.shape[axis + 1:]).sum(axis=axis)
  return y


class ConvTranspose(Module):
  """A transposed convolution (``jax.lax.conv_transpose``): it upsamples.

  Unlike PyTorch, ``padding`` is the padding of the underlying convolution:
  to undo the shape change of a ``Conv`` with padding ``p``, pass
  ``kernel_dilation * (kernel_size - 1) - p``.

  Args:
    in_features, out_features, kernel_size, use_bias, dtype, param_dtype,
      precision, kernel_init, bias_init, promote_dtype, preferred_element_type,
      rngs, kernel_metadata, bias_metadata: as in ``Conv``.
    strides: upsampling factor, an int or one per spatial axis (default 1).
    padding: ``'SAME'``, ``'VALID'``, ``'CIRCULAR'``, or explicit pads
      (default ``'SAME'``).
    kernel_dilation: spacing between kernel taps (default 1).
    mask: an array of the kernel's shape that multiplies the kernel.
    transpose_kernel: store the kernel as ``(*kernel_size, out_features,
      in_features)`` and flip it spatially: the exact transpose (gradient)
      of a ``Conv`` with the same kernel.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> layer = nnx.ConvTranspose(3, 4, kernel_size=(3,), strides=2, rngs=nnx.Rngs(0))
  >>> layer(jnp.ones((1, 8, 3))).shape
  (1, 16, 4)
  """

  def __init__(self, in_features: int, out_features: int, kernel_size: int | tp.Sequence[int],
               strides: IntOrInts = None, *, padding: Padding = 'SAME',
               kernel_dilation: IntOrInts = None, use_bias: bool = True,
               mask: Array | None = None, dtype: Dtype | None = None,
               param_dtype: Dtype = jnp.float32, precision: PrecisionLike = None,
               kernel_init: Initializer = default_kernel_init,
               bias_init: Initializer = default_bias_init, transpose_kernel: bool = False,
               promote_dtype: tp.Callable[..., tuple] = dtypes.promote_dtype,
               preferred_element_type: Dtype | None = None, rngs: Rngs,
               kernel_metadata: Metadata = NO_METADATA, bias_metadata: Metadata = NO_METADATA):
    self.kernel_size = (kernel_size,) if isinstance(kernel_size, int) else tuple(kernel_size)
    self.in_features = in_features
    self.out_features = out_features
    self.strides = strides
    self.padding = padding
    self.kernel_dilation = kernel_dilation
    self.use_bias = use_bias
    self.mask = mask
    self.dtype = dtype
    self.param_dtype = param_dtype
    self.precision = precision
    self.transpose_kernel = transpose_kernel
    self.promote_dtype = promote_dtype
    self.preferred_element_type = preferred_element_type
    channels = (out_features, in_features) if transpose_kernel else (in_features, out_features)
    self.kernel_shape = (*self.kernel_size, *channels)
    check_mask('ConvTranspose', mask, self.kernel_shape)
    self.kernel = Param(kernel_init(rngs.params(), self.kernel_shape, param_dtype),
                        **kernel_metadata)
    self.bias = (Param(bias_init(rngs.params(), (out_features,), param_dtype), **bias_metadata)
                 if use_bias else data(None))

  def __call__(self, inputs: Array) -> Array:
    rank = len(self.kernel_size)
    inputs, batch_shape = fold_batch(self, inputs)
    strides = per_axis(self, 'strides', self.strides, rank)
    kernel_dilation = per_axis(self, 'kernel_dilation', self.kernel_dilation, rank)
    padding = lax_padding(self, rank, CONV_TRANSPOSE_PADDINGS)
    kernel = self.kernel[...] if self.mask is None else self.kernel[...] * self.mask
    inputs, kernel, bias = self.promote_dtype((inputs, kernel, value_or_none(self.bias)),
                                              dtype=self.dtype)
    y = lax.conv_transpose(
        inputs, kernel, strides, 'VALID' if padding == 'CIRCULAR' else padding,
        rhs_dilation=kernel_dilation, transpose_kernel=self.transpose_kernel,
        precision=self.precision, preferred_element_type=self.preferred_element_type)
    if padding == 'CIRCULAR':
      periods = [size * stride for size, stride in zip(inputs.shape[1:-1], strides)]
      y = _wrap_circular(y, periods, self.transpose_kernel)
    if bias is not None:
      y = y + bias
    return jnp.reshape(y, (*batch_shape, *y.shape[1:]))
