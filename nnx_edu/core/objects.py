"""Core -- objects: graph nodes, their data and their statics.

Modules, ``Rngs`` and the ``List``/``Dict`` containers are all *graph
nodes*: subclasses of ``Object``.  A node's attributes come in two kinds:

* **data** -- Variables, sub-nodes and arrays.  They end up in the State.
* **static** -- everything else: sizes, flags, dtypes, functions.  They end
  up in the GraphDef and must not change inside ``jax.jit``.

Assigning a plain ``list`` or ``dict`` that holds data is refused, because
whether it should be tracked is ambiguous: wrap it with ``nnx.List``,
``nnx.Dict`` or ``nnx.data``.  Replacing a Variable by a bare array is
refused too, because the array would silently lose its Variable type.

The end of the chapter prints a node the way Flax does: attributes in the
order they were set, large arrays as their shape, and a comment counting
the Variables of each type below the node.
"""

from __future__ import annotations

import dataclasses
import typing as tp
from collections import abc

import jax
import numpy as np

from nnx_edu.core import reprs
from nnx_edu.core.filters import Key, sort_key
from nnx_edu.core.variables import Variable

# -- noticing structural changes ---------------------------------------------------
# nnx.jit keeps the flattened form of its arguments from one call to the next.
# That stays valid while no graph node gains, loses or replaces an attribute,
# so every such change bumps this counter.  (A new *value* in a Variable is
# not a structural change.)
structure_version = 0


def structure_changed() -> None:
  """Note that a graph node's attributes changed: bumps ``structure_version``.

  >>> from nnx_edu.core import objects
  >>> before = objects.structure_version
  >>> objects.structure_changed()
  >>> objects.structure_version == before + 1
  True
  """
  global structure_version
  structure_version += 1


class Object:
  """The base class of graph nodes: ``Module``, ``Rngs`` and their helpers.

  Any attribute may be set in ``__init__``; no declarations are needed.
  Variables, sub-nodes and arrays are the node's *data* (they go to the
  State); everything else is *static* (it goes to the GraphDef).

  >>> import jax.numpy as jnp
  >>> from nnx_edu import graph, Param
  >>> from nnx_edu.core import objects
  >>> class Box(objects.Object):
  ...   def __init__(self):
  ...     self.weight = Param(jnp.ones(2))   # data
  ...     self.name = 'box'                  # static
  >>> graph.state(Box())
  State({
    'weight': Param( # 2 (8 B)
      value=Array([1., 1.], dtype=float32)
    )
  })
  """

  def __setattr__(self, name: str, value: tp.Any) -> None:
    if isinstance(value, Marked):
      self._mark(name, value.is_data)
      value = value.value
    check_assignment(self, name, value)
    object.__setattr__(self, name, value)
    structure_changed()

  def __delattr__(self, name: str) -> None:
    object.__delattr__(self, name)
    structure_changed()

  def _mark(self, name: str, is_data: bool) -> None:
    marks = dict(vars(self).get('_nnx_marks', {}))
    marks[name] = is_data
    object.__setattr__(self, '_nnx_marks', marks)

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


@dataclasses.dataclass(frozen=True)
class Marked:
  """A value wrapped by ``nnx.data`` or ``nnx.static`` on its way to an attribute."""

  value: tp.Any
  is_data: bool


def data(value: tp.Any) -> tp.Any:
  """Mark an attribute as data: its arrays and Variables go to the State.

  Needed for plain lists, tuples and dicts that hold Modules or Variables
  (or use ``nnx.List`` / ``nnx.Dict``).

  >>> import nnx_edu as nnx
  >>> class Stack(nnx.Module):
  ...   def __init__(self, rngs):
  ...     self.layers = nnx.data([nnx.Linear(1, 1, rngs=rngs)])
  >>> sorted(nnx.state(Stack(nnx.Rngs(0))).flat_state().paths)
  [('layers', 0, 'bias'), ('layers', 0, 'kernel')]
  """
  return Marked(value, is_data=True)


def static(value: tp.Any) -> tp.Any:
  """Mark an attribute as static: it goes to the GraphDef, never to the State.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> class Scaled(nnx.Module):
  ...   def __init__(self):
  ...     self.scale = nnx.static(2.0)
  >>> len(nnx.state(Scaled()))
  0
  """
  return Marked(value, is_data=False)


def is_array(x: tp.Any) -> bool:
  return isinstance(x, (jax.Array, np.ndarray))


def holds_data(value: tp.Any) -> bool:
  """Whether ``value`` is graph data, or a pytree (list, dict, ...) that holds some.

  >>> import jax.numpy as jnp
  >>> holds_data((1, 'a')), holds_data({'x': [jnp.ones(1)]})
  (False, True)
  """
  leaves = jax.tree.leaves(value, is_leaf=_is_graph_object)
  return any(_is_graph_object(leaf) or is_array(leaf) for leaf in leaves)


def _is_graph_object(x: tp.Any) -> bool:
  return isinstance(x, (Variable, Object))


def check_assignment(node: Object, name: str, value: tp.Any) -> None:
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
  if isinstance(value, (list, tuple, dict)) and holds_data(value):
    is_data = vars(node).get('_nnx_marks', {}).get(name)
    if is_data is None:
      kind = 'nnx.Dict' if isinstance(value, dict) else 'nnx.List'
      raise TypeError(
          f'{type(node).__name__}.{name} is a plain {type(value).__name__} '
          'holding Modules, Variables or arrays. Wrap it so NNX tracks them: '
          f'`self.{name} = {kind}(...)` or `self.{name} = nnx.data(...)`.'
      )
    if not is_data:
      raise TypeError(
          f'{type(node).__name__}.{name} was marked nnx.static but holds '
          'Modules, Variables or arrays, which are data. Use nnx.data(...) instead.'
      )


# -- printing a node ------------------------------------------------------------
def node_repr(node: Object) -> str:
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
  return isinstance(value, (Object, Variable)) or (
      isinstance(value, (list, tuple, abc.Mapping)) and holds_data(value))


def _key_name(entry: tp.Any) -> Key:
  """The plain key of one JAX path entry: a dict key, an index or a field name."""
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
  return [(_key_name(path[0]), child) for path, child in children if path], treedef


def children_of(value: tp.Any) -> tp.Mapping[Key, tp.Any]:
  """The children of a graph node, or of a container (a list, dict, State...), by key.

  >>> import nnx_edu as nnx
  >>> list(children_of(nnx.Linear(1, 2, rngs=nnx.Rngs(0))))[:2], children_of([5, 6])
  (['kernel', 'bias'], {0: 5, 1: 6})
  """
  if isinstance(value, Object):
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

  def __init__(self, node: Object, stats: dict, seen: set[int]):
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
    if isinstance(value, Object):
      return _NodeRepr(value, self.stats, self.seen)
    if isinstance(value, Variable):
      return value.replace(jax.tree.map(reprs.ArrayShape.of, value.get_raw_value()))
    if isinstance(value, abc.Mapping) and holds_data(value):  # a dict or a State
      summary = {key: self.summarise(v) for key, v in value.items()}
      return summary if isinstance(value, dict) else type(value)(summary)
    if isinstance(value, (list, tuple)) and holds_data(value):
      # Flax prints namedtuples (optax states) as plain tuples
      return (list if isinstance(value, list) else tuple)(map(self.summarise, value))
    return reprs.ArrayShape.of(value)
