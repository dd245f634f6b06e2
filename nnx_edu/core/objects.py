"""Core -- objects: graph nodes, their data and their statics.

Modules, ``Rngs``, the ``Optimizer`` and the ``List``/``Dict`` containers
are all *graph nodes*: subclasses of ``Pytree``.  A node's attributes come
in two kinds, by the rules of the previous chapter (``pytrees.py``):

* **data** -- Variables, sub-nodes and arrays.  They end up in the State,
  and they are the node's children when JAX sees it as a pytree.
* **static** -- everything else: sizes, flags, dtypes, functions.  They end
  up in the GraphDef (and the treedef) and must not change inside ``jax.jit``.

A node is two things at once: a JAX pytree (``jax.tree.leaves(model)``) and
a node of a graph, where two parents may share one child -- the view that
``split`` and ``merge`` take (``graph.py``).  ``Object`` is a ``Pytree``
that is only a graph node, for classes that JAX should see as one leaf.

Assigning a plain ``list`` or ``dict`` that holds data is refused, because
whether it should be tracked is ambiguous: wrap it with ``nnx.List``,
``nnx.Dict`` or ``nnx.data``.  Replacing a Variable by a bare array is
refused too, because the array would silently lose its Variable type.

The end of the chapter prints a node the way Flax does: attributes in the
order they were set, large arrays as their shape, and a comment counting
the Variables of each type below the node.
"""

from __future__ import annotations

import typing as tp
from collections import abc

import jax
import numpy as np

from nnx_edu.core import reprs
from nnx_edu.core.filters import Key, sort_key
from nnx_edu.core.pytrees import (Marked, class_marks, has_data, is_data, register_as_pytree,
                                  register_data_type, structure_changed,
                                  warn_deprecated_annotations)
from nnx_edu.core.variables import Variable

MARKS = '_nnx_marks'  # the attribute where a node keeps its nnx.data/nnx.static marks


class Pytree:
  """The base class of graph nodes: ``Module``, ``Rngs`` and their helpers.

  Any attribute may be set in ``__init__``; no declarations are needed.
  Variables, sub-nodes and arrays are the node's *data* (they go to the
  State); everything else is *static* (it goes to the GraphDef).

  >>> import jax.numpy as jnp
  >>> from nnx_edu import graph, Param
  >>> from nnx_edu.core import objects
  >>> class Box(objects.Pytree):
  ...   def __init__(self):
  ...     self.weight = Param(jnp.ones(2))   # data
  ...     self.name = 'box'                  # static
  >>> graph.state(Box())
  State({
    'weight': Param( # 2 (8 B)
      value=Array([1., 1.], dtype=float32)
    )
  })

  Every subclass is a JAX pytree, unless it says ``pytree=False``
  (subclasses inherit the choice):

  >>> import jax
  >>> class Opaque(objects.Pytree, pytree=False):
  ...   def __init__(self):
  ...     self.weight = Param(jnp.ones(2))
  >>> len(jax.tree.leaves(Box())), len(jax.tree.leaves(Opaque()))
  (1, 1)
  >>> type(jax.tree.leaves(Opaque())[0]).__name__
  'Opaque'
  """

  _key_entry = jax.tree_util.GetAttrKey  # how JAX names a child: ``.kernel``
  _is_pytree = True
  _class_marks: dict[str, bool] = {}

  def __init_subclass__(cls, *, pytree: bool | None = None, **kwargs: tp.Any) -> None:
    super().__init_subclass__(**kwargs)
    cls._is_pytree = cls._is_pytree if pytree is None else pytree
    warn_deprecated_annotations(cls)
    cls._class_marks = class_marks(cls)
    if cls._is_pytree:
      register_as_pytree(cls)

  def __setattr__(self, name: str, value: tp.Any) -> None:
    marked = value.is_data if isinstance(value, Marked) else None
    if marked is not None:
      value = value.value
    check_assignment(self, name, value, marked)
    if marked is not None:  # a mark sticks to the attribute, as in Flax
      self._mark(name, marked)
    object.__setattr__(self, name, value)
    structure_changed()

  def __delattr__(self, name: str) -> None:
    object.__delattr__(self, name)
    structure_changed()

  def _mark(self, name: str, is_data: bool) -> None:
    marks = dict(vars(self).get(MARKS, {}))
    marks[name] = is_data
    object.__setattr__(self, MARKS, marks)

  def _data_marks(self) -> dict[str, bool]:
    """``{attribute: is_data}`` for the attributes marked in the class body or on assignment."""
    marks = vars(self).get(MARKS)
    return {**self._class_marks, **marks} if marks else self._class_marks

  # The graph protocol: what split sees, and how merge puts it back.
  def _graph_children(self) -> dict[Key, tp.Any]:
    return vars(self)

  def _graph_restore(self, children: dict[Key, tp.Any]) -> None:
    vars(self).update(children)

  def _graph_set(self, key: Key, value: tp.Any) -> None:
    vars(self)[key] = value

  def _graph_del(self, key: Key) -> None:
    del vars(self)[key]

  # How the node prints: ``Type(key=value, ...)`` by default; List and
  # Dict override these two to print as ``List([...])`` and ``Dict({...})``
  # (without the Variable counts, as in Flax).
  def _repr_attributes(self) -> tp.Iterable[tuple[str, tp.Any]]:
    for name, value in vars(self).items():
      # private attributes are hidden unless they hold data
      if name.startswith('_') and not (is_node_like(value) or is_array(value)):
        continue
      yield name, value

  def _repr_layout(self) -> dict:
    """Keyword arguments for ``reprs.render`` that override the defaults."""
    return {}

  def __repr__(self) -> str:
    return node_repr(self)

  def __treescope_repr__(self, path, subtree_renderer):
    # The notebook display lives in nnx_edu.widgets; imported only when asked.
    from nnx_edu.widgets import treescope_view

    return treescope_view.render_node(self, path, subtree_renderer)


