"""Layers -- what every layer shares: type names, FrozenDict and checks.

The layer chapters that follow all speak of the same few things: arrays,
dtypes, initializers, metadata for a new Param, and axes.  Their type names
live here once, so that a signature such as
``kernel_init: Initializer = default_kernel_init`` reads the same in every
chapter.  So do the small helpers that several layer families use:

* ``value_or_none`` -- a parameter's array, or None for one that is off
  (``use_bias=False``);
* ``canonical_axes`` -- ``-1`` and friends as sorted non-negative axes;
* ``check_features`` and ``check_axes_in_range`` -- errors that teach,
  raised before ``lax`` would fail with a message about its own internals;
* ``op_kwargs`` -- the keyword arguments a layer passes to ``lax``;
* ``FrozenDict`` -- a hashable mapping, for a static attribute such as
  ``LinearGeneral.batch_axis``.

>>> import nnx_edu as nnx
>>> value_or_none(nnx.Param(2.0)), canonical_axes(3, -1)
(2.0, (2,))
"""

from __future__ import annotations

import typing as tp
from types import MappingProxyType

import jax
import jax.numpy as jnp

from nnx_edu.core.module import Module
from nnx_edu.core.variable_types import Param
from nnx_edu.nn import initializers

Array = jax.Array
Dtype = tp.Any  # a dtype, or a type such as jnp.float32
Initializer = initializers.Initializer
PrecisionLike = tp.Any  # None, a lax.Precision, or a pair of them
PromoteDtype = tp.Callable[..., tp.Any]  # like dtypes.promote_dtype
Axes = tp.Union[int, tp.Sequence[int]]
Metadata = tp.Mapping[str, tp.Any]  # extra metadata for a new Param
NO_METADATA: Metadata = MappingProxyType({})  # read-only: a safe default argument


class FrozenDict(tp.Mapping):
  """An immutable, hashable dict (``LinearGeneral.batch_axis``), printed like Flax's.

  >>> FrozenDict({0: 2})
  FrozenDict({
      0: 2,
  })
  """

  def __init__(self, items: tp.Mapping | tp.Iterable = ()):
    self._items = dict(items)

  def __getitem__(self, key: tp.Any) -> tp.Any:
    return self._items[key]

  def __iter__(self) -> tp.Iterator:
    return iter(self._items)

  def __len__(self) -> int:
    return len(self._items)

  def __hash__(self) -> int:
    return hash(tuple(self._items.items()))

  def __repr__(self) -> str:
    if not self._items:
      return 'FrozenDict({})'
    return 'FrozenDict({\n' + ''.join(f'    {k}: {v!r},\n' for k, v in self._items.items()) + '})'


def value_or_none(param: Param | None) -> Array | None:
  """The array in ``param``, or None for a missing parameter (``use_bias=False``).

  >>> import nnx_edu as nnx
  >>> value_or_none(None), value_or_none(nnx.Param(1.0))
  (None, 1.0)
  """
  return None if param is None else param[...]


def canonical_axes(ndim: int, axes: Axes) -> tuple[int, ...]:
  """``axes`` as sorted, distinct, non-negative ints: ``-1`` becomes ``ndim - 1``.

  >>> canonical_axes(4, (-1, 1, 1))
  (1, 3)
  """
  if not isinstance(axes, tp.Iterable):
    axes = (axes,)
  return tuple(sorted({axis + ndim if axis < 0 else axis for axis in axes}))


def check_axes_in_range(layer: str, argument: str, axes: Axes, ndim: int, what: str) -> None:
  """Refuse axes that ``what`` (an array of rank ``ndim``) does not have.

  >>> check_axes_in_range('LayerNorm', 'feature_axes', 2, 2, 'the input')
  Traceback (most recent call last):
  ...
  ValueError: LayerNorm: feature_axes=2 names axis 2, but the input has rank 2, so its axes are -2..1. Pass axes in that range (-1 is the last).
  """
  given = tuple(axes) if isinstance(axes, tp.Iterable) else (axes,)
  bad = [axis for axis in given if not -ndim <= axis < ndim]
  if bad:
    raise ValueError(
        f'{layer}: {argument}={axes} names axis {bad[0]}, but {what} has rank {ndim}, '
        f'so its axes are {-ndim}..{ndim - 1}. Pass axes in that range (-1 is the last).'
    )


def check_features(layer: Module, inputs: tp.Any, axes: tp.Sequence[int],
                   expected: tp.Sequence[int], *, param: str = 'kernel',
                   what: str = 'in_features') -> None:
  """Raise a ValueError that teaches unless ``inputs`` has sizes ``expected`` on ``axes``.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> layer = nnx.Linear(3, 4, rngs=nnx.Rngs(0))
  >>> check_features(layer, jnp.ones((2, 5)), (-1,), (3,))
  Traceback (most recent call last):
  ...
  ValueError: Linear: inputs of shape (2, 5) do not fit the kernel of shape (3, 4): axis -1 of the inputs must have size 3 (in_features). Pass inputs with those sizes, or create the layer with in_features=5.
  """
  shape = tuple(jnp.shape(inputs))
  ndim = len(shape)
  in_range = all(-ndim <= a < ndim for a in axes)
  got = tuple(shape[a] for a in axes) if in_range else None
  if got == tuple(expected):
    return

  def show(t: tp.Sequence[int]) -> tp.Any:  # one axis prints as a plain int
    return t[0] if len(t) == 1 else tuple(t)

  fix = f'create the layer with {what}={show(got)}' if in_range else 'add the missing axes'
  raise ValueError(
      f'{type(layer).__name__}: inputs of shape {shape} do not fit the {param} of shape '
      f'{tuple(getattr(layer, param).shape)}: axis {show(axes)} of the inputs must have '
      f'size {show(expected)} ({what}). Pass inputs with those sizes, or {fix}.'
  )


def op_kwargs(out_sharding: tp.Any, preferred_element_type: Dtype | None) -> dict:
  """Keyword arguments for the layer's dot/conv/einsum function.

  ``preferred_element_type`` is passed only when set, so that a custom
  function without that argument still works (as in Flax).

  >>> op_kwargs(None, None)
  {'out_sharding': None}
  """
  kwargs = {'out_sharding': out_sharding}
  if preferred_element_type is not None:
    kwargs['preferred_element_type'] = preferred_element_type
  return kwargs
