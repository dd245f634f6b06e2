"""Chapter 6 -- the graph: how a Module becomes ``(GraphDef, State)`` and back.

This is the heart of NNX.  A model is a *graph* of Python objects: Modules
hold sub-Modules, lists of Modules, Variables and plain settings.  JAX only
understands pure functions of arrays, so NNX can take any model apart into

* a **GraphDef** -- the static skeleton: each node's class, its plain
  attributes (ints, strings, functions) and where each Variable sits; it is
  hashable, so ``jax.jit`` can use it as a cache key; and
* a **State**    -- the Variables, keyed by their path in the graph.

``split`` does this, ``merge`` puts the two back together, and ``update``
writes a State's values into an existing model.

>>> import jax.numpy as jnp
>>> import nnx_edu as nnx
>>> model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
>>> graphdef, state = nnx.split(model)
>>> sorted(state)
['bias', 'kernel']
>>> copy = nnx.merge(graphdef, state)
>>> copy(jnp.ones((1, 2))).shape
(1, 3)

Walking the graph visits attributes sorted by name, so the order of paths
never depends on the order in which ``__init__`` set them.  A Variable or
node reachable along two paths is visited once, at its first path; the
GraphDef records the second path as a reference, so sharing survives a
``split``/``merge`` round trip.  Any JAX pytree that holds graph data (a
list or dict marked with ``nnx.data``, an optax state made of namedtuples
and States) is walked too, with the keys JAX gives its children.

These functions run on every call of a transform, so they are written to be
quick: what to do with a value is decided once per Python type (``_kind``),
and nothing is hashed until someone asks for a hash.
"""

from __future__ import annotations

import dataclasses
import typing as tp

import jax

from nnx_edu import filters as filterlib
from nnx_edu.objects import Object, is_array, structure_changed
from nnx_edu.state import State, _partition, as_state, merge_flat, raise_not_exhaustive, sort_key
from nnx_edu.variables import Variable, _new_variable

Key = filterlib.Key
Path = filterlib.Path


# -- the GraphDef ----------------------------------------------------------------
def hashable(x: tp.Any) -> tp.Any:
  """A hashable stand-in for a static value (dicts and lists become tuples)."""
  if isinstance(x, dict):
    return ('dict', tuple((k, hashable(v)) for k, v in x.items()))
  if isinstance(x, (list, tuple)):
    return (type(x).__name__, tuple(map(hashable, x)))
  try:
    hash(x)
    return x
  except TypeError:
    return ('id', id(x))  # unhashable and not a container: compare by identity


# The definitions below are plain (not frozen) dataclasses: frozen ones are
# about three times slower to create, and flatten creates one per attribute.
@dataclasses.dataclass(eq=False)
class Static:
  """A static attribute value, compared and hashed by content."""

  value: tp.Any

  def __eq__(self, other: object) -> bool:
    return isinstance(other, Static) and (
        self.value is other.value or hashable(self.value) == hashable(other.value))

  def __hash__(self) -> int:
    return hash(hashable(self.value))


@dataclasses.dataclass(unsafe_hash=True)
class ArrayDef:
  """A bare array attribute; its value is in the State."""


ARRAY_DEF = ArrayDef()  # it has no fields, so one instance serves everywhere


@dataclasses.dataclass(unsafe_hash=True)
class VariableDef:
  """A Variable: its type and metadata here, its value in the State."""

  type: type
  index: int
  metadata: Static  # the metadata dict and hooks, compared by content
  hooks: Static


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

  ``attributes`` pairs each attribute name with a ``Static``, ``ArrayDef``,
  ``VariableDef``, ``NodeRef``, ``ContainerDef`` or a nested ``NodeDef``.
  The GraphDef of a model is the NodeDef of its root.

  >>> import nnx_edu as nnx
  >>> graphdef = nnx.graphdef(nnx.Linear(2, 3, rngs=nnx.Rngs(0)))
  >>> graphdef
  GraphDef(Linear, 11 attributes)
  >>> [key for key, _ in graphdef.attributes][:3]
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
# A GraphDef is a pytree with no leaves, so it can be passed to jax.jit as
# an argument like any other: it becomes part of the compilation cache key.
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
    elif isinstance(value, Object):
      kind = NODE
    elif is_array(value):
      kind = ARRAY
    else:
      treedef = jax.tree.structure(value)
      # A leaf to JAX is one node holding one leaf: () has one node, no leaf.
      kind = LEAF if treedef.num_nodes == 1 and treedef.num_leaves == 1 else PYTREE
    _KINDS[type(value)] = kind
  return kind