register_as_pytree(Pytree)
register_data_type(Pytree)  # a graph node is data wherever it is assigned


class Object(Pytree, pytree=False):
  """A graph node that JAX sees as one leaf: ``Pytree`` with ``pytree=False``.

  ``split``, ``merge`` and the ``nnx`` transforms handle it like any node.

  >>> import jax
  >>> import nnx_edu as nnx
  >>> class Counter(nnx.Object):
  ...   def __init__(self):
  ...     self.count = nnx.BatchStat(0)
  >>> len(jax.tree.leaves(Counter())), len(nnx.state(Counter()))
  (1, 1)
  """


def is_array(x: tp.Any) -> bool:
  return isinstance(x, (jax.Array, np.ndarray))


def check_assignment(node: Pytree, name: str, value: tp.Any, marked: bool | None = None) -> None:
  """Refuse assignments that would silently lose data."""
  current = vars(node).get(name)
  if isinstance(current, Variable) and is_array(value):
    raise TypeError(
        f'{type(node).__name__}.{name} holds a {type(current).__name__}; '
        'assigning a bare array would replace it and drop it from every '
        f'{type(current).__name__} filter. Set its value instead: '
        f'`.{name}.value = ...` (or `.{name}[...] = ...`), or assign a '
        'Variable to replace it.'
    )
  check_attribute(node, name, value, marked)


