"""Layers -- normalizing the weights instead of the activations.

``normalization.py`` and ``group_normalization.py`` rescale what flows
*through* a layer.  The two wrappers here rescale the *weights* of a layer
they wrap, before every call, and then call it:

================  =======================================================
``SpectralNorm``  divides each weight matrix ``W`` by an estimate of its
                  largest singular value ``sigma``, so the layer stretches
                  no input by more than about 1 (useful for GAN critics).
                  ``sigma`` comes from power iteration, whose vector ``u``
                  and estimate ``sigma`` are kept as ``BatchStat`` Variables.
``WeightNorm``    writes each selected weight as ``g * v / ||v||``: its
                  direction ``v / ||v||`` (the norm taken over all axes but
                  the ``feature_axes``) times a per-feature ``scale`` ``g``.
================  =======================================================

As in Flax, both write the normalized weights *back into* the wrapped
layer: after a call, ``wrapper.layer_instance.kernel`` holds the normalized
kernel, and the next call normalizes that again.  Inside ``jax.grad`` the
gradient flows through the normalization to the weights.

>>> import jax, jax.numpy as jnp
>>> import nnx_edu as nnx
>>> layer = nnx.SpectralNorm(nnx.Linear(3, 3, rngs=nnx.Rngs(0)), n_steps=20, rngs=nnx.Rngs(1))
>>> _ = layer(jnp.ones((1, 3)))
>>> kernel = layer.layer_instance.kernel.value
>>> float(jnp.linalg.norm(kernel, ord=2).round(3))  # its largest singular value
1.0
"""

from __future__ import annotations

import math
import typing as tp

import jax.numpy as jnp
from jax import lax

from nnx_edu.core import filters as filterlib
from nnx_edu.core.graph import state
from nnx_edu.core.module import Module
from nnx_edu.core.pytrees import data
from nnx_edu.core.rngs import Rngs
from nnx_edu.core.state import to_flat_state
from nnx_edu.core.variable_types import BatchStat, Param
from nnx_edu.core.variables import Variable
from nnx_edu.nn import dtypes, initializers
from nnx_edu.nn.common import (Array, Axes, Dtype, Initializer, PromoteDtype, canonical_axes,
                               check_axes_in_range)
from nnx_edu.nn.normalization import check_float_dtype

__all__ = ['SpectralNorm', 'WeightNorm']

Path = filterlib.Path


# -- the shared arithmetic -------------------------------------------------------
def _unit(x: Array, epsilon: float, axes: tp.Sequence[int] | None = None) -> Array:
  """``x / sqrt(sum(x**2) + epsilon)``, the sum over ``axes`` (None: all of them).

  >>> import jax.numpy as jnp
  >>> _unit(jnp.array([[3.0, 4.0]]), 0.0)
  Array([[0.6, 0.8]], dtype=float32)
  """
  return x * lax.rsqrt((x * x).sum(axis=axes, keepdims=True) + epsilon)


def _power_iteration(matrix: Array, u: Array, n_steps: int,
                     epsilon: float) -> tuple[Array, Array]:
  """``n_steps`` rounds of ``v = unit(u W^T); u = unit(v W)``; returns ``(u, v)``.

  ``u`` and ``v`` (rows of shape ``(1, n)`` and ``(1, m)``) converge to the
  right and left singular vectors of the largest singular value of ``W``.

  >>> import jax.numpy as jnp
  >>> u, v = _power_iteration(jnp.diag(jnp.array([3.0, 1.0])), jnp.ones((1, 2)), 30, 0.0)
  >>> u.round(3), v.round(3)
  (Array([[1., 0.]], dtype=float32), Array([[1., 0.]], dtype=float32))
  """
  for _ in range(n_steps):
    v = _unit(u @ matrix.T, epsilon)
    u = _unit(v @ matrix, epsilon)
  # they only estimate sigma: the gradient treats them as constants
  return lax.stop_gradient(u), lax.stop_gradient(v)


def _params(layer: Module) -> tp.Sequence[tuple[Path, Param]]:
  """The ``(path, Param)`` pairs of ``layer``, sorted by path (the order of the keys drawn)."""
  return to_flat_state(state(layer, Param))


