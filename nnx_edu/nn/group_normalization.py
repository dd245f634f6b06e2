"""Layers -- group and instance normalization: per example, per group of channels.

``normalization.py`` normalized over the batch (BatchNorm) or over all of an example's
features (LayerNorm).  The two layers here sit in between: each example is
normalized on its own, as in LayerNorm, but its channels are not all pooled
together.

================  =======================================================
``GroupNorm``     the channels (last axis) are split into groups; each
                  group is normalized over its channels and the spatial
                  axes.
``InstanceNorm``  every channel is normalized on its own, over the
                  spatial axes: GroupNorm with one channel per group.
================  =======================================================

For a batch of images ``(batch, height, width, channels)``:

>>> import jax, jax.numpy as jnp
>>> import nnx_edu as nnx
>>> x = jax.random.normal(jax.random.key(0), (2, 4, 4, 6))
>>> by_channel = nnx.InstanceNorm(6, rngs=nnx.Rngs(0))(x)
>>> by_group_of_one = nnx.GroupNorm(6, num_groups=6, rngs=nnx.Rngs(0))(x)
>>> bool(jnp.allclose(by_channel, by_group_of_one, atol=1e-5))
True

Both reuse ``normalization.py``'s ``mean_and_var`` and ``normalize``; only the
choice of axes is new.
"""

from __future__ import annotations

import typing as tp

import jax.numpy as jnp

from nnx_edu.core.module import Module
from nnx_edu.core.rngs import Rngs
from nnx_edu.nn import dtypes, initializers
from nnx_edu.nn.common import (NO_METADATA, Array, Axes, Dtype, Initializer, Metadata, PromoteDtype,
                               canonical_axes, check_axes_in_range, value_or_none)
from nnx_edu.nn.normalization import (check_float_dtype, check_mask, check_num_features,
                                      mean_and_var, normalize, scale_or_bias)

__all__ = ['GroupNorm', 'InstanceNorm']


