"""Core -- State: a model's Variables, as a nested mapping.

``nnx.state(model)`` collects every Variable of a model into a ``State``: a
nested mapping from attribute names (``str``) and list indices (``int``) to
Variables, plain arrays, or nested States.  It prints sorted by key, and it is
a JAX pytree, so it can go through ``jax.jit``, ``jax.grad`` or
``jax.tree.map``:

>>> import jax.numpy as jnp
>>> from nnx_edu import State, Param
>>> state = State({'linear': {'kernel': Param(jnp.ones((1, 2)))}})
>>> state.linear.kernel.value.shape          # attribute access ...
(1, 2)
>>> state['linear']['kernel'].value.shape    # ... or item access
(1, 2)

A State holds the model's own Variable objects, not copies: changing
``state.linear.kernel.value`` changes the model.  Use ``nnx.clone`` for a copy.

This chapter also gives the *flat* view of a State, a sorted list of
``(path, leaf)`` pairs, which is what filtering, splitting and merging work on.
"""

from __future__ import annotations

import typing as tp

import jax

from nnx_edu.core import filters as filterlib
from nnx_edu.core import reprs
from nnx_edu.core.filters import Key, Path, path_sort_key, sort_key
from nnx_edu.core.variables import Variable


class FlatState(tp.Sequence[tuple[Path, tp.Any]]):
  """A State as a list of ``(path, leaf)`` pairs, sorted by path.

  >>> import jax.numpy as jnp
  >>> from nnx_edu import State, Param
  >>> flat = State({'b': Param(jnp.ones(1)), 'a': {'c': 1.0}}).flat_state()
  >>> flat.paths
  (('a', 'c'), ('b',))
  """

  def __init__(self, pairs: tp.Iterable[tuple[Path, tp.Any]], *, sort: bool = True):
    pairs = list(pairs)
    if sort:
      pairs.sort(key=lambda pair: path_sort_key(pair[0]))
    self._pairs = pairs

  @property
  def paths(self) -> tuple[Path, ...]:
    return tuple(path for path, _ in self._pairs)

  @property
  def leaves(self) -> tuple[tp.Any, ...]:
    return tuple(leaf for _, leaf in self._pairs)

  def __getitem__(self, index):
    return self._pairs[index]

  def __len__(self) -> int:
    return len(self._pairs)

  def __repr__(self) -> str:
    return reprs.render('FlatState', [('', pair) for pair in self._pairs],
                        brackets=('([', '])'), key_sep='')


