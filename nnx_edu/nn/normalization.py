"""Layers -- normalization: rescale activations to mean 0 and variance 1.

Every layer here does the same two steps, and differs only in *which* axes
it averages over:

1. ``mean_and_var`` takes the mean and variance of the input over some
   axes (optionally only where ``mask`` is True, optionally averaged across
   a named ``jax.vmap``/``pmap`` axis too);
2. ``normalize`` computes ``(x - mean) / sqrt(var + epsilon)``, then
   multiplies by a learned ``scale`` and adds a learned ``bias``.

=============  ==========================================================
``BatchNorm``  over the batch: every axis except the feature ``axis``.
               Keeps running averages (``BatchStat``) for inference.
``LayerNorm``  over each example's features (``reduction_axes``).
``RMSNorm``    like LayerNorm, but divides by the root mean square only:
               no mean is subtracted and there is no bias.
=============  ==========================================================

Statistics are computed in at least float32, even for bfloat16 inputs,
because sums of many half-precision numbers lose too many digits.

The next two chapters build on the helpers here: ``group_normalization.py``
normalizes groups of channels and single channels (``GroupNorm``,
``InstanceNorm``); ``weight_normalization.py`` normalizes a layer's weights
instead of its activations (``SpectralNorm``, ``WeightNorm``).
"""

from __future__ import annotations

import typing as tp

import jax.numpy as jnp
import numpy as np
from jax import lax

from nnx_edu.core.module import Module
from nnx_edu.core.pytrees import data
from nnx_edu.core.rngs import Rngs
from nnx_edu.core.variable_types import BatchStat, Param
from nnx_edu.nn import dtypes, initializers
from nnx_edu.nn.common import (NO_METADATA, Array, Axes, Dtype, Initializer, Metadata, PromoteDtype,
                               canonical_axes, value_or_none)

__all__ = ['BatchNorm', 'LayerNorm', 'RMSNorm']


# -- the shared arithmetic -------------------------------------------------------
def _abs_squared(x: Array) -> Array:
  # |x|^2 rather than x^2, so that a complex input has a real variance
  if jnp.iscomplexobj(x):
    return lax.square(lax.real(x)) + lax.square(lax.imag(x))
  return lax.square(x)


def mean_and_var(x: Array, axes: Axes, dtype: Dtype, *, axis_name: str | None = None,
                 axis_index_groups: tp.Any = None, use_mean: bool = True,
                 use_fast_variance: bool = True,
                 mask: Array | None = None) -> tuple[Array, Array]:
  """The mean and variance of ``x`` over ``axes`` (those axes are removed).

  ``mask`` keeps only the entries where it is True.  ``axis_name`` also
  averages across a named ``vmap``/``pmap`` axis, as if its slices were one
  batch.  ``use_mean=False`` gives mean 0 and the mean square (RMSNorm).
  ``use_fast_variance`` computes ``E[x^2] - E[x]^2`` in one pass instead of
  ``E[(x - E[x])^2]`` in two.

  >>> import jax.numpy as jnp
  >>> mean_and_var(jnp.array([[1.0, 3.0], [2.0, 2.0]]), axes=1, dtype=None)
  (Array([2., 2.], dtype=float32), Array([1., 0.], dtype=float32))
  """
  dtype = jnp.promote_types(jnp.result_type(x) if dtype is None else dtype, jnp.float32)
  x = jnp.asarray(x, dtype)
  axes = canonical_axes(x.ndim, axes)

  def average(*values: Array) -> tuple[Array, ...]:
    means = tuple(value.mean(axes, where=mask) for value in values)
    if axis_name is not None:  # one pmean for all values: one round of communication
      means = lax.pmean(means, axis_name, axis_index_groups=axis_index_groups)
    return means

  if not use_mean:
    (mean_square,) = average(_abs_squared(x))
    return jnp.zeros_like(mean_square), mean_square
  if use_fast_variance:
    mean, mean_of_squares = average(x, _abs_squared(x))
    # the difference can round to just below zero, and rsqrt of that is NaN
    return mean, jnp.maximum(0.0, mean_of_squares - _abs_squared(mean))
  (mean,) = average(x)
  (var,) = average(_abs_squared(x - jnp.expand_dims(mean, axes)))
  return mean, var


