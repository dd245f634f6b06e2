"""Core -- walking the graph: GraphDef, ``flatten`` and ``unflatten``.

``flatten`` walks a Module once and returns its **GraphDef** (the static
skeleton: each node's class, its plain attributes, where each Variable sits,
which nodes are shared) together with its leaves and their paths.
``unflatten`` walks a GraphDef and builds the objects back, taking each leaf
from a function of its path.  The next chapter (``graph.py``) builds the
public ``split``, ``merge``, ``state``, ``update`` and ``clone`` on these two.

Walking the graph visits attributes sorted by name, so the order of paths
never depends on the order in which ``__init__`` set them.  A Variable or
node reachable along two paths is visited once, at its first path; the
GraphDef records the second path as a reference, so sharing survives a
round trip.  Any JAX pytree that holds graph data (a list or dict marked
with ``nnx.data``, an optax state made of namedtuples and States) is walked
too, with the keys JAX gives its children.

These functions run on every call of a transform, so they are written to be
quick: what to do with a value is decided once per Python type (``_kind``),
and nothing is hashed until someone asks for a hash.

>>> import nnx_edu as nnx
>>> graphdef, paths, leaves = flatten(nnx.Linear(2, 3, rngs=nnx.Rngs(0)))
>>> paths, [type(leaf).__name__ for leaf in leaves]
([('bias',), ('kernel',)], ['Param', 'Param'])
"""


from __future__ import annotations

import dataclasses
import typing as tp

import jax

from nnx_edu.core.filters import Key, Path, sort_key
from nnx_edu.core.objects import Pytree, container_children, is_array
from nnx_edu.core.pytrees import StaticValue, has_data, structure_changed
from nnx_edu.core.variables import Variable, metadata_and_hooks, rebuild_variable


# -- the GraphDef ----------------------------------------------------------------
@dataclasses.dataclass(unsafe_hash=True)
class ArrayDef:
  """A bare array attribute; its value is in the State."""


ARRAY_DEF = ArrayDef()  # it has no fields, so one instance serves everywhere


@dataclasses.dataclass(unsafe_hash=True)
class VariableDef:
  """A Variable: its type and metadata here, its value in the State."""

  type: type
  index: int
  metadata: StaticValue  # the metadata dict and hooks, compared by content
  hooks: StaticValue


@dataclasses.dataclass(unsafe_hash=True)
class NodeRef:
  """A node or Variable already visited at an earlier path (a shared reference)."""

  index: int


@dataclasses.dataclass(unsafe_hash=True)
class ContainerDef:
  """A pytree that holds graph data: a list, dict, namedtuple, State, ...

  ``treedef`` is JAX's description of its outer level; it rebuilds the
  container from its children.
  """

  treedef: jax.tree_util.PyTreeDef
  attributes: tuple[tuple[Key, tp.Any], ...]


@dataclasses.dataclass
class NodeDef:
  """The static description of one node: its type and its attributes.

  ``attributes`` pairs each attribute name with a ``StaticValue``, ``ArrayDef``,
  ``VariableDef``, ``NodeRef``, ``ContainerDef`` or a nested ``NodeDef``.
  The GraphDef of a model is the NodeDef of its root.

  >>> import nnx_edu as nnx
  >>> root, paths, leaves = flatten(nnx.Linear(2, 3, rngs=nnx.Rngs(0)))
  >>> [key for key, _ in root.attributes][:3]
  ['bias', 'dot_general', 'dtype']
  """

  type: type
  index: int
  attributes: tuple[tuple[Key, tp.Any], ...]

  def __hash__(self) -> int:
    # Computed on first use and kept: jax.jit may hash a GraphDef on every call.
    if '_hash' not in vars(self):
      self._hash = hash((self.type, self.index, self.attributes))
    return self._hash

  def __repr__(self) -> str:
    return f'GraphDef({self.type.__name__}, {len(self.attributes)} attributes)'


GraphDef = NodeDef
# A NodeDef is a pytree with no leaves, so the transforms can pass it to
# jax.jit as an argument like any other: it becomes part of the cache key.
jax.tree_util.register_static(NodeDef)


