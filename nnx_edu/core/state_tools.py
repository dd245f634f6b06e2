"""Core -- State tools: the State methods as functions, and checkpoint keys.

Flax is moving from ``State`` methods to plain functions, which work on
any nested mapping of Variables.  This chapter gives them, each a few lines
on the previous chapter's flat view:

============================================  ======================================
function                                      does
============================================  ======================================
``map_state(f, state)``                       a new State of ``f(path, leaf)``
``filter_state(state, Param, ...)``           ``state.filter(...)``: what the filters pick
``split_state(state, Param, ...)``            ``state.split(...)``: every leaf placed
``merge_state(a, b, ...)``                    one State from several; later ones win
``restore_int_paths(pure_dict)``              ``{'0': ...}`` back to ``{0: ...}``
============================================  ======================================

>>> import jax.numpy as jnp
>>> import nnx_edu as nnx
>>> state = nnx.State({'w': nnx.Param(jnp.ones(2)), 'n': nnx.BatchStat(jnp.zeros(2))})
>>> params, stats = nnx.split_state(state, nnx.Param, nnx.BatchStat)
>>> doubled = nnx.map_state(lambda path, v: v.replace(v.value * 2), params)
>>> nnx.merge_state(doubled, stats)['w'].value
Array([2., 2.], dtype=float32)

``merge_state`` differs from ``State.merge`` on one point: when two States
hold a leaf at the same path, the later one wins instead of being an error
(so ``merge_state(state, new_values)`` overrides).
"""

from __future__ import annotations

import typing as tp
from collections import abc

from nnx_edu.core import filters as filterlib
from nnx_edu.core.filters import Path
from nnx_edu.core.state import State, as_state
from nnx_edu.core.traversals import flatten_mapping, unflatten_mapping


def _require_state(state: tp.Any, function: str, argument: str = 'state') -> State:
  """``state`` as a State; anything but a mapping gets an error that says what to pass."""
  if not isinstance(state, abc.Mapping):
    raise TypeError(
        f'{function} expects {argument} to be a State (or a nested dict of Variables), got '
        f'{type(state).__name__}. For a Module, take its State first: '
        f'{function}(nnx.state(model), ...).'
    )
  return as_state(state)


def map_state(f: tp.Callable[[Path, tp.Any], tp.Any], state: State) -> State:
  """A new State with ``f(path, leaf)`` in place of every leaf; ``state`` is unchanged.

  ``f`` is called once per leaf, in sorted path order.  The leaves are the
  Variables themselves, so return a new one (``v.replace(...)``) rather than
  changing ``v`` in place, or the original State (and its model) changes too.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> state = nnx.State({'b': nnx.Param(jnp.ones(1)), 'a': {'c': nnx.Param(jnp.ones(2))}})
  >>> shapes = nnx.map_state(lambda path, v: v.value.shape, state)
  >>> shapes
  State({
    'a': {
      'c': (2,)
    },
    'b': (1,)
  })
  """
  state = _require_state(state, 'map_state')
  return State.from_flat_path([(path, f(path, leaf)) for path, leaf in state.flat_state()])


def filter_state(state: State, first: filterlib.Filter, /, *filters: filterlib.Filter):
  """The leaves each filter selects, one State per filter (``state.filter`` as a function).

  Leaves no filter selects are left out; a leaf goes to the first filter
  that selects it.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> state = nnx.State({'w': nnx.Param(jnp.ones(1)), 'n': nnx.BatchStat(jnp.zeros(1)), 'x': 1})
  >>> params, stats = nnx.filter_state(state, nnx.Param, nnx.BatchStat)
  >>> list(params), list(stats)
  (['w'], ['n'])
  """
  return _require_state(state, 'filter_state').filter(first, *filters)


def split_state(state: State, first: filterlib.Filter, /, *filters: filterlib.Filter):
  """One State per filter, and every leaf must land in one (``state.split`` as a function).

  End the filters with ``...`` to collect the rest.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> state = nnx.State({'w': nnx.Param(jnp.ones(1)), 'n': nnx.BatchStat(jnp.zeros(1))})
  >>> params, rest = nnx.split_state(state, nnx.Param, ...)
  >>> list(rest)
  ['n']
  """
  return _require_state(state, 'split_state').split(first, *filters)


def merge_state(state: tp.Mapping, /, *states: tp.Mapping, cls: type[State] = State) -> State:
  """One State holding the leaves of all the given States (the inverse of ``split_state``).

  Where two States have a leaf at the same path, the later one wins.  A
  single State is returned as it is (a plain dict is made a ``cls``).

  >>> import nnx_edu as nnx
  >>> merged = nnx.merge_state({'a': 1, 'b': {'c': 2}}, {'b': {'c': 3, 'd': 4}})
  >>> merged.to_pure_dict()
  {'a': 1, 'b': {'c': 3, 'd': 4}}
  >>> nnx.merge_state({'a': 1}, [('b', 2)])
  Traceback (most recent call last):
  ...
  TypeError: merge_state expects states[1] to be a State (or a nested dict of Variables), got list. For a Module, take its State first: merge_state(nnx.state(model), ...).
  """
  all_states = (state, *states)
  for position, each in enumerate(all_states):
    _require_state(each, 'merge_state', f'states[{position}]')
  if not states:
    return state if isinstance(state, cls) else cls(state)
  flat: dict = {}
  for each in all_states:
    flat.update(flatten_mapping(each))  # a later leaf at the same path replaces the earlier
  return cls(unflatten_mapping(flat))


def restore_int_paths(pure_dict: tp.Mapping) -> dict:
  """The dict with every key that reads as an integer (``'0'``, ``'12'``) turned into an int.

  Checkpoint formats store keys as strings, but the State of an ``nnx.List``
  has int keys: this puts them back, at every depth.  Empty nested dicts
  are dropped, as ``flatten_mapping`` drops them.

  >>> import nnx_edu as nnx
  >>> nnx.restore_int_paths({'layers': {'0': {'w': 1.0}, '1': {'w': 2.0}}, 'name': {'x': 3}})
  {'layers': {0: {'w': 1.0}, 1: {'w': 2.0}}, 'name': {'x': 3}}
  """
  if not isinstance(pure_dict, abc.Mapping):
    raise TypeError(
        f'restore_int_paths expects pure_dict to be a nested dict (as a checkpoint restores '
        f'it), got {type(pure_dict).__name__}.'
    )
  flat = flatten_mapping(pure_dict)
  return unflatten_mapping({tuple(_as_int(key, path) for key in path): leaf
                            for path, leaf in flat.items()})


def _as_int(key: tp.Any, path: tuple) -> tp.Any:
  """``int(key)`` where Python can read the key as an int, else the key unchanged."""
  try:
    return int(key)
  except ValueError:
    return key
  except TypeError:
    raise TypeError(
        f'restore_int_paths: the key {key!r} in the path {path} is a {type(key).__name__}, '
        'which is neither a string nor a number. Checkpoint keys should be strings.'
    ) from None