def normalize(x: Array, mean: Array, var: Array, scale: Array | None, bias: Array | None,
              reduction_axes: Axes, feature_axes: Axes, dtype: Dtype,
              epsilon: float) -> Array:
  """``(x - mean) / sqrt(var + epsilon) * scale + bias``, in the result dtype.

  ``mean`` and ``var`` lack the ``reduction_axes``; ``scale`` and ``bias``
  are flat, with one entry per element of the ``feature_axes``.

  >>> import jax.numpy as jnp
  >>> x = jnp.array([[1.0, 3.0]])
  >>> normalize(x, jnp.array([2.0]), jnp.array([1.0]), None, jnp.array([10.0, 20.0]),
  ...            reduction_axes=1, feature_axes=1, dtype=None, epsilon=0.0)
  Array([[ 9., 21.]], dtype=float32)
  """
  reduction_axes = canonical_axes(x.ndim, reduction_axes)
  feature_axes = canonical_axes(x.ndim, feature_axes)
  # size-1 axes where the statistics were reduced, so they broadcast against x
  stats_shape = [1 if axis in reduction_axes else n for axis, n in enumerate(x.shape)]
  feature_shape = [n if axis in feature_axes else 1 for axis, n in enumerate(x.shape)]
  y = x - mean.reshape(stats_shape)
  multiplier = lax.rsqrt(var.reshape(stats_shape) + epsilon)
  if scale is not None:
    scale = scale.reshape(feature_shape)
    multiplier = multiplier * scale  # scale 1/std before x, in Flax's order of rounding
  y = y * multiplier
  if bias is not None:
    bias = bias.reshape(feature_shape)
    y = y + bias
  return jnp.asarray(y, dtypes.canonicalize_dtype(x, scale, bias, dtype=dtype))


# -- checks that teach ---------------------------------------------------------
def check_float_dtype(layer: str, dtype: Dtype) -> None:
  """Refuse an integer ``dtype``: a standard deviation needs floating point.

  >>> import jax.numpy as jnp
  >>> check_float_dtype('LayerNorm', jnp.int32)
  Traceback (most recent call last):
  ...
  ValueError: LayerNorm: dtype=int32 is not a floating-point type, but normalizing divides by a standard deviation, which needs one. Pass dtype=jnp.float32 (or bfloat16, float16), or dtype=None to follow the input.
  """
  if dtype is not None and not jnp.issubdtype(dtype, jnp.inexact):
    raise ValueError(
        f'{layer}: dtype={jnp.dtype(dtype).name} is not a floating-point type, but '
        'normalizing divides by a standard deviation, which needs one. Pass '
        'dtype=jnp.float32 (or bfloat16, float16), or dtype=None to follow the input.'
    )


def check_num_features(layer: str, x: Array, axes: tuple[int, ...], where: str,
                       num_features: int) -> None:
  """Refuse an input whose ``axes`` do not hold ``num_features`` features in all.

  >>> import jax.numpy as jnp
  >>> check_num_features('LayerNorm', jnp.ones((2, 5)), (1,), 'feature_axes=-1', 3)
  Traceback (most recent call last):
  ...
  ValueError: LayerNorm was built for num_features=3, but the input of shape (2, 5) has 5 features on feature_axes=-1. Build the layer with num_features=5, or normalize over the axes that hold 3 features.
  """
  size = int(np.prod([x.shape[axis] for axis in axes]))
  if size != num_features:
    raise ValueError(
        f'{layer} was built for num_features={num_features}, but the input of shape '
        f'{tuple(x.shape)} has {size} features on {where}. Build the layer with '
        f'num_features={size}, or normalize over the axes that hold {num_features} features.'
    )