# -- the layers ------------------------------------------------------------------
class SpectralNorm(Module):
  """Divide the weight matrices of ``layer_instance`` by their largest singular value.

  Before each call every Param with two or more axes is viewed as a matrix
  (leading axes flattened: a Conv kernel ``(3, 3, 8, 16)`` becomes
  ``(72, 16)``); ``n_steps`` of power iteration, started from the stored
  ``u``, estimate its largest singular value ``sigma``; the Param is
  replaced by ``W / sigma``.  With ``update_stats`` (training; ``.train()``)
  the new ``u`` and ``sigma`` are stored in ``batch_stats``, keyed by the
  Param's path plus ``'u'`` or ``'sigma'``, so the estimate improves from
  call to call; ``.eval()`` leaves them as they are.  Vectors and scalars
  (biases) are left alone, and so is everything when ``n_steps < 1``.

  ``param_dtype`` is the dtype of ``u`` and ``sigma``; ``dtype`` the one
  the normalized weights are rounded to before being stored back (in the
  weight's own dtype).

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> layer = nnx.SpectralNorm(nnx.Linear(4, 5, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(1))
  >>> sorted(layer.batch_stats)
  [('kernel', 'sigma'), ('kernel', 'u')]
  >>> layer.batch_stats['kernel', 'u'].value.shape  # one entry per output
  (1, 5)
  >>> layer(jnp.ones((2, 4))).shape
  (2, 5)
  """

  def __init__(self, layer_instance: Module, *, n_steps: int = 1, epsilon: float = 1e-12,
               dtype: Dtype = None, param_dtype: Dtype = jnp.float32,
               error_on_non_matrix: bool = False, update_stats: bool = True, rngs: Rngs):
    check_float_dtype('SpectralNorm', dtype)
    self.layer_instance = layer_instance
    self.n_steps = n_steps
    self.epsilon = epsilon
    self.dtype = dtype
    self.param_dtype = param_dtype
    self.error_on_non_matrix = error_on_non_matrix
    # .train() and .eval() set use_running_average: it is "not update_stats"
    self.use_running_average = not update_stats
    self.batch_stats = data(self._start_power_iteration(rngs))

  def _start_power_iteration(self, rngs: Rngs) -> dict[Path, BatchStat]:
    """A random start ``u`` and ``sigma = 1`` per weight matrix; one key each, in path order."""
    stats = {}
    for path, param in _params(self.layer_instance):
      matrix = self._as_matrix(path, param.value)
      if matrix is None:
        continue
      key = rngs.params()  # one key serves both: ones() ignores it
      # inserted sorted ('sigma' < 'u'), the order in which Flax prints them
      stats[path + ('sigma',)] = BatchStat(initializers.ones(key, (), self.param_dtype))
      stats[path + ('u',)] = BatchStat(
          initializers.normal()(key, (1, matrix.shape[-1]), self.param_dtype))
    return stats

  def __call__(self, x: Array, update_stats: bool | None = None) -> Array:
    """Normalize the weights in place, then call the wrapped layer on ``x``.

    ``update_stats`` given here wins over ``not self.use_running_average``.

    >>> import jax.numpy as jnp
    >>> import nnx_edu as nnx
    >>> layer = nnx.SpectralNorm(nnx.Linear(2, 2, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(1))
    >>> u = layer.batch_stats['kernel', 'u'].value
    >>> _ = layer(jnp.ones((1, 2)), update_stats=False)
    >>> bool((layer.batch_stats['kernel', 'u'].value == u).all())  # not updated
    True
    >>> _ = layer(jnp.ones((1, 2)))  # updated: update_stats=True by default
    >>> bool((layer.batch_stats['kernel', 'u'].value == u).all())
    False
    """
    if update_stats is None:
      update_stats = not self.use_running_average
    for path, param in _params(self.layer_instance):
      self._normalize_in_place(path, param, update_stats)
    return self.layer_instance(x)

  def _normalize_in_place(self, path: Path, param: Param, update_stats: bool) -> None:
    matrix = self._as_matrix(path, param.value)
    if matrix is None:
      return
    u_stat, sigma_stat = self._stats_of(path, matrix)
    u, v = _power_iteration(matrix, u_stat.value, self.n_steps, self.epsilon)
    sigma = (v @ matrix @ u.T)[0, 0]  # the Rayleigh quotient v W u^T
    normalized = (matrix / jnp.where(sigma != 0, sigma, 1)).reshape(param.shape)
    if update_stats:
      # ``[...] =`` writes into the Variables: a bfloat16 result is stored as float32
      u_stat[...] = u
      sigma_stat[...] = sigma
    param[...] = jnp.asarray(normalized, dtypes.canonicalize_dtype(normalized, u, v, sigma,
                                                                    dtype=self.dtype))

  def _as_matrix(self, path: Path, weight: Array) -> Array | None:
    """``weight`` as a 2-D matrix, or None if it is not normalized (a vector or scalar)."""
    if weight.ndim <= 1 or self.n_steps < 1:
      return None
    if weight.ndim > 2 and self.error_on_non_matrix:
      raise ValueError(
          f'SpectralNorm: the Param at {path} of the wrapped '
          f'{type(self.layer_instance).__name__} has shape {tuple(weight.shape)} '
          f'({weight.ndim}-D), but error_on_non_matrix=True accepts only matrices (2-D). '
          'Pass error_on_non_matrix=False to normalize it as the matrix of shape '
          f'{(math.prod(weight.shape[:-1]), weight.shape[-1])} (leading axes flattened), '
          'or wrap a layer whose weights are matrices, such as Linear.'
      )
    return weight.reshape(-1, weight.shape[-1])

  def _stats_of(self, path: Path, matrix: Array) -> tuple[BatchStat, BatchStat]:
    u, sigma = self.batch_stats.get(path + ('u',)), self.batch_stats.get(path + ('sigma',))
    if u is None or sigma is None or u.value.shape != (1, matrix.shape[-1]):
      raise RuntimeError(
          f'SpectralNorm: the weight at {path} of the wrapped '
          f'{type(self.layer_instance).__name__} (as a matrix {tuple(matrix.shape)}) has no '
          f'power-iteration state of shape (1, {matrix.shape[-1]}) in batch_stats, whose keys '
          f'are {list(self.batch_stats)}. The wrapped layer\'s Params must not change after '
          'wrapping; wrap the changed layer again: nnx.SpectralNorm(layer, rngs=...).'
      )
    return u, sigma