# -- what flatten does with each value ---------------------------------------------
VARIABLE, NODE, ARRAY, LEAF, PYTREE = 'variable', 'node', 'array', 'leaf', 'pytree'
_KINDS: dict[type, str] = {type(None): LEAF}  # JAX calls None an empty pytree


def _kind(value: tp.Any) -> str:
  """VARIABLE, NODE, ARRAY, PYTREE (a container JAX can open) or LEAF (static).

  The answer depends only on the type, so it is worked out once per type.
  """
  kind = _KINDS.get(type(value))
  if kind is None:
    if isinstance(value, Variable):
      kind = VARIABLE
    elif isinstance(value, Pytree):
      kind = NODE
    elif is_array(value):
      kind = ARRAY
    else:
      treedef = jax.tree.structure(value)
      # A leaf to JAX is one node holding one leaf: () has one node, no leaf.
      kind = LEAF if treedef.num_nodes == 1 and treedef.num_leaves == 1 else PYTREE
    _KINDS[type(value)] = kind
  return kind


def sorted_keys(children: tp.Iterable[Key]) -> list[Key]:
  """Keys in path order: ints (list indices) before strs (attribute names).

  >>> sorted_keys(['b', 1, 'a', 0])
  [0, 1, 'a', 'b']
  """
  try:
    return sorted(children)  # all strs or all ints: the common, fast case
  except TypeError:
    return sorted(children, key=sort_key)


def describe_leaf(variable: Variable, index: int) -> VariableDef:
  """The VariableDef of ``variable``, the ``index``-th object of its walk.

  >>> import nnx_edu as nnx
  >>> describe_leaf(nnx.Param(1.0, tag='x'), 0).metadata.value
  {'tag': 'x'}
  """
  metadata, hooks = metadata_and_hooks(variable)
  return VariableDef(type(variable), index, StaticValue(metadata), StaticValue(hooks))


def build_leaf(definition: tp.Any, leaf: tp.Any, copy_variables: bool = False,
               recreate_variables: bool = True) -> tp.Any:
  """What goes back into the graph for a leaf slot: the Variable, a copy, or a new one.

  >>> import nnx_edu as nnx
  >>> definition = describe_leaf(nnx.Param(1.0), 0)
  >>> build_leaf(definition, 2.0)
  Param(
    value=2.0
  )
  """
  if isinstance(leaf, Variable):
    return leaf.replace() if copy_variables else leaf
  if type(definition) is not VariableDef or not recreate_variables:
    return leaf
  return rebuild_variable(definition.type, leaf, dict(definition.metadata.value),
                          definition.hooks.value)