def check_mask(layer: str, mask: Array | None, x: Array) -> None:
  """Refuse a mask that does not broadcast to the input ``x``.

  >>> import jax.numpy as jnp
  >>> check_mask('LayerNorm', jnp.ones((2, 1), bool), jnp.ones((2, 3)))   # fits: no error
  """
  if mask is None:
    return
  try:
    fits = np.broadcast_shapes(np.shape(mask), x.shape) == x.shape
  except ValueError:
    fits = False
  if not fits:
    raise ValueError(
        f'{layer}: the mask of shape {np.shape(mask)} does not broadcast to the input of '
        f'shape {tuple(x.shape)}. Give the mask the shape of the input, with size 1 on '
        f'the axes where it is the same for all entries (e.g. {(*x.shape[:-1], 1)}).'
    )


# -- the layers ------------------------------------------------------------------
class BatchNorm(Module):
  """Batch normalization: normalize each feature over the batch.

  In training (``layer.train()``, or ``use_running_average=False``) it uses
  the statistics of the batch and updates the running averages ``mean`` and
  ``var``: ``new = momentum * old + (1 - momentum) * batch``.  In inference
  (``layer.eval()``, or ``use_running_average=True``) it uses the running
  averages and changes nothing.

  >>> import jax, jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> layer = nnx.BatchNorm(3, momentum=0.9, rngs=nnx.Rngs(0))
  >>> x = jnp.array([[0.0, 1.0, 2.0], [2.0, 3.0, 4.0]])
  >>> layer(x).round(3).tolist()  # training by default
  [[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]
  >>> print(layer.mean.value.round(3))  # 0.9 * 0 + 0.1 * [1, 2, 3]
  [0.1 0.2 0.3]
  >>> layer.eval()
  >>> _ = layer(x)
  >>> print(layer.mean.value.round(3))  # unchanged in eval mode
  [0.1 0.2 0.3]
  """

  def __init__(self, num_features: int, *, use_running_average: bool | None = False,
               axis: int = -1, momentum: float = 0.99, epsilon: float = 1e-5,
               dtype: Dtype = None, param_dtype: Dtype = jnp.float32, use_bias: bool = True,
               use_scale: bool = True, bias_init: Initializer = initializers.zeros_init(),
               scale_init: Initializer = initializers.ones_init(), axis_name: str | None = None,
               axis_index_groups: tp.Any = None, use_fast_variance: bool = True,
               promote_dtype: PromoteDtype = dtypes.promote_dtype, rngs: Rngs,
               bias_metadata: Metadata = NO_METADATA, scale_metadata: Metadata = NO_METADATA):
    check_float_dtype('BatchNorm', dtype)
    # the running averages start at mean 0, variance 1; always float32
    self.mean = BatchStat(jnp.zeros((num_features,), jnp.float32))
    self.var = BatchStat(jnp.ones((num_features,), jnp.float32))
    self.scale = scale_or_bias(use_scale, scale_init, rngs, num_features, param_dtype,
                                scale_metadata)
    self.bias = scale_or_bias(use_bias, bias_init, rngs, num_features, param_dtype,
                               bias_metadata)
    self.num_features = num_features
    self.use_running_average = use_running_average
    self.axis = axis
    self.momentum = momentum
    self.epsilon = epsilon
    self.dtype = dtype
    self.param_dtype = param_dtype
    self.use_bias = use_bias
    self.use_scale = use_scale
    self.axis_name = axis_name
    self.axis_index_groups = axis_index_groups
    self.use_fast_variance = use_fast_variance
    self.promote_dtype = promote_dtype

  def __call__(self, x: Array, use_running_average: bool | None = None, *,
               mask: Array | None = None) -> Array:
    """Normalize ``x``; ``use_running_average`` given here wins over the attribute.

    >>> import jax.numpy as jnp
    >>> import nnx_edu as nnx
    >>> layer = nnx.BatchNorm(2, rngs=nnx.Rngs(0))
    >>> y = layer(jnp.ones((4, 2)), use_running_average=True)  # (1 - 0) / sqrt(1 + 1e-5)
    >>> y.round(3).tolist()[0], layer.mean.value.tolist()  # running mean untouched
    ([1.0, 1.0], [0.0, 0.0])
    """
    if use_running_average is None:
      use_running_average = self.use_running_average
    if use_running_average is None:
      raise ValueError(
          'BatchNorm does not know whether to use its running averages: '
          'use_running_average is None in the constructor and in the call. Pass '
          'use_running_average=True/False to BatchNorm(...) or to the call, or call '
          'model.train() / model.eval().'
      )
    feature_axes = canonical_axes(x.ndim, self.axis)
    reduction_axes = tuple(axis for axis in range(x.ndim) if axis not in feature_axes)
    check_num_features('BatchNorm', x, feature_axes, f'axis={self.axis}', self.num_features)
    check_mask('BatchNorm', mask, x)
    x, mean, var, scale, bias = self.promote_dtype(
        (x, self.mean.value, self.var.value, value_or_none(self.scale), value_or_none(self.bias)),
        dtype=self.dtype)
    if not use_running_average:
      mean, var = mean_and_var(
          x, reduction_axes, self.dtype, axis_name=self.axis_name,
          axis_index_groups=self.axis_index_groups,
          use_fast_variance=self.use_fast_variance, mask=mask)
      # the running averages are bookkeeping, not part of the function to differentiate
      self.mean.value = lax.stop_gradient(
          self.momentum * self.mean.value + (1 - self.momentum) * mean)
      self.var.value = lax.stop_gradient(
          self.momentum * self.var.value + (1 - self.momentum) * var)
    return normalize(x, mean, var, scale, bias, reduction_axes, feature_axes,
                      self.dtype, self.epsilon)

  def set_view(self, use_running_average: bool | None = None) -> None:
    """Used by ``nnx.view``: running averages (True) or batch statistics (False).

    >>> import nnx_edu as nnx
    >>> nnx.view(nnx.BatchNorm(2, rngs=nnx.Rngs(0)), use_running_average=True).use_running_average
    True

    Args:
      use_running_average: if True, the stored batch statistics will be
        used instead of computing the batch statistics on the input.
    """
    if use_running_average is not None:
      self.use_running_average = use_running_average