class GroupNorm(Module):
  """Group normalization: normalize each example over groups of channels.

  The last axis holds the ``num_features`` channels; they are split into
  ``num_groups`` groups of ``group_size`` channels (give exactly one of the
  two).  Each group is normalized over its channels and the other
  ``reduction_axes`` (by default all axes except the first, the batch).
  ``num_groups=1`` is LayerNorm over all non-batch axes.

  >>> import jax, jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> layer = nnx.GroupNorm(6, num_groups=3, rngs=nnx.Rngs(0))
  >>> layer.num_groups, layer.group_size
  (3, 2)
  >>> y = layer(jax.random.normal(jax.random.key(0), (2, 5, 6)))
  >>> group_means = y.reshape(2, 5, 3, 2).mean((1, 3))  # per (example, group)
  >>> bool(abs(group_means).max() < 1e-5)
  True
  """

  def __init__(self, num_features: int, num_groups: int | None = 32,
               group_size: int | None = None, *, epsilon: float = 1e-6, dtype: Dtype = None,
               param_dtype: Dtype = jnp.float32, use_bias: bool = True, use_scale: bool = True,
               bias_init: Initializer = initializers.zeros_init(),
               scale_init: Initializer = initializers.ones_init(),
               reduction_axes: Axes | None = None, axis_name: str | None = None,
               axis_index_groups: tp.Any = None, use_fast_variance: bool = True,
               promote_dtype: PromoteDtype = dtypes.promote_dtype, rngs: Rngs,
               bias_metadata: Metadata = NO_METADATA, scale_metadata: Metadata = NO_METADATA):
    check_float_dtype('GroupNorm', dtype)
    self.feature_axis = -1
    self.num_groups, self.group_size = _group_layout(num_features, num_groups, group_size)
    self.scale = scale_or_bias(use_scale, scale_init, rngs, num_features, param_dtype,
                                scale_metadata)
    self.bias = scale_or_bias(use_bias, bias_init, rngs, num_features, param_dtype,
                               bias_metadata)
    self.epsilon = epsilon
    self.dtype = dtype
    self.param_dtype = param_dtype
    self.use_bias = use_bias
    self.use_scale = use_scale
    self.reduction_axes = reduction_axes
    self.axis_name = axis_name
    self.axis_index_groups = axis_index_groups
    self.use_fast_variance = use_fast_variance
    self.promote_dtype = promote_dtype

  def __call__(self, x: Array, *, mask: Array | None = None) -> Array:
    """Normalize ``x`` of shape ``(..., num_features)`` group by group.

    >>> import jax.numpy as jnp
    >>> import nnx_edu as nnx
    >>> layer = nnx.GroupNorm(4, num_groups=2, use_scale=False, use_bias=False, rngs=nnx.Rngs(0))
    >>> print(layer(jnp.array([[1.0, 3.0, 10.0, 30.0]])).round(2))  # groups [1, 3] and [10, 30]
    [[-1.  1. -1.  1.]]
    """
    default_axes = [*range(1, x.ndim - 1), -1]  # all but the batch axis
    axes = canonical_axes(
        x.ndim, default_axes if self.reduction_axes is None else self.reduction_axes)
    if axes[-1] != x.ndim - 1:
      raise ValueError(
          f'GroupNorm: reduction_axes={self.reduction_axes} must include the last axis '
          f'(the channels), but resolve to {axes} for an input of rank {x.ndim}. '
          f'Add -1, e.g. reduction_axes={(*axes, -1)}.'
      )
    num_features = self.num_groups * self.group_size
    check_num_features('GroupNorm', x, (x.ndim - 1,), 'the last axis', num_features)
    check_mask('GroupNorm', mask, x)
    x, scale, bias = self.promote_dtype((x, value_or_none(self.scale), value_or_none(self.bias)),
                                        dtype=self.dtype)
    # split the channels into (num_groups, group_size), then reduce over
    # group_size and the other reduction axes: one statistic per group
    grouped_shape = (*x.shape[:-1], self.num_groups, self.group_size)
    if mask is not None:
      mask = jnp.broadcast_to(mask, x.shape).reshape(grouped_shape)
    mean, var = mean_and_var(
        x.reshape(grouped_shape), [*axes[:-1], -1], self.dtype, axis_name=self.axis_name,
        axis_index_groups=self.axis_index_groups,
        use_fast_variance=self.use_fast_variance, mask=mask)
    # back from one statistic per group to one per channel
    mean = jnp.repeat(mean, self.group_size, axis=-1)
    var = jnp.repeat(var, self.group_size, axis=-1)
    return normalize(x, mean, var, scale, bias, axes[:-1], (self.feature_axis,),
                      self.dtype, self.epsilon)


def _group_layout(num_features: int, num_groups: int | None,
                  group_size: int | None) -> tuple[int, int]:
  """``(num_groups, group_size)`` from the one of them GroupNorm was given."""
  if (num_groups is None) == (group_size is None):
    raise ValueError(
        f'GroupNorm takes exactly one of num_groups and group_size, got '
        f'num_groups={num_groups} and group_size={group_size}. num_groups defaults to '
        '32: to give group_size instead, also pass num_groups=None.'
    )
  given, count = ('num_groups', num_groups) if group_size is None else ('group_size', group_size)
  if not isinstance(count, int) or count <= 0 or num_features % count != 0:
    divisors = [d for d in range(1, num_features + 1) if num_features % d == 0]
    raise ValueError(
        f'GroupNorm: {given}={count} does not divide num_features={num_features} '
        f'into equal groups. Choose {given} among the divisors of {num_features}: '
        f'{divisors}.'
    )
  if group_size is None:
    return count, num_features // count
  return num_features // count, count