# -- flatten: graph -> (GraphDef, paths, leaves) -------------------------------
def flatten(node: tp.Any, *, nodes: list | None = None
            ) -> tuple[tp.Any, list[Path], list[tp.Any]]:
  """Walk ``node``; return the description of its root and its leaves with their paths.

  ``node`` is usually a Module, but any graph will do: a list of Modules,
  a Variable, an array (its own only leaf, at the path ``()``).

  The leaves are the Variables themselves (and bare arrays), in sorted path
  order.  If a list ``nodes`` is given, every node and Variable is appended
  to it in visit order, so that ``nodes[i]`` is the object with index ``i``
  in the GraphDef (transforms use this to write results back).

  >>> import nnx_edu as nnx
  >>> graphdef, paths, leaves = flatten(nnx.Linear(2, 3, rngs=nnx.Rngs(0)))
  >>> paths
  [('bias',), ('kernel',)]
  """
  nodes = [] if nodes is None else nodes
  index: dict[int, int] = {}  # id(node or Variable) -> its index in visit order
  paths: list[Path] = []
  leaves: list[tp.Any] = []

  def visit(value: tp.Any, path: Path) -> tp.Any:
    kind = _kind(value)
    if kind is VARIABLE or kind is NODE:
      seen = index.get(id(value))
      if seen is not None:
        return NodeRef(seen)
      index[id(value)] = position = len(nodes)
      nodes.append(value)
      if kind is NODE:
        return NodeDef(type(value), position, visit_children(value, path))
      paths.append(path)
      leaves.append(value)
      return describe_leaf(value, position)
    if kind is ARRAY:
      paths.append(path)
      leaves.append(value)
      return ARRAY_DEF
    # A container at the root (a list of Modules, say) is walked even if it holds no data.
    if kind is PYTREE and (not path or has_data(value)):
      children, treedef = container_children(value)
      return ContainerDef(treedef, tuple((key, visit_child(child, path, key))
                                         for key, child in children))
    return StaticValue(value)

  def visit_children(node: Pytree, path: Path):
    children, marks = node._graph_children(), node._data_marks()
    return tuple((key, visit_child(children[key], path, key, marks.get(key)))
                 for key in sorted_keys(children))

  def visit_child(value: tp.Any, path: Path, key: Key, marked_data: bool | None = None):
    if marked_data is False:  # nnx.static(...)
      return StaticValue(value)
    if _kind(value) is LEAF:
      if not marked_data or value is None:  # most are plain settings: no path to build
        return StaticValue(value)
      paths.append(path + (key,))  # nnx.data(3): a number that goes to the State
      leaves.append(value)
      return ARRAY_DEF
    return visit(value, path + (key,))

  graphdef = visit(node, ())
  return graphdef, paths, leaves


# -- unflatten: (GraphDef, leaves) -> graph ------------------------------------
def unflatten(graphdef: tp.Any, take_leaf: tp.Callable[[Path], tp.Any], *,
              built: dict[int, tp.Any] | None = None, copy_variables: bool = False,
              recreate_variables: bool = True) -> tp.Any:
  """Rebuild the graph described by ``graphdef``.

  ``take_leaf(path)`` supplies the leaf for each path, in the order of the
  paths of ``flatten``.  A Variable leaf is used as it is (the new graph
  shares it, or a copy of it with ``copy_variables``); an array leaf under a
  ``VariableDef`` is put into a new Variable of the recorded type (or left
  bare, with ``recreate_variables=False``).

  ``built`` maps GraphDef indices to objects.  Objects already in it are
  *updated in place* instead of created: this is how a transform writes what
  happened inside it back into the caller's model.  It is filled in as the
  graph is built.
  """
  built = {} if built is None else built

  def build(definition: tp.Any, path: Path) -> tp.Any:
    kind = type(definition)
    if kind is NodeRef:
      return built[definition.index]
    if kind is ArrayDef:
      return take_leaf(path)
    if kind is VariableDef:
      return build_variable(definition, take_leaf(path))
    if kind is ContainerDef:
      return definition.treedef.unflatten(build_children(definition, path).values())
    return build_node(definition, path)

  def build_children(definition: tp.Any, path: Path) -> dict[Key, tp.Any]:
    return {key: d.value if type(d) is StaticValue else build(d, path + (key,))
            for key, d in definition.attributes}

  def build_variable(definition: VariableDef, leaf: tp.Any) -> Variable:
    existing = built.get(definition.index)
    if existing is not None:  # write into the caller's Variable
      existing.set_raw_value(leaf.get_raw_value() if isinstance(leaf, Variable) else leaf)
      existing.set_metadata(definition.metadata.value)
      return existing
    leaf = build_leaf(definition, leaf, copy_variables, recreate_variables)
    built[definition.index] = leaf
    return leaf

  def build_node(definition: NodeDef, path: Path) -> Pytree:
    node = built.get(definition.index)
    existed = node is not None
    if not existed:
      node = object.__new__(definition.type)  # no __init__: the graph says it all
      built[definition.index] = node
    children = build_children(definition, path)
    if existed:  # it may have lost attributes inside a transform (nnx.pop)
      for key in sorted(node._graph_children().keys() - children.keys(), key=sort_key,
                        reverse=True):
        node._graph_del(key)
      structure_changed()
    node._graph_restore(children)
    return node

  return build(graphdef, ())