def _is_graph_leaf(x: tp.Any) -> bool:
  return isinstance(x, (Variable, Object))


def holds_graph_data(value: tp.Any) -> bool:
  """Whether a pytree holds Variables, graph nodes or arrays anywhere inside.

  >>> import jax.numpy as jnp
  >>> holds_graph_data((1, 'a')), holds_graph_data({'x': [jnp.ones(1)]})
  (False, True)
  """
  return any(_kind(leaf) != LEAF
             for leaf in jax.tree.leaves(value, is_leaf=_is_graph_leaf))


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
  return [(_key_name(path[0]), child) for path, child in children], treedef


def sorted_keys(children: tp.Iterable[Key]) -> list[Key]:
  """Keys in path order: ints (list indices) before strs (attribute names).

  >>> sorted_keys(['b', 1, 'a', 0])
  [0, 1, 'a', 'b']
  """
  try:
    return sorted(children)  # all strs or all ints: the common, fast case
  except TypeError:
    return sorted(children, key=sort_key)


# -- flatten: graph -> (GraphDef, paths, leaves) -------------------------------
def flatten(node: Object, *, nodes: list | None = None
            ) -> tuple[NodeDef, list[Path], list[tp.Any]]:
  """Walk ``node``; return its GraphDef and its leaves with their paths.

  The leaves are the Variables themselves (and bare arrays), in sorted path
  order.  If a list ``nodes`` is given, every node and Variable is appended
  to it in visit order, so that ``nodes[i]`` is the object with index ``i``
  in the GraphDef (transforms use this to write results back).

  >>> import nnx_edu as nnx
  >>> graphdef, paths, leaves = nnx.graph.flatten(nnx.Linear(2, 3, rngs=nnx.Rngs(0)))
  >>> paths
  [('bias',), ('kernel',)]
  """
  if not isinstance(node, Object):
    raise TypeError(
        f'Expected a Module (or another nnx graph node), got {type(node).__name__}. '
        'split, state, graphdef and clone take a Module.'
    )
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
        return NodeDef(type(value), position, visit_children(value._graph_children(), path))
      paths.append(path)
      leaves.append(value)
      return VariableDef(type(value), position, Static(value._metadata), Static(value._hooks))
    if kind is ARRAY:
      paths.append(path)
      leaves.append(value)
      return ARRAY_DEF
    if kind is PYTREE and holds_graph_data(value):
      children, treedef = container_children(value)
      return ContainerDef(treedef, tuple((key, visit_child(child, path, key))
                                         for key, child in children))
    return Static(value)

  def visit_children(children: tp.Mapping[Key, tp.Any], path: Path):
    return tuple((key, visit_child(children[key], path, key)) for key in sorted_keys(children))

  def visit_child(value: tp.Any, path: Path, key: Key):
    # Most attributes are plain settings: skip building their path.
    return Static(value) if _kind(value) is LEAF else visit(value, path + (key,))

  graphdef = visit(node, ())
  return graphdef, paths, leaves


