"""Core -- the graph: how a Module becomes ``(GraphDef, State)`` and back.

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

The walk itself -- the GraphDef, ``flatten`` and ``unflatten`` -- is the
previous chapter, ``graphwalk.py``; this one builds the public functions on it.
"""

from __future__ import annotations

import typing as tp

import jax

from nnx_edu.core import filters as filterlib
from nnx_edu.core.filters import Key, Path, path_sort_key, sort_key, split_by_filters
from nnx_edu.core.graph_mode import tree_mode_advice, use_graph
from nnx_edu.core.graphwalk import ArrayDef, ContainerDef, NodeDef, VariableDef, flatten, unflatten
from nnx_edu.core.objects import MARKS, Pytree, children_of, is_array
from nnx_edu.core.pytrees import structure_changed
from nnx_edu.core.state import (
  State,
  as_state,
  flat_pairs,
  merge_flat,
  one_or_tuple,
  raise_not_exhaustive,
)
from nnx_edu.core.treewalk import TreeNodeDef, tree_flatten, tree_unflatten
from nnx_edu.core.variables import Variable


def take_apart(node: tp.Any, graph: bool | None, function: str):
  """``(definition, paths, leaves)`` of ``node`` in graph mode or in tree mode."""
  if use_graph(graph, function):
    return flatten(node)
  return tree_flatten(node, function)


def _nested_or_leaf(flat: list) -> tp.Any:
  """A State of ``flat``; a lone leaf at the root path ``()`` (an array, a Variable) as itself."""
  if len(flat) == 1 and flat[0][0] == ():
    return flat[0][1]
  return State.from_flat_path(flat)


# -- the public graph functions ------------------------------------------------
def split(node: tp.Any, *filters: filterlib.Filter, graph: bool | None = None):
  """Take ``node`` apart into a GraphDef and one State per filter.

  Without filters it returns ``(graphdef, state)``.  With filters every
  Variable must be selected by one of them; end with ``...`` to collect the
  rest.  ``graph=False`` walks ``node`` as a JAX pytree (tree mode,
  ``graph_mode.py``); left out, the current ``nnx.set_graph_mode`` decides.

  >>> import nnx_edu as nnx
  >>> bn = nnx.BatchNorm(2, rngs=nnx.Rngs(0))
  >>> graphdef, params, stats = nnx.split(bn, nnx.Param, nnx.BatchStat)
  >>> sorted(params), sorted(stats)
  (['bias', 'scale'], ['mean', 'var'])
  """
  graphdef, paths, leaves = take_apart(node, graph, 'split')
  flat = list(zip(paths, leaves))
  if not filters:
    return graphdef, _nested_or_leaf(flat)
  groups, rest = split_by_filters(flat, filters)
  if rest:
    raise_not_exhaustive(filters, rest)
  return (graphdef, *(_nested_or_leaf(g) for g in groups))


def merge(graphdef: tp.Any, state: tp.Any, /, *states: tp.Any, copy: bool = False) -> tp.Any:
  """Build a node from its GraphDef and States (the inverse of ``split``).

  The new node holds the States' own Variables, or copies of them with
  ``copy=True``.  A GraphDef from tree mode is rebuilt by JAX's treedef.

  >>> import nnx_edu as nnx
  >>> graphdef, params, stats = nnx.split(nnx.BatchNorm(2, rngs=nnx.Rngs(0)),
  ...                                     nnx.Param, nnx.BatchStat)
  >>> type(nnx.merge(graphdef, params, stats)).__name__
  'BatchNorm'
  """
  if not isinstance(graphdef, GRAPH_DEFINITIONS):
    raise TypeError(
        f'merge expects a GraphDef first (from nnx.split or nnx.graphdef), got '
        f'{type(graphdef).__name__}. Call it as nnx.merge(graphdef, state, ...).'
    )
  flat = dict(merge_flat([_pairs(s) for s in (state, *states)]))
  if isinstance(graphdef, TreeNodeDef):
    return _merge_tree(graphdef, flat, copy)

  def take_leaf(path: Path) -> tp.Any:
    if path not in flat:
      raise ValueError(
          f'merge: the GraphDef has a leaf at {path} but no State given has a '
          'value for it. Pass every State that split returned.'
      )
    return flat.pop(path)

  node = unflatten(graphdef, take_leaf, copy_variables=copy)
  if flat:
    raise ValueError(
        f'merge: the States have paths the GraphDef does not know: '
        f'{sorted(flat, key=path_sort_key)[:5]}. '
        'Were they split from a different model?'
    )
  return node