def check_attribute(node: Pytree, name: str, value: tp.Any, marked: bool | None = None) -> None:
  """Refuse a static attribute that holds data: it would be lost from the State.

  ``marked`` is the mark given with this assignment (``nnx.data``: True,
  ``nnx.static``: False).  Each message opens with Flax's sentence, so code
  that matches Flax's errors matches these, then says how to fix it.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> check_attribute(nnx.Module(), 'weights', [jnp.ones(2)])
  Traceback (most recent call last):
  ...
  ValueError: Found data on value of type <class 'list'> assigned to static attribute 'weights' of Pytree type Module. Module.weights is a plain list holding arrays, so it is neither clearly data nor clearly static. Wrap it so NNX tracks them: `self.weights = nnx.List(...)` or `self.weights = nnx.data(...)`; or, to keep it out of the State, build the class with `pytree=False`.
  """
  if marked is True:
    return
  found = has_data(value)
  if not found:
    return
  cls, kinds = type(node).__name__, _kinds_of(found)
  if marked is False:
    raise ValueError(
        f'Found data in value of type {type(value)} annotated with nnx.static(...) when '
        f"setting attribute '{name}' of Pytree type {cls}. {cls}.{name} was marked "
        f'nnx.static but holds {kinds}, which are data. Use nnx.data(...) instead.')
  mark = node._data_marks().get(name)
  if mark is False:
    declared = name not in vars(node).get(MARKS, {})
    raise ValueError(
        f'Found {"unexpected " if declared else ""}data on value of type {type(value)} '
        f"assigned to static attribute '{name}' of Pytree type {cls}. {cls}.{name} was "
        f'marked nnx.static but holds {kinds}, which are data. Declare or assign it with '
        f'nnx.data(...) instead.')
  if mark is None and type(node)._is_pytree and not is_data(value):
    kind = 'nnx.Dict' if isinstance(value, dict) else 'nnx.List'
    raise ValueError(
        f'Found data on value of type {type(value)} assigned to static attribute '
        f"'{name}' of Pytree type {cls}. {cls}.{name} is a plain {type(value).__name__} "
        f'holding {kinds}, so it is neither clearly data nor clearly static. Wrap it so '
        f'NNX tracks them: `self.{name} = {kind}(...)` or `self.{name} = nnx.data(...)`; '
        'or, to keep it out of the State, build the class with `pytree=False`.')


def check_pytree(pytree: tp.Any) -> None:
  """Check every node in ``pytree`` by the rules of assignment (see ``check_attribute``).

  For attributes set behind the rules' back, with ``vars(node)[...] = ...``.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> model = nnx.Linear(1, 1, rngs=nnx.Rngs(0))
  >>> nnx.check_pytree(model)   # fine: nothing raised
  >>> vars(model)['extra'] = [jnp.ones(1)]
  >>> nnx.check_pytree([model])
  Traceback (most recent call last):
  ...
  ValueError: Found data on value of type <class 'list'> assigned to static attribute 'extra' ...
  """
  seen: set[int] = set()

  def visit(value: tp.Any) -> None:
    if id(value) in seen:
      return
    seen.add(id(value))
    if isinstance(value, Pytree):
      for name, child in value._graph_children().items():
        if isinstance(name, str):
          check_attribute(value, name, child)
        visit(child)
    elif not isinstance(value, Variable) and not is_array(value):
      for _, child in container_children(value)[0]:
        visit(child)

  visit(pytree)


def _kinds_of(found: list) -> str:
  names = sorted({'Modules' if isinstance(x, Pytree) else 'Variables'
                  if isinstance(x, Variable) else 'arrays' for x in found})
  return ' and '.join(names)


# -- printing a node ------------------------------------------------------------
def node_repr(node: Pytree) -> str:
  """The Flax-style text of ``node``, with per-type Variable counts.

  >>> import nnx_edu as nnx
  >>> print(nnx.Linear(2, 3, rngs=nnx.Rngs(0)))  # doctest: +ELLIPSIS
  Linear( # Param: 9 (36 B)
    kernel=Param( # 6 (24 B)
      value=Array(shape=(2, 3), dtype=dtype('float32'))
    ),
    bias=Param( # 3 (12 B)
      value=Array(shape=(3,), dtype=dtype('float32'))
    ),
    in_features=2,
  ...
  """
  stats: dict[int, dict[str, reprs.SizeBytes]] = {}
  collect_stats(node, stats)
  return _NodeRepr(node, stats, set()).__repr__()


def collect_stats(value: tp.Any, stats: dict) -> None:
  """Fill ``stats[id(x)]`` with ``{type name: SizeBytes}`` for ``value`` and below.

  Children are visited sorted by key, and a node shared by two parents is
  counted once, under the first.
  """
  own: dict[str, reprs.SizeBytes] = {}
  stats[id(value)] = own
  if isinstance(value, Variable):
    size = reprs.SizeBytes.of(value.get_raw_value())
    if size:
      own[stat_group(type(value))] = size
    return
  for key, child in sorted(children_of(value).items(), key=lambda kv: sort_key(kv[0])):
    if id(child) in stats or not (is_node_like(child)):
      continue
    collect_stats(child, stats)
    for name, size in stats[id(child)].items():
      own[name] = own[name] + size if name in own else size