class LayerNorm(Module):
  """Layer normalization: normalize each example over its own features.

  Statistics are taken over ``reduction_axes``; ``scale`` and ``bias`` have
  one entry per element of the ``feature_axes`` (both default to the last
  axis), so the result does not depend on the other examples in the batch.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> layer = nnx.LayerNorm(4, rngs=nnx.Rngs(0))
  >>> y = layer(jnp.arange(8.0).reshape(2, 4))
  >>> y.mean(-1).round(4), y.std(-1).round(3)
  (Array([0., 0.], dtype=float32), Array([1., 1.], dtype=float32))
  """

  def __init__(self, num_features: int, *, epsilon: float = 1e-6, dtype: Dtype = None,
               param_dtype: Dtype = jnp.float32, use_bias: bool = True, use_scale: bool = True,
               bias_init: Initializer = initializers.zeros_init(),
               scale_init: Initializer = initializers.ones_init(), reduction_axes: Axes = -1,
               feature_axes: Axes = -1, axis_name: str | None = None,
               axis_index_groups: tp.Any = None, use_fast_variance: bool = True,
               promote_dtype: PromoteDtype = dtypes.promote_dtype, rngs: Rngs,
               bias_metadata: Metadata = NO_METADATA, scale_metadata: Metadata = NO_METADATA):
    check_float_dtype('LayerNorm', dtype)
    self.scale = scale_or_bias(use_scale, scale_init, rngs, num_features, param_dtype,
                                scale_metadata)
    self.bias = scale_or_bias(use_bias, bias_init, rngs, num_features, param_dtype,
                               bias_metadata)
    self.num_features = num_features
    self.epsilon = epsilon
    self.dtype = dtype
    self.param_dtype = param_dtype
    self.use_bias = use_bias
    self.use_scale = use_scale
    self.reduction_axes = reduction_axes
    self.feature_axes = feature_axes
    self.axis_name = axis_name
    self.axis_index_groups = axis_index_groups
    self.use_fast_variance = use_fast_variance
    self.promote_dtype = promote_dtype

  def __call__(self, x: Array, *, mask: Array | None = None) -> Array:
    """Normalize ``x``; only entries where ``mask`` is True count in the statistics.

    >>> import jax.numpy as jnp
    >>> import nnx_edu as nnx
    >>> layer = nnx.LayerNorm(3, use_scale=False, use_bias=False, rngs=nnx.Rngs(0))
    >>> y = layer(jnp.array([1.0, 3.0, 100.0]), mask=jnp.array([True, True, False]))
    >>> print(y.round(2))  # mean 2 and variance 1 from the first two entries
    [-1.  1. 98.]
    """
    return _layer_norm(self, x, mask, use_mean=True)