def _pairs(state: tp.Any) -> list[tuple[Path, tp.Any]]:
  """``(path, leaf)`` pairs of a State or dict; a lone leaf (an array) sits at ``()``."""
  return flat_pairs(state) if isinstance(state, tp.Mapping) else [((), state)]


# What split can return as a GraphDef: a Module's NodeDef, a tree-mode TreeNodeDef, or
# the definition of another root (a Variable, an array, a list of Modules).
GRAPH_DEFINITIONS = (NodeDef, TreeNodeDef, VariableDef, ArrayDef, ContainerDef)


def _merge_tree(graphdef: TreeNodeDef, flat: dict, copy: bool) -> tp.Any:
  missing = [path for path in graphdef.paths if path not in flat]
  if missing or len(flat) != len(graphdef.paths):
    raise ValueError(
        f'merge: this tree-mode GraphDef has leaves at {list(graphdef.paths)[:5]}, but the '
        f'States have {sorted(flat, key=path_sort_key)[:5]}. Pass every State that split '
        'returned, for the model it came from.'
    )
  return tree_unflatten(graphdef, [flat[path] for path in graphdef.paths], copy_variables=copy)


def graphdef(node: tp.Any, *, graph: bool | None = None) -> tp.Any:
  """Only the GraphDef of ``node``.

  >>> import nnx_edu as nnx
  >>> nnx.graphdef(nnx.Linear(1, 1, rngs=nnx.Rngs(0))) == nnx.graphdef(nnx.Linear(1, 1, rngs=nnx.Rngs(1)))
  True
  """
  return take_apart(node, graph, 'graphdef')[0]


def state(node: tp.Any, *filters: filterlib.Filter, graph: bool | None = None):
  """The State of ``node``: all of it, or one State per filter.

  Unlike ``split``, the filters need not cover every Variable.

  >>> import nnx_edu as nnx
  >>> bn = nnx.BatchNorm(2, rngs=nnx.Rngs(0))
  >>> sorted(nnx.state(bn, nnx.BatchStat))
  ['mean', 'var']
  """
  _, paths, leaves = take_apart(node, graph, 'state')
  flat = list(zip(paths, leaves))
  if not filters:
    return _nested_or_leaf(flat)
  groups, _ = split_by_filters(flat, filters)
  return one_or_tuple([State.from_flat_path(g) for g in groups])


def update(node: Pytree, state: tp.Mapping, /, *states: tp.Mapping) -> None:
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
  if isinstance(node, Variable) and not isinstance(state, tp.Mapping) and not states:
    _check_fits((), node, state)  # a lone Variable, split into itself
    node.set_raw_value(state.get_raw_value() if isinstance(state, Variable) else state)
    return
  if not isinstance(node, (Pytree, list, dict)):
    raise TypeError(
        f'update expects a Module (or a list or dict of them) first, got '
        f'{type(node).__name__}. Call it as nnx.update(model, state).')
  merged = as_state(state) if not states else State.merge(state, *states)
  # Walk the State and the model together: each node's children are looked
  # up once, however many leaves lie below it.
  def walk(parent: tp.Any, subtree: State, path: Path) -> None:
    children = children_of(parent)
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
      current.set_raw_value(new.get_raw_value())
      current.set_metadata(new.get_metadata())
    else:
      current.set_raw_value(new)
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
  old_shape = getattr(current.get_raw_value(), 'shape', None)
  new_shape = getattr(new.get_raw_value() if isinstance(new, Variable) else new, 'shape', None)
  if old_shape is not None and new_shape is not None and old_shape != new_shape:
    raise ValueError(
        f'update: the value for {path} has shape {tuple(new_shape)} but the '
        f"model's {type(current).__name__} there has shape {tuple(old_shape)}. "
        'A State only fits the model it was taken from.'
    )


def _raise_no_attribute(parent: tp.Any, children: tp.Mapping, path: Path) -> tp.NoReturn:
  raise ValueError(
      f'update: the model has no attribute at {path}. The State does not '
      f'fit this {type(parent).__name__}; its attributes are '
      f'{sorted(map(str, children))}.'
  )


