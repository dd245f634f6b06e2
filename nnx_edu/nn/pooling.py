"""Layers -- pooling: summarize each window of neighbouring positions.

Pooling slides a window over the spatial axes, like a convolution
(``conv.py``), but instead of a learned kernel it applies a fixed summary:
the maximum (``max_pool``), the minimum (``min_pool``) or the mean
(``avg_pool``).  It has no parameters, so these are plain functions, not
Modules.  Each feature (channel) is pooled on its own.

Inputs are channels-last, as in the conv chapter: ``(*batch, *spatial,
features)``.  ``len(window_shape)`` says how many spatial axes there are;
any axes before them are batch axes (there may be none).

* ``strides``: how far the window moves on each spatial axis (default 1,
  every position); ``strides == window_shape`` gives non-overlapping windows.
* ``padding``: ``'VALID'`` (no padding, the output shrinks), ``'SAME'`` (pad
  so that the output has ``ceil(size / stride)`` positions; an odd pad cell
  goes after), ``'SAME_LOWER'`` (the same, the odd cell before), in any
  case, or one ``(low, high)`` pair per spatial axis.

Padded cells hold the reduction's neutral value (``-inf`` for max, ``+inf``
for min, ``0`` for sums), so they never win a max or a min.  For the mean
they add 0 to the sum; ``count_include_pad`` says whether they count in
the divisor.

>>> import jax.numpy as jnp
>>> import nnx_edu as nnx
>>> x = jnp.arange(16.0).reshape(1, 4, 4, 1)  # one 4x4 image, one channel
>>> nnx.max_pool(x, (2, 2), strides=(2, 2))[0, :, :, 0]
Array([[ 5.,  7.],
       [13., 15.]], dtype=float32)
"""

from __future__ import annotations

import typing as tp

import jax.numpy as jnp
import numpy as np
from jax import lax

from nnx_edu.nn.common import Array

__all__ = ['pool', 'avg_pool', 'max_pool', 'min_pool']

Padding = tp.Union[str, tp.Sequence[tp.Sequence[int]]]
PADDING_NAMES = ('SAME', 'VALID', 'SAME_LOWER')  # what lax.reduce_window reads


def _lax_padding(caller: str, padding: Padding, rank: int) -> str | tuple[tuple[int, int], ...]:
  """``padding`` as an upper-case name, or as ``rank`` (low, high) pairs."""
  if isinstance(padding, str):
    if padding.upper() not in PADDING_NAMES:
      raise ValueError(f'{caller}: unknown padding {padding!r}; use one of {list(PADDING_NAMES)} '
                       f'(any case), or one (low, high) pair for each of the {rank} spatial '
                       'axes.')
    return padding.upper()
  pairs = tuple(tuple(p) if np.iterable(p) else p for p in padding)
  if len(pairs) != rank or any(not isinstance(p, tuple) or len(p) != 2 for p in pairs):
    raise ValueError(f'{caller}: padding={padding!r} must give one (low, high) pair for each of '
                     f'the {rank} spatial axes of the window, e.g. {((1, 1),) * rank}.')
  return pairs


def _reduce_windows(caller: str, inputs: Array, init: tp.Any, reduce_fn: tp.Callable,
                    window_shape: tp.Sequence[int], strides: tp.Sequence[int] | None,
                    padding: Padding) -> Array:
  """Check the arguments, naming ``caller`` in errors, then run ``lax.reduce_window``."""
  window_shape = tuple(window_shape)
  rank, shape = len(window_shape), jnp.shape(inputs)
  if len(shape) < rank + 1:
    raise ValueError(
        f'{caller}: window_shape {window_shape} has {rank} spatial axes, so the inputs need at '
        f'least {rank + 1} axes (*batch, {rank} spatial, features); got shape {tuple(shape)}. '
        'Add a features axis (x[..., None]), or give window_shape one entry per spatial axis.')
  strides = tuple(strides) if strides else (1,) * rank
  if len(strides) != rank:
    raise ValueError(f'{caller}: strides={strides} has {len(strides)} entries but window_shape '
                     f'{window_shape} has {rank}; give one stride per spatial axis.')
  padding = _lax_padding(caller, padding, rank)
  # Batch axes and the features axis get a window of 1: each is pooled on its own.
  n_batch = len(shape) - rank - 1
  dims, steps = (1,) * n_batch + window_shape + (1,), (1,) * n_batch + strides + (1,)
  if not isinstance(padding, str):
    padding = ((0, 0),) * n_batch + padding + ((0, 0),)
  return lax.reduce_window(inputs, init, reduce_fn, dims, steps, padding)