class RMSNorm(Module):
  """Root-mean-square normalization: ``x / sqrt(mean(x**2) + epsilon) * scale``.

  Cheaper than LayerNorm: no mean is subtracted, and there is no bias.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> layer = nnx.RMSNorm(4, rngs=nnx.Rngs(0))
  >>> print(layer(jnp.array([0.0, 0.0, 0.0, 4.0])).round(3))  # rms = sqrt(16 / 4) = 2
  [0. 0. 0. 2.]
  """

  def __init__(self, num_features: int, *, epsilon: float = 1e-6, dtype: Dtype = None,
               param_dtype: Dtype = jnp.float32, use_scale: bool = True,
               scale_init: Initializer = initializers.ones, reduction_axes: Axes = -1,
               feature_axes: Axes = -1, axis_name: str | None = None,
               axis_index_groups: tp.Any = None, use_fast_variance: bool = True,
               promote_dtype: PromoteDtype = dtypes.promote_dtype, rngs: Rngs,
               scale_metadata: Metadata = NO_METADATA):
    check_float_dtype('RMSNorm', dtype)
    self.scale = scale_or_bias(use_scale, scale_init, rngs, num_features, param_dtype,
                                scale_metadata)
    self.num_features = num_features
    self.epsilon = epsilon
    self.dtype = dtype
    self.param_dtype = param_dtype
    self.use_scale = use_scale
    self.reduction_axes = reduction_axes
    self.feature_axes = feature_axes
    self.axis_name = axis_name
    self.axis_index_groups = axis_index_groups
    self.use_fast_variance = use_fast_variance
    self.promote_dtype = promote_dtype

  def __call__(self, x: Array, mask: Array | None = None) -> Array:
    """Normalize ``x``; only entries where ``mask`` is True count in the statistics."""
    return _layer_norm(self, x, mask, use_mean=False)


def _layer_norm(layer: LayerNorm | RMSNorm, x: Array, mask: Array | None,
                use_mean: bool) -> Array:
  """The call of LayerNorm (``use_mean=True``) and RMSNorm (``use_mean=False``)."""
  name = type(layer).__name__
  bias = getattr(layer, 'bias', None)  # RMSNorm has none
  if layer.scale is not None or bias is not None:  # without parameters any size works
    check_num_features(name, x, canonical_axes(x.ndim, layer.feature_axes),
                    f'feature_axes={layer.feature_axes}', layer.num_features)
  check_mask(name, mask, x)
  x, scale, bias = layer.promote_dtype((x, value_or_none(layer.scale), value_or_none(bias)),
                                       dtype=layer.dtype)
  mean, var = mean_and_var(
      x, layer.reduction_axes, layer.dtype, axis_name=layer.axis_name,
      axis_index_groups=layer.axis_index_groups, use_mean=use_mean,
      use_fast_variance=layer.use_fast_variance, mask=mask)
  return normalize(x, mean, var, scale, bias, layer.reduction_axes, layer.feature_axes,
                    layer.dtype, layer.epsilon)


def scale_or_bias(use: bool, init: Initializer, rngs: Rngs, num_features: int,
                   param_dtype: Dtype, metadata: Metadata) -> tp.Any:
  """A ``(num_features,)`` Param, or None (marked data, as in Flax) when not used.

  A key is drawn only for a Param that is made, so the keys match Flax's.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> scale_or_bias(True, nnx.initializers.ones, nnx.Rngs(0), 2, jnp.float32, {})
  Param( # 2 (8 B)
    value=Array([1., 1.], dtype=float32)
  )
  """
  if not use:
    return data(None)
  return Param(init(rngs.params(), (num_features,), param_dtype), **metadata)