class State(tp.MutableMapping[Key, tp.Any]):
  """A nested mapping of Variables; what ``nnx.state`` and ``nnx.split`` return.

  Valid leaves are Variables, ``jax.Array``s and ``numpy`` arrays; nested
  plain dicts become nested States.

  >>> import jax.numpy as jnp
  >>> from nnx_edu import State, Param
  >>> State({'bias': Param(jnp.zeros(2))})
  State({
    'bias': Param( # 2 (8 B)
      value=Array([0., 0.], dtype=float32)
    )
  })
  """

  def __init__(self, mapping: tp.Mapping[Key, tp.Any] | tp.Iterable = (), /):
    items = mapping.items() if isinstance(mapping, tp.Mapping) else mapping
    vars(self)['_mapping'] = {
        key: State(value) if _is_branch(value) else value for key, value in items
    }

  # -- mapping protocol ----------------------------------------------------
  def __getitem__(self, key: Key) -> tp.Any:
    return self._mapping[key]

  def __setitem__(self, key: Key, value: tp.Any) -> None:
    self._mapping[key] = State(value) if _is_branch(value) else value

  def __delitem__(self, key: Key) -> None:
    del self._mapping[key]

  def __iter__(self) -> tp.Iterator[Key]:
    return iter(self._mapping)

  def __len__(self) -> int:
    return len(self._mapping)

  def __getattr__(self, key: str) -> tp.Any:
    if key.startswith('__') or key == '_mapping':
      raise AttributeError(key)
    try:
      return self._mapping[key]
    except KeyError:
      raise AttributeError(
          f'This State has no key {key!r}; its keys are {list(self._mapping)}.'
      ) from None

  def __setattr__(self, key: str, value: tp.Any) -> None:
    self[key] = value

  def __eq__(self, other: object) -> bool:
    return isinstance(other, State) and self._mapping == other._mapping

  __hash__ = None  # type: ignore[assignment]

  def __repr__(self) -> str:
    return _render_mapping('State', self)

  def __treescope_repr__(self, path, subtree_renderer):
    # The notebook display lives in nnx_edu.widgets; imported only when asked.
    from nnx_edu.widgets import treescope_view

    return treescope_view.render_state(self, path, subtree_renderer)

  # -- the flat view -------------------------------------------------------
  def flat_state(self) -> FlatState:
    """This State as sorted ``(path, leaf)`` pairs (see ``FlatState``).

    >>> from nnx_edu import State
    >>> State({'a': {'b': 1.0}, 'c': 2.0}).flat_state().paths
    (('a', 'b'), ('c',))
    """
    return FlatState(flat_pairs(self))

  @staticmethod
  def from_flat_path(pairs: tp.Iterable[tuple[Path, tp.Any]] | tp.Mapping) -> 'State':
    """Rebuild a nested State from ``(path, leaf)`` pairs, a FlatState or ``{path: leaf}``.

    >>> from nnx_edu import State
    >>> State.from_flat_path({('a', 'b'): 1.0})
    State({
      'a': {
        'b': 1.0
      }
    })
    """
    root: dict = {}
    for path, leaf in pairs.items() if isinstance(pairs, tp.Mapping) else pairs:
      node = root
      for key in path[:-1]:
        node = node.setdefault(key, {})
      node[path[-1]] = leaf
    return State(root)

  # -- filtering, splitting and merging -----------------------------------
  def filter(self, first: filterlib.Filter, /, *filters: filterlib.Filter):
    """Pick the leaves each filter selects; leaves no filter selects are left out.

    Returns one State per filter (a single State for a single filter).  A
    leaf goes to the first filter that selects it.

    >>> import jax.numpy as jnp
    >>> from nnx_edu import State, Param, BatchStat
    >>> state = State({'w': Param(jnp.ones(1)), 'mean': BatchStat(jnp.zeros(1))})
    >>> list(state.filter(Param))
    ['w']
    """
    groups, _ = filterlib.split_by_filters(self.flat_state(), (first, *filters))
    return one_or_tuple([State.from_flat_path(g) for g in groups])

  def split(self, first: filterlib.Filter, /, *filters: filterlib.Filter):
    """Like ``filter``, but every leaf must be selected by some filter.

    Pass ``...`` as the last filter to collect "everything else".

    >>> import jax.numpy as jnp
    >>> from nnx_edu import State, Param, BatchStat
    >>> state = State({'w': Param(jnp.ones(1)), 'mean': BatchStat(jnp.zeros(1))})
    >>> params, rest = state.split(Param, ...)
    >>> state.split(Param)
    Traceback (most recent call last):
    ...
    ValueError: The filters (Param,) do not select every leaf of the State; these are left over:
      ('mean',): BatchStat
    Add a filter for them, or pass `...` as the last filter to collect the rest.
    """
    filters = (first, *filters)
    groups, rest = filterlib.split_by_filters(self.flat_state(), filters)
    if rest:
      raise_not_exhaustive(filters, rest)
    return one_or_tuple([State.from_flat_path(g) for g in groups])

  @staticmethod
  def merge(state: tp.Mapping, /, *states: tp.Mapping) -> 'State':
    """The inverse of ``split``: one State holding the leaves of all of them.

    A path may appear in more than one State only if it holds the same
    object in each; two different values for one path are an error.

    >>> import jax.numpy as jnp
    >>> from nnx_edu import State, Param, BatchStat
    >>> a, b = State({'w': Param(jnp.ones(1))}), State({'m': BatchStat(jnp.zeros(1))})
    >>> list(State.merge(a, b))
    ['m', 'w']
    """
    flats = [as_state(s).flat_state() for s in (state, *states)]
    return State.from_flat_path(FlatState(merge_flat(flats)))

  def to_pure_dict(self) -> dict:
    """Nested plain dicts of plain values: each Variable becomes its value.

    Useful for saving a checkpoint with any tool that knows dicts of arrays.

    >>> import jax.numpy as jnp
    >>> from nnx_edu import State, Param
    >>> State({'w': Param(jnp.ones(1))}).to_pure_dict()
    {'w': Array([1.], dtype=float32)}
    """
    return {
        key: value.to_pure_dict() if isinstance(value, State)
        else value.get_value() if isinstance(value, Variable) else value
        for key, value in self._mapping.items()
    }

  def replace_by_pure_dict(self, pure_dict: tp.Mapping, replace_fn=None) -> None:
    """Load values from nested plain dicts into this State's Variables, in place.

    Keys in ``pure_dict`` may be strings where the State has ints (as after
    a JSON or msgpack round trip).  ``replace_fn(variable, value)`` may be
    given to control how a value is put into a Variable.

    >>> import jax.numpy as jnp
    >>> from nnx_edu import State, Param
    >>> state = State({'w': Param(jnp.ones(1))})
    >>> state.replace_by_pure_dict({'w': jnp.zeros(1)})
    >>> state.w.value
    Array([0.], dtype=float32)
    """
    for path, new_value in State(pure_dict).flat_state():
      node = self
      for depth, key in enumerate(path):
        if key not in node and isinstance(key, str) and key.isdigit():
          key = int(key)
        if key not in node:
          raise KeyError(
              f'replace_by_pure_dict: the path {path[:depth + 1]} is not in the '
              'State. The dict must have the same keys as State.to_pure_dict().'
          )
        if depth == len(path) - 1:
          old = node[key]
          if replace_fn is not None:
            node[key] = replace_fn(old, new_value)
          elif isinstance(old, Variable):
            old.set_value(new_value)
          else:
            node[key] = new_value
        else:
          node = node[key]


def _is_branch(value: tp.Any) -> bool:
  """A plain mapping inside a State is a nested State."""
  if isinstance(value, Variable):  # the usual leaf: answered without the slow Mapping check
    return False
  return isinstance(value, tp.Mapping) and not isinstance(value, State)


