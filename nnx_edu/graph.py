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
``split``/``merge`` round trip.
"""

from __future__ import annotations

import dataclasses
import typing as tp

import jax
import numpy as np

from nnx_edu import filters as filterlib
from nnx_edu.objects import Object, holds_data, is_array
from nnx_edu.state import State, as_state, merge_flat, raise_not_exhaustive, sort_key, _partition
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


@dataclasses.dataclass(frozen=True, eq=False)
class Static:
  """A static attribute value, compared and hashed by content."""

  value: tp.Any

  def __eq__(self, other: object) -> bool:
    return isinstance(other, Static) and hashable(self.value) == hashable(other.value)

  def __hash__(self) -> int:
    return hash(hashable(self.value))


@dataclasses.dataclass(frozen=True)
class ArrayDef:
  """A bare array attribute; its value is in the State."""


@dataclasses.dataclass(frozen=True)
class VariableDef:
  """A Variable: its type and metadata here, its value in the State."""

  type: type
  index: int
  metadata: Static  # the metadata dict and hooks, compared by content
  hooks: Static


@dataclasses.dataclass(frozen=True)
class NodeRef:
  """A node or Variable already visited at an earlier path (a shared reference)."""

  index: int


@dataclasses.dataclass(frozen=True)
class ContainerDef:
  """A list, tuple or dict (marked with ``nnx.data``) holding graph data."""

  type: type
  attributes: tuple[tuple[Key, tp.Any], ...]


@dataclasses.dataclass(frozen=True)
class NodeDef:
  """The static description of one node: its type and its attributes.

  ``attributes`` pairs each attribute name with a ``Static``, ``ArrayDef``,
  ``VariableDef``, ``NodeRef``, ``ContainerDef`` or a nested ``NodeDef``.
  The GraphDef of a model is the NodeDef of its root.
  """

  type: type
  index: int
  attributes: tuple[tuple[Key, tp.Any], ...]

  def __post_init__(self):
    # Hash once: jax.jit hashes the GraphDef on every call.
    object.__setattr__(self, '_hash', hash((self.type, self.index, self.attributes)))

  def __hash__(self) -> int:
    return self._hash

  def __repr__(self) -> str:
    return f'GraphDef({self.type.__name__}, {len(self.attributes)} attributes)'


GraphDef = NodeDef


# -- flatten: graph -> (GraphDef, paths, leaves) -------------------------------
def flatten(node: Object) -> tuple[NodeDef, list[Path], list[tp.Any]]:
  """Walk ``node``; return its GraphDef and its leaves with their paths.

  The leaves are the Variables themselves (and bare arrays), in sorted path
  order.

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
  seen: dict[int, int] = {}  # id(object) -> its index in visit order
  paths: list[Path] = []
  leaves: list[tp.Any] = []

  def visit(value: tp.Any, path: Path) -> tp.Any:
    if id(value) in seen and isinstance(value, (Variable, Object)):
      return NodeRef(seen[id(value)])
    if isinstance(value, Variable):
      seen[id(value)] = len(seen)
      paths.append(path)
      leaves.append(value)
      return VariableDef(type(value), seen[id(value)], Static(value._metadata),
                         Static(value._hooks))
    if isinstance(value, Object):
      seen[id(value)] = index = len(seen)
      return NodeDef(type(value), index, visit_children(value._graph_children(), path))
    if is_array(value):
      paths.append(path)
      leaves.append(value)
      return ArrayDef()
    if isinstance(value, (list, tuple, dict)) and holds_data(value):
      items = value if isinstance(value, dict) else dict(enumerate(value))
      return ContainerDef(type(value), visit_children(items, path))
    return Static(value)

  def visit_children(children: tp.Mapping[Key, tp.Any], path: Path):
    return tuple((key, visit(children[key], path + (key,)))
                 for key in sorted(children, key=sort_key))

  graphdef = visit(node, ())
  return graphdef, paths, leaves


