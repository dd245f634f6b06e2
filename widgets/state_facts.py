"""Widgets, part 1 -- the facts a notebook shows about a State.

Both displays in this folder, the treescope trees (``treescope_view.py``)
and the explorer (``explorer.py``), show the same facts: for each Variable
its path, type, shape, dtype, element count and bytes; for each subtree the
totals per Variable type; and, when two States are compared, what changed.
This part computes those facts with plain Python and numpy -- no widgets --
so they can be read and tested on their own.

>>> import jax.numpy as jnp
>>> from nnx_edu import State, Param, BatchStat
>>> state = State({'conv': {'kernel': Param(jnp.ones((2, 3)))},
...                'mean': BatchStat(jnp.zeros(3))})
>>> tree = Tree(describe(state))
>>> [path_text(path) for path in tree.children(())]
['conv', 'mean']
>>> tree.totals(())
{'Param': 6 (24 B), 'BatchStat': 3 (12 B)}
"""

from __future__ import annotations

import dataclasses
import functools
import typing as tp
import zlib

import jax
import numpy as np

from nnx_edu.core.filters import path_sort_key, sort_key
from nnx_edu.core.reprs import SizeBytes
from nnx_edu.core.state import State
from nnx_edu.core.variables import Variable

Key = str | int
Path = tuple[Key, ...]

# Fixed colours for the Variable types every model has; a subclass takes the
# colour of its nearest listed base (RngKey and RngCount are both RngState).
TYPE_COLORS = {
    'Param': '#bfdbfe',         # blue: what the optimizer trains
    'BatchStat': '#fed7aa',     # orange: running statistics
    'Cache': '#ddd6fe',         # violet: attention caches
    'Intermediate': '#bbf7d0',  # green: values recorded with sow
    'RngState': '#e5e7eb',      # grey: random-number state
}


def hashed_color(name: str, lightness: int = 85) -> str:
  """A pale colour that is always the same for the same name.

  >>> hashed_color('Counter')
  'hsl(4, 70%, 85%)'
  """
  # crc32, not hash(): Python salts str hashes, so colours would change per run.
  return f'hsl({zlib.crc32(name.encode()) % 360}, 70%, {lightness}%)'


@functools.cache
def type_color(variable_type: type) -> str:
  """The colour a Variable type is drawn in, in both displays.

  >>> import nnx_edu as nnx
  >>> type_color(nnx.Param), type_color(nnx.RngKey)
  ('#bfdbfe', '#e5e7eb')
  """
  for cls in variable_type.__mro__:
    if cls.__name__ in TYPE_COLORS:
      return TYPE_COLORS[cls.__name__]
  return hashed_color(variable_type.__name__)


def path_text(path: Path) -> str:
  """A path as the Python code that reaches it from the State.

  >>> path_text(('layers', 0, 'kernel')), path_text(('odd key',))
  ('layers[0].kernel', "['odd key']")
  """
  text = ''
  for key in path:
    if isinstance(key, str) and key.isidentifier():
      text += f'.{key}' if text else key
    else:
      text += f'[{key!r}]'
  return text


@dataclasses.dataclass(slots=True)
class Leaf:
  """One Variable (or bare array) of a State, described for display.

  ``status`` is ``'same'`` unless two States were compared: then it is
  ``'changed'``, ``'added'`` or ``'removed'``, ``change`` holds the largest
  absolute change of an element (``None`` when the values cannot be compared
  element by element) and ``before`` the Variable it was compared with.
  Shape and dtype are worked out only when asked for, because a big State
  has far more leaves than a screen has rows.

  >>> import jax.numpy as jnp
  >>> from nnx_edu import Param
  >>> leaf = Leaf(('w',), Param(jnp.ones((2, 3))))
  >>> leaf.type_name, leaf.shape, leaf.dtype, leaf.size
  ('Param', '(2, 3)', 'float32', 6 (24 B))
  """

  path: Path
  variable: tp.Any  # the Variable itself (or a bare array), not a copy
  status: str = 'same'
  change: float | None = None
  before: tp.Any = None
  size: SizeBytes = dataclasses.field(init=False)

  def __post_init__(self):
    self.size = _size_of(self.value)

  @property
  def value(self) -> tp.Any:
    return raw_value(self.variable)

  @property
  def type_name(self) -> str:
    return type(self.variable).__name__ if isinstance(self.variable, Variable) else 'Array'

  @property
  def color(self) -> str:
    if isinstance(self.variable, Variable):
      return type_color(type(self.variable))
    return '#f3f4f6'

  @property
  def shape(self) -> str:
    """``'(2, 3)'``, or ``''`` for a value that is not an array."""
    value = self.value
    return str(tuple(value.shape)) if hasattr(value, 'shape') else ''

  @property
  def dtype(self) -> str:
    """The array's dtype, or the Python type of a value that is not an array
    (``'tuple of 2'`` for what ``Module.sow`` records)."""
    value = self.value
    if hasattr(value, 'dtype'):
      return str(value.dtype)
    if isinstance(value, (tuple, list)):
      return f'{type(value).__name__} of {len(value)}'
    return type(value).__name__