def flat_pairs(mapping: tp.Mapping) -> list[tuple[Path, tp.Any]]:
  """``(path, leaf)`` for every leaf of a nested State or dict, unsorted.

  >>> flat_pairs({'b': {'c': 1}, 'a': 2})
  [(('b', 'c'), 1), (('a',), 2)]
  """
  pairs: list[tuple[Path, tp.Any]] = []

  def walk(prefix: Path, mapping: tp.Mapping) -> None:
    for key, value in mapping.items():
      if isinstance(value, (State, dict)):
        walk(prefix + (key,), value)
      else:
        pairs.append((prefix + (key,), value))

  walk((), mapping)
  return pairs


def as_state(mapping: tp.Mapping) -> State:
  """``mapping`` itself if it is a State, else a State built from it."""
  return mapping if isinstance(mapping, State) else State(mapping)


def _render_mapping(type_name: str, state: State) -> str:
  return reprs.render(type_name, _sorted_items(state), brackets=('({', '})'), key_sep=': ')


def _sorted_items(state: State):
  for key in sorted(state._mapping, key=sort_key):
    value = state._mapping[key]
    yield repr(key), _NestedRepr(value) if isinstance(value, State) else value


class _NestedRepr:
  """Prints a nested State as a plain ``{...}`` block, as Flax does."""

  def __init__(self, state: State):
    self.state = state

  def __repr__(self) -> str:
    return reprs.render('', _sorted_items(self.state), brackets=('{', '}'), key_sep=': ')


def one_or_tuple(states: list[State]) -> State | tuple[State, ...]:
  """One State for one filter, a tuple of them for several (as Flax returns them).

  >>> one_or_tuple([State({})])
  State({})
  """
  return states[0] if len(states) == 1 else tuple(states)


def raise_not_exhaustive(filters: tp.Sequence, rest: list) -> tp.NoReturn:
  lines = '\n'.join(f'  {path}: {type(leaf).__name__}' for path, leaf in rest[:10])
  more = f'\n  ... and {len(rest) - 10} more' if len(rest) > 10 else ''
  names = tuple(getattr(f, '__name__', f) for f in filters)
  raise ValueError(
      f'The filters ({", ".join(map(str, names))},) do not select every leaf '
      f'of the State; these are left over:\n{lines}{more}\nAdd a filter for '
      'them, or pass `...` as the last filter to collect the rest.'
  )


def merge_flat(flats: tp.Sequence[tp.Iterable[tuple[Path, tp.Any]]]) -> list:
  """Join flat states, refusing two different leaves for one path."""
  merged: dict[Path, tp.Any] = {}
  for flat in flats:
    for path, leaf in flat:
      if path in merged and merged[path] is not leaf:
        raise ValueError(
            f'Two States being merged both have the path {path}. Each path '
            'must come from exactly one State: split with disjoint filters, '
            'or drop the path from one of them.'
        )
      merged[path] = leaf
  return list(merged.items())


# -- State is a pytree: its children are its values, sorted by key ----------
def _flatten_with_keys(state: State):
  keys = sorted(state._mapping, key=sort_key)
  return [(jax.tree_util.DictKey(k), state._mapping[k]) for k in keys], tuple(keys)


def _unflatten(keys: tuple, children: tp.Iterable) -> State:
  state = object.__new__(State)
  vars(state)['_mapping'] = dict(zip(keys, children))
  return state


def _flatten(state: State):
  keys = tuple(sorted(state._mapping, key=sort_key))
  return [state._mapping[k] for k in keys], keys


jax.tree_util.register_pytree_with_keys(State, _flatten_with_keys, _unflatten, _flatten)


def to_flat_state(state: State) -> FlatState:
  """The flat view of ``state`` (same as ``state.flat_state()``).

  >>> from nnx_edu import State, to_flat_state
  >>> to_flat_state(State({'a': 1.0}))
  FlatState([
    (('a',), 1.0)
  ])
  """
  return state.flat_state()


def from_flat_state(flat: tp.Iterable[tuple[Path, tp.Any]]) -> State:
  """A nested State from ``(path, leaf)`` pairs (inverse of ``to_flat_state``).

  >>> from nnx_edu import from_flat_state
  >>> from_flat_state([(('a',), 1.0)])['a']
  1.0
  """
  return State.from_flat_path(flat)


def to_pure_dict(state: State) -> dict:
  """Module-level form of ``State.to_pure_dict``.

  >>> from nnx_edu import State, Variable, to_pure_dict
  >>> to_pure_dict(State({'a': Variable(1.0)}))
  {'a': 1.0}
  """
  return state.to_pure_dict()


def replace_by_pure_dict(state: State, pure_dict: tp.Mapping, replace_fn=None) -> None:
  """Module-level form of ``State.replace_by_pure_dict``.

  >>> from nnx_edu import State, Variable, replace_by_pure_dict
  >>> s = State({'a': Variable(1.0)})
  >>> replace_by_pure_dict(s, {'a': 2.0})
  >>> s['a'].value
  2.0
  """
  state.replace_by_pure_dict(pure_dict, replace_fn)