def _set_child(parent: tp.Any, key: Key, value: tp.Any) -> None:
  structure_changed()
  if isinstance(parent, Pytree):
    parent._graph_set(key, value)
  elif isinstance(parent, tuple):
    raise ValueError(
        f'update: cannot set {key!r} inside a {type(parent).__name__}, which is '
        'immutable. Keep arrays that change in Variables.'
    )
  else:  # a list, dict or State marked with nnx.data
    parent[key] = value


def clone(node: tp.Any, variables: bool = True, *, arrays: bool = False,
          graph: bool | None = None) -> tp.Any:
  """A deep copy of ``node``: new Variables, same (immutable) arrays.

  ``variables=False`` keeps the same Variables (a new graph around them);
  ``arrays=True`` copies the array buffers too, so that the clone can be
  donated to ``jax.jit`` next to the original.

  >>> import nnx_edu as nnx
  >>> model = nnx.Linear(1, 1, rngs=nnx.Rngs(0))
  >>> nnx.clone(model).kernel is model.kernel
  False
  """
  if arrays and not variables:
    raise ValueError(
        'clone(arrays=True, variables=False) would copy the arrays inside Variables it '
        'shares with the original. Leave variables=True to copy the arrays.')
  if isinstance(node, State):
    return jax.tree.map(lambda x: x, node)
  definition, _, leaves = take_apart(node, graph, 'clone')
  if arrays:  # tree.map makes new Variables around new buffers: already copies
    leaves = [jax.tree.map(jax.numpy.copy, leaf) for leaf in leaves]
  copies = [v.replace() if isinstance(v, Variable) and variables and not arrays else v
            for v in leaves]
  if isinstance(definition, TreeNodeDef):
    return tree_unflatten(definition, copies)
  # unflatten asks for the leaves in the order flatten found them
  leaf_iter = iter(copies)
  return unflatten(definition, lambda path: next(leaf_iter))


def pop(node: Pytree, *filters: filterlib.Filter):
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
  groups, _ = split_by_filters(zip(paths, leaves), filters)
  structure_changed()
  for group in groups:
    for path, _leaf in group:
      parent = node
      for key in path[:-1]:
        parent = children_of(parent)[key]
      if isinstance(parent, Pytree):
        parent._graph_del(path[-1])
      else:
        del parent[path[-1]]
  return one_or_tuple([State.from_flat_path(g) for g in groups])


def set_metadata(node: Pytree, /, *, only: filterlib.Filter = Variable,
                 **metadata: tp.Any) -> None:
  """Set ``metadata`` on every Variable of ``node`` that ``only`` selects, in place.

  >>> import nnx_edu as nnx
  >>> model = nnx.BatchNorm(2, rngs=nnx.Rngs(0))
  >>> nnx.set_metadata(model, only=nnx.BatchStat, frozen=True)
  >>> model.mean.get_metadata(), model.scale.get_metadata()
  ({'frozen': True}, {})
  """
  for _, variable in state(node, only).flat_state():
    variable.set_metadata(**metadata)
  structure_changed()  # metadata is part of the GraphDef: nnx.jit must split again


def iter_graph(node: tp.Any, *, graph: bool | None = None) -> tp.Iterator[tuple[Path, tp.Any]]:
  """Yield ``(path, value)`` for every node and attribute, children first.

  Each shared node is visited once; the root comes last with path ``()``.
  In tree mode (``graph=False``) an object met twice is an error instead.

  >>> import nnx_edu as nnx
  >>> model = nnx.Linear(1, 1, use_bias=False, rngs=nnx.Rngs(0))
  >>> [path for path, value in nnx.iter_graph(model)][-3:]
  [('promote_dtype',), ('use_bias',), ()]
  """
  tree_mode = not use_graph(graph, 'iter_graph')
  seen: dict[int, Path] = {}

  def walk(value: tp.Any, path: Path):
    if isinstance(value, (Pytree, Variable)):
      if id(value) in seen:
        if tree_mode:
          raise ValueError(
              f'iter_graph: the same {type(value).__name__} is reached at {seen[id(value)]} '
              f'and at {path}. ' + tree_mode_advice('iter_graph'))
        return
      seen[id(value)] = path
    if isinstance(value, (Pytree, list, tuple, dict)):  # static containers too, as in Flax
      children = children_of(value)
      for key in sorted(children, key=sort_key):
        if key != MARKS:
          yield from walk(children[key], path + (key,))
    yield path, value

  yield from walk(node, ())