def stat_group(variable_type: type) -> str:
  """The name a Variable type is counted under: RNG state counts as one group."""
  for cls in variable_type.__mro__:
    if cls.__name__ == 'RngState':
      return 'RngState'
  return variable_type.__name__


def is_node_like(value: tp.Any) -> bool:
  return isinstance(value, (Pytree, Variable)) or (
      isinstance(value, (list, tuple, abc.Mapping)) and has_data(value))


def key_name(entry: tp.Any) -> Key:
  """The plain key of one JAX path entry: a dict key, an index or a field name.

  >>> key_name(jax.tree_util.GetAttrKey('kernel')), key_name(jax.tree_util.SequenceKey(0))
  ('kernel', 0)
  """
  for field in ('key', 'idx', 'name'):
    if hasattr(entry, field):
      return getattr(entry, field)
  raise TypeError(f'Unknown pytree key {entry!r}')


def container_children(value: tp.Any):
  """``([(key, child), ...], treedef)`` for the outer level of a pytree.

  >>> import jax.numpy as jnp
  >>> container_children({'b': 1, 'a': 2})[0]
  [('a', 2), ('b', 1)]
  """
  children, treedef = jax.tree_util.tree_flatten_with_path(
      value, is_leaf=lambda x: x is not value)
  # a JAX leaf (a number, a string) comes back as itself at the empty path: no children
  return [(key_name(path[0]), child) for path, child in children if path], treedef


def children_of(value: tp.Any) -> tp.Mapping[Key, tp.Any]:
  """The children of a graph node, or of a container (a list, dict, State...), by key.

  >>> import nnx_edu as nnx
  >>> list(children_of(nnx.Linear(1, 2, rngs=nnx.Rngs(0))))[:2], children_of([5, 6])
  (['kernel', 'bias'], {0: 5, 1: 6})
  """
  if isinstance(value, Pytree):
    return value._graph_children()
  return dict(container_children(value)[0])


def stats_comment(stats: dict[str, reprs.SizeBytes]) -> str:
  if not stats:
    return ''
  comment = ' # ' + ', '.join(f'{name}: {size}' for name, size in stats.items())
  if len(stats) > 1:
    total = sum(stats.values(), reprs.SizeBytes(0, 0))
    comment += f', Total: {total}'
  return comment


class _NodeRepr:
  """Prints one node inside the repr of its root, sharing the root's stats."""

  def __init__(self, node: Pytree, stats: dict, seen: set[int]):
    self.node, self.stats, self.seen = node, stats, seen

  def __repr__(self) -> str:
    node = self.node
    name = type(node).__name__
    if id(node) in self.seen:  # a shared node prints in full only once
      return f'{name}(...)'
    self.seen.add(id(node))
    if id(node) not in self.stats:
      collect_stats(node, self.stats)
    attributes = [(key, self.summarise(value)) for key, value in node._repr_attributes()]
    layout = {'comment': stats_comment(self.stats[id(node)]), **node._repr_layout()}
    return reprs.render(name, attributes, **layout)

  def summarise(self, value: tp.Any) -> tp.Any:
    """Large arrays become their shape; sub-nodes print through _NodeRepr."""
    if isinstance(value, Pytree):
      return _NodeRepr(value, self.stats, self.seen)
    if isinstance(value, Variable):
      return value.replace(jax.tree.map(reprs.ArrayShape.of, value.get_raw_value()))
    if isinstance(value, abc.Mapping) and has_data(value):  # a dict or a State
      summary = {key: self.summarise(v) for key, v in value.items()}
      return summary if isinstance(value, dict) else type(value)(summary)
    if isinstance(value, (list, tuple)) and has_data(value):
      # Flax prints namedtuples (optax states) as plain tuples
      return (list if isinstance(value, list) else tuple)(map(self.summarise, value))
    return reprs.ArrayShape.of(value)