def raw_value(leaf: tp.Any) -> tp.Any:
  """The value inside a Variable, or the leaf itself if it is a bare array.

  >>> from nnx_edu import Param
  >>> raw_value(Param(1.5)), raw_value(2.5)
  (1.5, 2.5)
  """
  return leaf.get_value() if isinstance(leaf, Variable) else leaf


def _size_of(value: tp.Any) -> SizeBytes:
  """``SizeBytes.of(value)``, with a shortcut for the usual case of one array."""
  if isinstance(value, (jax.Array, np.ndarray)):
    return SizeBytes(value.size, value.size * value.dtype.itemsize)
  return SizeBytes.of(value)


def describe(state: State) -> list[Leaf]:
  """The display facts of every leaf of ``state``, sorted by path.

  >>> import jax.numpy as jnp
  >>> from nnx_edu import State, Param
  >>> [leaf.path for leaf in describe(State({'b': Param(1.0), 'a': Param(2.0)}))]
  [('a',), ('b',)]
  """
  return [Leaf(path, leaf) for path, leaf in state.flat_state()]


def compare(before: State, after: State) -> list[Leaf]:
  """The leaves of ``after`` (and those only in ``before``), each with its status.

  >>> import jax.numpy as jnp
  >>> from nnx_edu import State, Param
  >>> old = State({'w': Param(jnp.zeros(2)), 'b': Param(jnp.zeros(1))})
  >>> new = State({'w': Param(jnp.array([0.0, 0.5])), 'b': Param(jnp.zeros(1))})
  >>> [(path_text(leaf.path), leaf.status, leaf.change) for leaf in compare(old, new)]
  [('b', 'same', 0.0), ('w', 'changed', 0.5)]
  """
  old, new = dict(before.flat_state()), dict(after.flat_state())
  leaves = []
  for path in sorted(old.keys() | new.keys(), key=path_sort_key):
    if path not in old:
      leaves.append(Leaf(path, new[path], status='added'))
    elif path not in new:
      leaves.append(Leaf(path, old[path], status='removed'))
    else:
      change = largest_change(raw_value(old[path]), raw_value(new[path]))
      same = change == 0 and type(old[path]) is type(new[path])  # NaN != 0: changed
      leaves.append(Leaf(path, new[path], status='same' if same else 'changed',
                         change=change, before=old[path]))
  return leaves


def _is_key_array(x: tp.Any) -> bool:
  """Whether ``x`` is an array of typed random keys (``jax.random.key``)."""
  dtype = getattr(x, 'dtype', None)
  return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def as_numbers(value: tp.Any) -> np.ndarray | None:
  """The numbers of ``value`` as float64: one array keeps its shape, a pytree
  of several becomes one vector of all their numbers.

  ``None`` when some leaf is not numeric.  Random keys count as their raw
  key data, so that a stream's key can be compared before and after.

  >>> as_numbers((1, [2.5, True]))
  array([1. , 2.5, 1. ])
  """
  parts = []
  for leaf in jax.tree.leaves(value):
    if _is_key_array(leaf):
      leaf = jax.random.key_data(leaf)
    array = np.asarray(leaf)
    if array.dtype.kind not in 'biuf':  # bool, int, uint, float
      return None
    parts.append(array.astype(np.float64))
  if len(parts) < 2:
    return parts[0] if parts else None
  return np.concatenate([part.ravel() for part in parts])


def largest_change(before: tp.Any, after: tp.Any) -> float | None:
  """The largest ``|after - before|`` of any element; ``None`` if not comparable.

  >>> largest_change([1.0, 2.0], [1.5, 1.0]), largest_change([1.0], [1.0, 2.0])
  (1.0, None)
  """
  if before is after:  # arrays are immutable: an untouched Variable keeps its array
    return 0.0
  if jax.tree.structure(before) != jax.tree.structure(after):
    return None
  old, new = as_numbers(before), as_numbers(after)
  if old is None or new is None or old.shape != new.shape:
    return None
  return float(np.max(np.abs(new - old))) if old.size else 0.0


def statistics(value: tp.Any) -> dict[str, float] | None:
  """min, max, mean and std of all numbers in ``value``; ``None`` if it has none.

  >>> statistics([1.0, 3.0])
  {'min': 1.0, 'max': 3.0, 'mean': 2.0, 'std': 1.0}
  """
  numbers = as_numbers(value)
  if numbers is None or numbers.size == 0:
    return None
  return {'min': float(numbers.min()), 'max': float(numbers.max()),
          'mean': float(numbers.mean()), 'std': float(numbers.std())}