class InstanceNorm(Module):
  """Instance normalization: normalize each channel of each example on its own.

  The statistics are taken over every axis except the first (the batch)
  and the ``feature_axes`` (by default the last, the channels).
  ``scale`` and ``bias`` have one entry per element of the
  ``feature_axes``.  It is LayerNorm with ``reduction_axes`` = the
  spatial axes, and GroupNorm with one channel per group.

  >>> import jax, jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> layer = nnx.InstanceNorm(3, rngs=nnx.Rngs(0))
  >>> y = layer(jax.random.normal(jax.random.key(0), (2, 5, 3)) * 4 + 1)
  >>> bool(abs(y.mean(axis=1)).max() < 1e-5)  # per (example, channel): mean 0 ...
  True
  >>> y.std(axis=1).round(3)                  # ... and standard deviation 1
  Array([[1., 1., 1.],
         [1., 1., 1.]], dtype=float32)
  """

  def __init__(self, num_features: int, *, epsilon: float = 1e-6, dtype: Dtype = None,
               param_dtype: Dtype = jnp.float32, use_bias: bool = True, use_scale: bool = True,
               bias_init: Initializer = initializers.zeros,
               scale_init: Initializer = initializers.ones, feature_axes: Axes = -1,
               axis_name: str | None = None, axis_index_groups: tp.Any = None,
               use_fast_variance: bool = True,
               promote_dtype: PromoteDtype = dtypes.promote_dtype, rngs: Rngs,
               bias_metadata: Metadata = NO_METADATA, scale_metadata: Metadata = NO_METADATA):
    check_float_dtype('InstanceNorm', dtype)
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
    self.feature_axes = feature_axes
    self.axis_name = axis_name
    self.axis_index_groups = axis_index_groups
    self.use_fast_variance = use_fast_variance
    self.promote_dtype = promote_dtype

  def __call__(self, x: Array, *, mask: Array | None = None) -> Array:
    """Normalize ``x`` of shape ``(batch, ..., features)``, counting entries where ``mask`` is True.

    >>> import jax.numpy as jnp
    >>> import nnx_edu as nnx
    >>> layer = nnx.InstanceNorm(1, use_scale=False, use_bias=False, rngs=nnx.Rngs(0))
    >>> x = jnp.array([[[1.0], [3.0], [50.0]]])   # one example, 3 positions, 1 channel
    >>> mask = jnp.array([[[True], [True], [False]]])
    >>> print(layer(x, mask=mask)[0, :, 0].round(2))  # mean 2, variance 1 from the first two
    [-1.  1. 48.]
    """
    check_axes_in_range('InstanceNorm', 'feature_axes', self.feature_axes, x.ndim,
                         f'the input of shape {tuple(x.shape)}')
    feature_axes = canonical_axes(x.ndim, self.feature_axes)
    if 0 in feature_axes:
      raise ValueError(
          f'InstanceNorm: feature_axes={self.feature_axes} includes axis 0 of the input of '
          f'shape {tuple(x.shape)}, but axis 0 is the batch: each example is normalized on '
          'its own. Put the batch first and name only the channel axes, e.g. '
          'feature_axes=-1; for an input without a batch axis add one with x[None].'
      )
    reduction_axes = tuple(axis for axis in range(1, x.ndim) if axis not in feature_axes)
    if self.scale is not None or self.bias is not None:  # without parameters any size works
      check_num_features('InstanceNorm', x, feature_axes, f'feature_axes={self.feature_axes}',
                      self.num_features)
    check_mask('InstanceNorm', mask, x)
    x, scale, bias = self.promote_dtype((x, value_or_none(self.scale), value_or_none(self.bias)),
                                        dtype=self.dtype)
    mean, var = mean_and_var(
        x, reduction_axes, self.dtype, axis_name=self.axis_name,
        axis_index_groups=self.axis_index_groups,
        use_fast_variance=self.use_fast_variance, mask=mask)
    return normalize(x, mean, var, scale, bias, reduction_axes, feature_axes, self.dtype,
                      self.epsilon)