# -- unflatten: (GraphDef, leaves) -> graph ------------------------------------
def unflatten(graphdef: NodeDef, take_leaf: tp.Callable[[Path], tp.Any]) -> Object:
  """Rebuild the graph described by ``graphdef``.

  ``take_leaf(path)`` supplies the leaf for each path.  A Variable leaf is
  used as it is (the new graph shares it); an array leaf under a
  ``VariableDef`` is put into a new Variable of the recorded type.
  """
  built: dict[int, tp.Any] = {}

  def build(definition: tp.Any, path: Path) -> tp.Any:
    if isinstance(definition, Static):
      return definition.value
    if isinstance(definition, NodeRef):
      return built[definition.index]
    if isinstance(definition, ArrayDef):
      return take_leaf(path)
    if isinstance(definition, VariableDef):
      leaf = take_leaf(path)
      if not isinstance(leaf, Variable):
        leaf = _new_variable(definition.type, leaf, dict(definition.metadata.value),
                             definition.hooks.value)
      built[definition.index] = leaf
      return leaf
    if isinstance(definition, ContainerDef):
      items = {key: build(d, path + (key,)) for key, d in definition.attributes}
      return items if definition.type is dict else definition.type(items.values())
    node = object.__new__(definition.type)  # no __init__: the graph says it all
    built[definition.index] = node
    node._graph_restore({key: build(d, path + (key,)) for key, d in definition.attributes})
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
  flat = dict(merge_flat([as_state(s).flat_state() for s in (state, *states)]))

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
        f'merge: the States have paths the GraphDef does not know: {sorted(flat)[:5]}. '
        'Were they split from a different model?'
    )
  return node


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
  for path, new in merge_flat([as_state(s).flat_state() for s in (state, *states)]):
    assign_leaf(node, path, new, check=True)


def assign_leaf(node: Object, path: Path, new: tp.Any, *, check: bool) -> None:
  """Put ``new`` at ``path`` in ``node``: into the Variable there, or as a new leaf."""
  parent = node
  for depth, key in enumerate(path[:-1]):
    parent = _child(parent, key, path[:depth + 1])
  key = path[-1]
  current = _children_of(parent).get(key)
  if isinstance(current, Variable):
    if check:
      _check_fits(path, current, new)
    if isinstance(new, Variable):
      vars(current)['_value'] = vars(new)['_value']
      vars(current)['_metadata'] = dict(new._metadata)
    else:
      vars(current)['_value'] = new
  elif current is None or is_array(current):
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
  new_shape = getattr(new.get_value() if isinstance(new, Variable) else new, 'shape', None)
  if old_shape is not None and new_shape is not None and old_shape != new_shape:
    raise ValueError(
        f'update: the value for {path} has shape {tuple(new_shape)} but the '
        f"model's {type(current).__name__} there has shape {tuple(old_shape)}. "
        'A State only fits the model it was taken from.'
    )


def _children_of(parent: tp.Any) -> tp.Mapping[Key, tp.Any]:
  if isinstance(parent, Object):
    return parent._graph_children()
  return parent if isinstance(parent, dict) else dict(enumerate(parent))


def _child(parent: tp.Any, key: Key, path: Path) -> tp.Any:
  children = _children_of(parent)
  if key not in children:
    raise ValueError(
        f'update: the model has no attribute at {path}. The State does not '
        f'fit this {type(parent).__name__}; its attributes are '
        f'{sorted(map(str, children))}.'
    )
  return children[key]


def _set_child(parent: tp.Any, key: Key, value: tp.Any) -> None:
  if isinstance(parent, Object):
    parent._graph_set(key, value)
  else:  # a list or dict marked with nnx.data
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
  graphdef, paths, leaves = flatten(node)
  copies = dict(zip(paths, (v.replace() if isinstance(v, Variable) else v for v in leaves)))
  return unflatten(graphdef, copies.__getitem__)


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
  [('precision',), ('preferred_element_type',), ()]
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