class Tree:
  """Leaves arranged by path, with the totals of every subtree.

  A *prefix* is a path that leads to a subtree; ``()`` is the whole State.
  Each prefix knows its children and, per Variable type below it, the
  elements, bytes, leaves and changed leaves -- added up once, bottom-up.

  >>> import jax.numpy as jnp
  >>> from nnx_edu import State, Param
  >>> tree = Tree(describe(State({'a': {'b': Param(jnp.ones(2))}})))
  >>> tree.children(('a',)), tree.count(()), tree.is_leaf(('a', 'b'))
  ([('a', 'b')], 1, True)
  """

  def __init__(self, leaves: tp.Iterable[Leaf]):
    self.leaves: dict[Path, Leaf] = {leaf.path: leaf for leaf in leaves}
    self.colors: dict[str, str] = {}  # type name -> colour, in order of appearance
    # prefix -> type name -> [elements, bytes, leaves, changed leaves]
    self._sums: dict[Path, dict[str, list[int]]] = {(): {}}
    children: dict[Path, set[Path]] = {}
    for path, leaf in self.leaves.items():  # first each leaf into its parent ...
      if leaf.type_name not in self.colors:
        self.colors[leaf.type_name] = leaf.color
      sums = self._sums.setdefault(path[:-1], {}).setdefault(leaf.type_name, [0, 0, 0, 0])
      _add(sums, [leaf.size.size, leaf.size.bytes, 1, leaf.status != 'same'])
      children.setdefault(path[:-1], set()).add(path)
    for prefix in list(self._sums):  # ... then make sure every ancestor exists ...
      for depth in range(len(prefix)):
        self._sums.setdefault(prefix[:depth], {})
    for prefix in sorted(self._sums, key=len, reverse=True):  # ... and add bottom-up
      if prefix:
        children.setdefault(prefix[:-1], set()).add(prefix)
        for name, sums in self._sums[prefix].items():
          _add(self._sums[prefix[:-1]].setdefault(name, [0, 0, 0, 0]), sums)
    self._children = {prefix: sorted(kids, key=lambda p: sort_key(p[-1]))
                      for prefix, kids in children.items()}

  def children(self, prefix: Path) -> list[Path]:
    """The paths one level below ``prefix``, sorted as the State sorts keys.

    >>> from nnx_edu import State, Param
    >>> Tree(describe(State({'b': Param(1.0), 0: Param(2.0)}))).children(())
    [(0,), ('b',)]
    """
    return self._children.get(prefix, [])

  def is_leaf(self, path: Path) -> bool:
    """Whether ``path`` leads to a Variable (rather than to a subtree).

    >>> from nnx_edu import State, Param
    >>> tree = Tree(describe(State({'a': {'b': Param(1.0)}})))
    >>> tree.is_leaf(('a',)), tree.is_leaf(('a', 'b'))
    (False, True)
    """
    return path in self.leaves

  def branches(self) -> list[Path]:
    """Every prefix that has children.

    >>> from nnx_edu import State, Param
    >>> Tree(describe(State({'a': {'b': Param(1.0)}}))).branches()
    [('a',), ()]
    """
    return list(self._children)

  def totals(self, prefix: Path) -> dict[str, SizeBytes]:
    """Elements and bytes below ``prefix``, per Variable type (in path order).

    >>> import jax.numpy as jnp
    >>> from nnx_edu import State, Param
    >>> Tree(describe(State({'a': Param(jnp.ones(2))}))).totals(())
    {'Param': 2 (8 B)}
    """
    sums = self._sums[prefix]
    return {name: SizeBytes(*sums[name][:2]) for name in self.colors if name in sums}

  def count(self, prefix: Path) -> int:
    """How many leaves are below ``prefix``.

    >>> from nnx_edu import State, Param
    >>> Tree(describe(State({'a': {'b': Param(1.0), 'c': Param(2.0)}}))).count(('a',))
    2
    """
    return sum(sums[2] for sums in self._sums[prefix].values())

  def changed(self, prefix: Path) -> int:
    """How many leaves below ``prefix`` changed (or were added or removed).

    >>> from nnx_edu import State, Param
    >>> Tree(compare(State({'a': Param(1.0)}), State({'a': Param(1.5)}))).changed(())
    1
    """
    return sum(sums[3] for sums in self._sums[prefix].values())

  def filtered(self, types: tp.Collection[str], text: str = '',
               changed_only: bool = False) -> Tree:
    """A Tree of the leaves whose type is in ``types`` and whose path contains ``text``.

    >>> import jax.numpy as jnp
    >>> from nnx_edu import State, Param, BatchStat
    >>> tree = Tree(describe(State({'w': Param(jnp.ones(1)), 'm': BatchStat(jnp.ones(1))})))
    >>> list(tree.filtered({'Param'}).leaves)
    [('w',)]
    """
    return Tree(leaf for leaf in self.leaves.values()
                if leaf.type_name in types
                and (not text or text in path_text(leaf.path))
                and not (changed_only and leaf.status == 'same'))


def _add(total: list[int], more: list[int]) -> None:
  for index, amount in enumerate(more):
    total[index] += amount