def pool(inputs: Array, init: tp.Any, reduce_fn: tp.Callable[[Array, Array], Array],
         window_shape: tp.Sequence[int], strides: tp.Sequence[int] | None,
         padding: Padding) -> Array:
  """Reduce every window of the inputs with ``reduce_fn``, starting from ``init``.

  The building block of the pooling functions: ``max_pool`` is
  ``pool(x, -inf, lax.max, ...)``.  Pooling is generally not differentiable
  through ``reduce_fn`` (JAX differentiates only sums, max and min).

  Args:
    inputs: an array of shape ``(*batch, *spatial, features)``.
    init: the reduction's starting (and padding) value.
    reduce_fn: a function ``(a, b) -> c`` combining two values, e.g. ``lax.add``.
    window_shape: the window's size on each spatial axis.
    strides: the window's step on each spatial axis (None: 1 each).
    padding: ``'SAME'``, ``'VALID'``, ``'SAME_LOWER'`` or (low, high) pairs.

  >>> import jax.numpy as jnp
  >>> from jax import lax
  >>> import nnx_edu as nnx
  >>> nnx.pool(jnp.arange(5.0)[:, None], 0.0, lax.add, (2,), None, 'VALID')[:, 0]
  Array([1., 3., 5., 7.], dtype=float32)
  """
  return _reduce_windows('pool', inputs, init, reduce_fn, window_shape, strides, padding)


def avg_pool(inputs: Array, window_shape: tp.Sequence[int],
             strides: tp.Sequence[int] | None = None, padding: Padding = 'VALID',
             count_include_pad: bool = True) -> Array:
  """The mean of each window.

  Args:
    inputs, window_shape, strides, padding: as in ``pool`` (default padding
      ``'VALID'``).
    count_include_pad: whether padded cells count in the divisor (default
      True: always divide by the window's size).  With False, a window at
      the border is the mean of its real cells only.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> x = jnp.ones((1, 3, 1))
  >>> nnx.avg_pool(x, (2,), padding='SAME')[0, :, 0]
  Array([1. , 1. , 0.5], dtype=float32)
  >>> nnx.avg_pool(x, (2,), padding='SAME', count_include_pad=False)[0, :, 0]
  Array([1., 1., 1.], dtype=float32)
  """
  sums = _reduce_windows('avg_pool', inputs, 0.0, lax.add, window_shape, strides, padding)
  if count_include_pad:
    return sums / np.prod(window_shape)
  # Count the real cells of each window by pooling ones of the spatial shape;
  # the counts broadcast over batch axes and features.
  spatial = jnp.shape(inputs)[-len(window_shape) - 1:-1]
  counts = _reduce_windows('avg_pool', jnp.ones((*spatial, 1)), 0.0, lax.add, window_shape,
                           strides, padding)
  return sums / counts


def max_pool(inputs: Array, window_shape: tp.Sequence[int],
             strides: tp.Sequence[int] | None = None, padding: Padding = 'VALID') -> Array:
  """The maximum of each window.

  Args:
    inputs, window_shape, strides, padding: as in ``pool`` (default padding
      ``'VALID'``).

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> nnx.max_pool(jnp.array([[3.0], [1.0], [4.0], [1.0]]), (2,), strides=(2,))[:, 0]
  Array([3., 4.], dtype=float32)
  """
  return _reduce_windows('max_pool', inputs, -jnp.inf, lax.max, window_shape, strides, padding)


def min_pool(inputs: Array, window_shape: tp.Sequence[int],
             strides: tp.Sequence[int] | None = None, padding: Padding = 'VALID') -> Array:
  """The minimum of each window.

  Args:
    inputs, window_shape, strides, padding: as in ``pool`` (default padding
      ``'VALID'``).

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> nnx.min_pool(jnp.array([[3.0], [1.0], [4.0], [1.0]]), (2,), strides=(2,))[:, 0]
  Array([1., 1.], dtype=float32)
  """
  return _reduce_windows('min_pool', inputs, jnp.inf, lax.min, window_shape, strides, padding)