class WeightNorm(Module):
  """Write each selected weight of ``layer_instance`` as ``scale * w / ||w||``.

  Before each call every Variable of the wrapped layer that
  ``variable_filter`` selects (default: a path containing ``'kernel'``) is
  divided by its L2 norm over all axes except the ``feature_axes``
  (``None``: over all axes), then multiplied by its ``scale``, which has
  the shape of the feature axes; the result replaces the weight, in
  ``dtype`` if given.

  As in Flax 0.12.8 the scales are plain float32 arrays in the dict
  ``scales`` (keyed by the weight's path), not Params, so an optimizer with
  ``wrt=nnx.Param`` leaves them alone; ``scale_init`` is called as
  ``scale_init(rngs['params'], shape)`` -- a stream, not a key, so only
  initializers that ignore the key (``ones``, ``zeros``, ``constant(c)``)
  work -- and ``param_dtype`` and ``promote_dtype`` are kept but not used.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> layer = nnx.WeightNorm(nnx.Linear(8, 4, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(1))
  >>> layer.scales[('kernel',)].shape  # one scale per output feature
  (4,)
  >>> _ = layer(jnp.ones((1, 8)))
  >>> jnp.linalg.norm(layer.layer_instance.kernel.value, axis=0).round(4)  # unit columns
  Array([1., 1., 1., 1.], dtype=float32)
  """

  def __init__(self, layer_instance: Module, *, feature_axes: Axes | None = -1,
               use_scale: bool = True, scale_init: Initializer = initializers.ones,
               epsilon: float = 1e-12, dtype: Dtype = None, param_dtype: Dtype = jnp.float32,
               variable_filter: filterlib.Filter = filterlib.PathContains('kernel'),
               promote_dtype: PromoteDtype = dtypes.promote_dtype, rngs: Rngs):
    check_float_dtype('WeightNorm', dtype)
    self.layer_instance = layer_instance
    self.feature_axes = () if feature_axes is None else feature_axes
    self.use_scale = use_scale
    self.scale_init = scale_init
    self.epsilon = epsilon
    self.dtype = dtype
    self.param_dtype = param_dtype
    self.variable_filter = filterlib.to_predicate(variable_filter)
    self.promote_dtype = promote_dtype  # part of Flax's signature; Flax does not call it either
    weights = self._selected_params()
    self.scales = data({path: self._initial_scale(rngs, path, weight.value)
                        for path, weight in weights}) if use_scale else None

  def _selected_params(self) -> list[tuple[Path, Param]]:
    params = _params(self.layer_instance)
    selected = [(path, param) for path, param in params if self.variable_filter(path, param)]
    if not selected:
      name = type(self.layer_instance).__name__
      found = f'its Params are at {[path for path, _ in params]}' if params else 'it has no Params'
      example = repr(params[-1][0][-1]) if params else "'kernel'"
      raise ValueError(
          f'WeightNorm: variable_filter={self.variable_filter!r} selects no Param of the '
          f'wrapped {name}, so there would be nothing to normalize; {found}. Pass a '
          'variable_filter that selects the weights, e.g. '
          f'variable_filter=nnx.PathContains({example}).'
      )
    return selected

  def _initial_scale(self, rngs: Rngs, path: Path, weight: Array) -> Array:
    shape = tuple(weight.shape[axis] for axis in self._feature_axes(path, weight))
    try:
      return self.scale_init(rngs['params'], shape)  # a stream, not a key: as in Flax
    except TypeError as error:
      raise TypeError(
          f'WeightNorm: scale_init={self.scale_init!r} failed when called as '
          f"scale_init(rngs['params'], {shape}) ({error}). Like Flax 0.12.8, WeightNorm passes "
          'the rng stream, not a key, so only initializers that ignore the key work: use '
          'nnx.initializers.ones (the default), zeros or constant(c).'
      ) from error

  def _feature_axes(self, path: Path, weight: Array) -> tuple[int, ...]:
    check_axes_in_range('WeightNorm', 'feature_axes', self.feature_axes, weight.ndim,
                         f'the weight at {path} of shape {tuple(weight.shape)}')
    return canonical_axes(weight.ndim, self.feature_axes)

  def __call__(self, x: Array, *args: tp.Any, **kwargs: tp.Any) -> tp.Any:
    """Normalize the selected weights in place, then call the wrapped layer.

    ``args`` and ``kwargs`` go to the wrapped layer's call.

    >>> import jax.numpy as jnp
    >>> import nnx_edu as nnx
    >>> linear = nnx.Linear(2, 2, use_bias=False, rngs=nnx.Rngs(0))
    >>> layer = nnx.WeightNorm(linear, feature_axes=None, use_scale=False, rngs=nnx.Rngs(1))
    >>> _ = layer(jnp.ones((1, 2)))
    >>> jnp.linalg.norm(linear.kernel.value).round(4)  # the whole kernel has norm 1
    Array(1., dtype=float32)
    """
    for path, variable in to_flat_state(state(self.layer_instance)):
      if self.variable_filter(path, variable):
        self._normalize_in_place(path, variable)
    return self.layer_instance(x, *args, **kwargs)

  def _normalize_in_place(self, path: Path, variable: Variable) -> None:
    weight = variable.value
    feature_axes = self._feature_axes(path, weight)
    normalized = _unit(weight, self.epsilon,
                       tuple(axis for axis in range(weight.ndim) if axis not in feature_axes))
    scale = None
    if self.use_scale:
      scale = self._scale_of(path, weight, feature_axes)
      normalized = normalized * scale
    # the weight is replaced, dtype included (Flax uses set_value here)
    variable.value = jnp.asarray(normalized,
                                 dtypes.canonicalize_dtype(weight, scale, dtype=self.dtype))

  def _scale_of(self, path: Path, weight: Array, feature_axes: tuple[int, ...]) -> Array:
    """The scale of the weight at ``path``, shaped to broadcast against it."""
    scale = self.scales.get(path)
    feature_shape = tuple(weight.shape[axis] for axis in feature_axes)
    if scale is None or scale.shape != feature_shape:
      raise RuntimeError(
          f'WeightNorm: the weight at {path} of the wrapped '
          f'{type(self.layer_instance).__name__} has no scale of shape {feature_shape} in '
          f'scales, whose keys are {list(self.scales)}. The wrapped layer\'s weights must '
          'not change after wrapping; wrap the changed layer again: '
          'nnx.WeightNorm(layer, rngs=...).'
      )
    return scale.reshape([n if axis in feature_axes else 1 for axis, n in enumerate(weight.shape)])