# -- unflatten: (GraphDef, leaves) -> graph ------------------------------------
def unflatten(graphdef: NodeDef, take_leaf: tp.Callable[[Path], tp.Any], *,
              built: dict[int, tp.Any] | None = None) -> Object:
  """Rebuild the graph described by ``graphdef``.

  ``take_leaf(path)`` supplies the leaf for each path, in the order of the
  paths of ``flatten``.  A Variable leaf is used as it is (the new graph
  shares it); an array leaf under a ``VariableDef`` is put into a new
  Variable of the recorded type.

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
    return {key: d.value if type(d) is Static else build(d, path + (key,))
            for key, d in definition.attributes}

  def build_variable(definition: VariableDef, leaf: tp.Any) -> Variable:
    existing = built.get(definition.index)
    if existing is not None:  # write into the caller's Variable
      vars(existing)['_value'] = vars(leaf)['_value'] if isinstance(leaf, Variable) else leaf
      vars(existing)['_metadata'] = dict(definition.metadata.value)
      return existing
    if not isinstance(leaf, Variable):
      leaf = _new_variable(definition.type, leaf, dict(definition.metadata.value),
                           definition.hooks.value)
    built[definition.index] = leaf
    return leaf

  def build_node(definition: NodeDef, path: Path) -> Object:
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


# -- the public graph functions ------------------------------------------------
def split(node: Object, *filters: filterlib.Filter):
  """Take ``node`` apart into a GraphDef and one State per filter.

  Without filters it returns ``(graphdef, state)``.  With filters every
  Variable must be selected by one of them; end with ``...`` to collect the
  rest.

  >>> import nnx_edu as nnx
  >>> bn = nnx.BatchNorm(2, rngs=nnx.Rngs(0))
  >>> graphdef, params, stats = nnx.split(bn, nnx.Param, nnx.BatchStat)
  >>> sorted(params), sorted(stats)
  (['bias', 'scale'], ['mean', 'var'])
  """
  graphdef, paths, leaves = flatten(node)
  flat = list(zip(paths, leaves))
  if not filters:
    return graphdef, State.from_flat_path(flat)
  groups, rest = _partition(flat, filters)
  if rest:
    raise_not_exhaustive(filters, rest)
  return (graphdef, *(State.from_flat_path(g) for g in groups))


def merge(graphdef: NodeDef, state: tp.Mapping, /, *states: tp.Mapping) -> tp.Any:
  """Build a node from its GraphDef and States (the inverse of ``split``).

  >>> import nnx_edu as nnx
  >>> graphdef, params, stats = nnx.split(nnx.BatchNorm(2, rngs=nnx.Rngs(0)),
  ...                                     nnx.Param, nnx.BatchStat)
  >>> type(nnx.merge(graphdef, params, stats)).__name__
  'BatchNorm'
  """
  if not isinstance(graphdef, NodeDef):
    raise TypeError(
        f'merge expects a GraphDef first (from nnx.split or nnx.graphdef), got '
        f'{type(graphdef).__name__}. Call it as nnx.merge(graphdef, state, ...).'
    )
  flat = _leaves_by_path(state) if not states else dict(
      merge_flat([_leaves_by_path(s).items() for s in (state, *states)]))

  def take_leaf(path: Path) -> tp.Any:
    if path not in flat:
      raise ValueError(
          f'merge: the GraphDef has a leaf at {path} but no State given has a '
          'value for it. Pass every State that split returned.'
      )
    return flat.pop(path)

  node = unflatten(graphdef, take_leaf)
  if flat:
    raise ValueError(
        f'merge: the States have paths the GraphDef does not know: '
        f'{sorted(flat, key=lambda p: tuple(map(sort_key, p)))[:5]}. '
        'Were they split from a different model?'
    )
  return node


def _leaves_by_path(state: tp.Mapping) -> dict[Path, tp.Any]:
  """``{path: leaf}`` of a (nested) State or mapping, in no particular order."""
  flat: dict[Path, tp.Any] = {}

  def walk(prefix: Path, mapping: tp.Mapping) -> None:
    for key, value in mapping.items():
      if isinstance(value, (State, dict)):
        walk(prefix + (key,), value)
      else:
        flat[prefix + (key,)] = value

  walk((), state)
  return flat


def graphdef(node: Object) -> NodeDef:
  """Only the GraphDef of ``node``.

  >>> import nnx_edu as nnx
  >>> nnx.graphdef(nnx.Linear(1, 1, rngs=nnx.Rngs(0))) == nnx.graphdef(nnx.Linear(1, 1, rngs=nnx.Rngs(1)))
  True
  """
  return flatten(node)[0]


def state(node: Object, *filters: filterlib.Filter):
  """The State of ``node``: all of it, or one State per filter.

  Unlike ``split``, the filters need not cover every Variable.

  >>> import nnx_edu as nnx
  >>> bn = nnx.BatchNorm(2, rngs=nnx.Rngs(0))
  >>> sorted(nnx.state(bn, nnx.BatchStat))
  ['mean', 'var']
  """
  _, paths, leaves = flatten(node)
  flat = list(zip(paths, leaves))
  if not filters:
    return State.from_flat_path(flat)
  groups, _ = _partition(flat, filters)
  states = [State.from_flat_path(g) for g in groups]
  return states[0] if len(states) == 1 else tuple(states)


def update(node: Object, state: tp.Mapping, /, *states: tp.Mapping) -> None:
  """Write the values of one or more States into ``node``, in place.

  Paths must lead through attributes the model has; a new leaf may be
  added to an existing node (as ``sow`` does).  A value whose shape or
  Variable type differs from the one it replaces is refused.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
  >>> nnx.update(model, {'bias': jnp.ones(3)})
  >>> model.bias.value
  Array([1., 1., 1.], dtype=float32)
  >>> nnx.update(model, {'bias': jnp.ones(4)})
  Traceback (most recent call last):
  ...
  ValueError: update: the value for ('bias',) has shape (4,) but the model's Param there has shape (3,). A State only fits the model it was taken from.
  """
  if not isinstance(node, Object):
    raise TypeError(f'update expects a Module first, got {type(node).__name__}.')
  merged = as_state(state) if not states else State.merge(state, *states)
  # Walk the State and the model together: each node's children are looked
  # up once, however many leaves lie below it.
  def walk(parent: tp.Any, subtree: State, path: Path) -> None:
    children = _children_of(parent)
    for key, new in subtree.items():
      here = path + (key,)
      if isinstance(new, State):
        if key not in children:
          _raise_no_attribute(parent, children, here)
        walk(children[key], new, here)
      else:
        assign_leaf(parent, children, key, new, here)

  walk(node, merged, ())


def assign_leaf(parent: tp.Any, children: tp.Mapping[Key, tp.Any], key: Key, new: tp.Any,
                path: Path) -> None:
  """Put ``new`` at ``key`` of ``parent``: into the Variable there, or as a new leaf."""
  current = children.get(key)
  if isinstance(current, Variable):
    _check_fits(path, current, new)
    if isinstance(new, Variable):
      vars(current)['_value'] = vars(new)['_value']
      vars(current)['_metadata'] = dict(new._metadata)
    else:
      vars(current)['_value'] = new
  elif key not in children or is_array(current):
    _set_child(parent, key, new)
  else:
    raise ValueError(
        f'update: the model has a static attribute at {path} '
        f'({type(current).__name__}), which a State cannot set.'
    )


def _check_fits(path: Path, current: Variable, new: tp.Any) -> None:
  if isinstance(new, Variable) and not isinstance(new, type(current)):
    raise ValueError(
        f'update: the State has a {type(new).__name__} at {path} but the model '
        f'has a {type(current).__name__} there. A State only fits the model it '
        'was taken from.'
    )
  old_shape = getattr(vars(current)['_value'], 'shape', None)
  new_shape = getattr(vars(new)['_value'] if isinstance(new, Variable) else new, 'shape', None)
  if old_shape is not None and new_shape is not None and old_shape != new_shape:
    raise ValueError(
        f'update: the value for {path} has shape {tuple(new_shape)} but the '
        f"model's {type(current).__name__} there has shape {tuple(old_shape)}. "
        'A State only fits the model it was taken from.'
    )


def _children_of(parent: tp.Any) -> tp.Mapping[Key, tp.Any]:
  if isinstance(parent, Object):
    return parent._graph_children()
  return dict(container_children(parent)[0])


def _raise_no_attribute(parent: tp.Any, children: tp.Mapping, path: Path) -> tp.NoReturn:
  raise ValueError(
      f'update: the model has no attribute at {path}. The State does not '
      f'fit this {type(parent).__name__}; its attributes are '
      f'{sorted(map(str, children))}.'
  )


def _set_child(parent: tp.Any, key: Key, value: tp.Any) -> None:
  structure_changed()
  if isinstance(parent, Object):
    parent._graph_set(key, value)
  elif isinstance(parent, tuple):
    raise ValueError(
        f'update: cannot set {key!r} inside a {type(parent).__name__}, which is '
        'immutable. Keep arrays that change in Variables.'
    )
  else:  # a list, dict or State marked with nnx.data
    parent[key] = value


def clone(node: Object) -> tp.Any:
  """A deep copy of ``node``: new Variables, same (immutable) arrays.

  >>> import nnx_edu as nnx
  >>> model = nnx.Linear(1, 1, rngs=nnx.Rngs(0))
  >>> nnx.clone(model).kernel is model.kernel
  False
  """
  if isinstance(node, State):
    return jax.tree.map(lambda x: x, node)
  graphdef, _, leaves = flatten(node)
  # unflatten asks for the leaves in the order flatten found them
  copies = iter([v.replace() if isinstance(v, Variable) else v for v in leaves])
  return unflatten(graphdef, lambda path: next(copies))


def pop(node: Object, *filters: filterlib.Filter):
  """Remove the Variables the filters select from ``node``; return them.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> class Model(nnx.Module):
  ...   def __call__(self, x):
  ...     self.sow(nnx.Intermediate, 'seen', x)
  ...     return x
  >>> model = Model()
  >>> _ = model(jnp.ones(2))
  >>> popped = nnx.pop(model, nnx.Intermediate)
  >>> list(popped), len(nnx.state(model))
  (['seen'], 0)
  """
  if not filters:
    raise TypeError('pop needs at least one filter, for example nnx.pop(model, nnx.Intermediate).')
  _, paths, leaves = flatten(node)
  groups, _ = _partition(zip(paths, leaves), filters)
  structure_changed()
  for group in groups:
    for path, _leaf in group:
      parent = node
      for key in path[:-1]:
        parent = _children_of(parent)[key]
      if isinstance(parent, Object):
        parent._graph_del(path[-1])
      else:
        del parent[path[-1]]
  states = [State.from_flat_path(g) for g in groups]
  return states[0] if len(states) == 1 else tuple(states)


def iter_graph(node: Object) -> tp.Iterator[tuple[Path, tp.Any]]:
  """Yield ``(path, value)`` for every node and attribute, children first.

  Each shared node is visited once; the root comes last with path ``()``.

  >>> import nnx_edu as nnx
  >>> model = nnx.Linear(1, 1, use_bias=False, rngs=nnx.Rngs(0))
  >>> [path for path, value in nnx.iter_graph(model)][-3:]
  [('promote_dtype',), ('use_bias',), ()]
  """
  seen: set[int] = set()

  def walk(value: tp.Any, path: Path):
    if isinstance(value, (Object, Variable)):
      if id(value) in seen:
        return
      seen.add(id(value))
    children = None
    if isinstance(value, Object):
      children = value._graph_children()
    elif isinstance(value, (list, tuple, dict)):  # static ones too, as in Flax
      children = value if isinstance(value, dict) else dict(enumerate(value))
    if children is not None:
      for key in sorted(children, key=sort_key):
        if key != '_nnx_marks':
          yield from walk(children[key], path + (key,))
    yield path, value

  yield from walk(node, ())
