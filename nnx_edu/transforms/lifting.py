"""Transforms -- lifting: how a function of Modules becomes a pure function.

JAX transforms (``jax.jit``, ``jax.grad``, ``jax.vmap``, ``jax.lax.scan``)
work on pure functions of arrays.  NNX transforms take functions of
*Modules* and keep Python's reference semantics: whatever the function
changes in a Module -- BatchNorm statistics, an Rngs count, a value
recorded with ``sow``, a new attribute -- is there in the caller's Module
afterwards, and arguments that share a Variable still share it.

Every NNX transform does this in the same three steps; we call them
*lifting*:

1. ``split_tree`` takes the graph nodes out of the arguments and flattens
   them *together* (so sharing between arguments survives) into one GraphDef
   and a flat list of values;
2. inside the JAX transform, ``run_inside`` builds fresh copies of the nodes
   from the (traced) values, calls the function, and flattens the copies
   again -- they may hold new values, or even new attributes;
3. outside, ``write_back`` puts the new values, and any new structure, into
   the caller's own objects.

>>> import jax, jax.numpy as jnp
>>> import nnx_edu as nnx
>>> from nnx_edu.transforms.lifting import split_tree, run_inside, write_back
>>> counter = nnx.BatchStat(jnp.array(0))
>>> def count(tree):
...   (counter,), _ = tree
...   counter.value += 1
>>> split = split_tree(((counter,), {}))                            # 1.
>>> pure = lambda values: run_inside(split.structure, values, [], count)
>>> leaves, others, changes = jax.jit(pure)(split.values())         # 2.
>>> write_back(split, changes, leaves, others)                      # 3.
>>> int(counter.value)
1

The next chapters build ``nnx.jit``, ``nnx.grad``, ``nnx.vmap`` and
``nnx.scan`` on these three steps.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import typing as tp

import jax

from nnx_edu.core import graphwalk
from nnx_edu.core.module import Dict, List
from nnx_edu.core.objects import Pytree
from nnx_edu.core.variables import Variable

MISSING: tp.Any = object()  # "no function given yet": the decorator-with-arguments form


def is_graph_node(x: tp.Any) -> bool:
  """Whether ``x`` is lifted by the transforms: a graph node or a Variable.

  >>> import nnx_edu as nnx
  >>> is_graph_node(nnx.Rngs(0)), is_graph_node(1.0)
  (True, False)
  """
  return isinstance(x, (Pytree, Variable))


def raw_value(leaf: tp.Any) -> tp.Any:
  """What JAX sees of a leaf: a Variable's value (no hooks run), or the array itself.

  >>> import nnx_edu as nnx
  >>> raw_value(nnx.Param(1.0)), raw_value(2.0)
  (1.0, 2.0)
  """
  return leaf.get_raw_value() if isinstance(leaf, Variable) else leaf


# -- step 1: split the graph nodes out of a pytree ------------------------------------
@dataclasses.dataclass(frozen=True)
class Structure:
  """The static part of a split pytree: equal for calls with the same structure.

  ``treedef`` has each graph node as one leaf, ``node_mask`` says which leaves
  those are, and ``graphdef`` describes all nodes together as one ``nnx.List``.

  >>> import nnx_edu as nnx
  >>> split_tree((nnx.Rngs(0), 1.0)).structure.node_mask
  (True, False)
  """

  treedef: jax.tree_util.PyTreeDef
  node_mask: tuple[bool, ...]
  graphdef: graphwalk.NodeDef


@dataclasses.dataclass(eq=False)
class SplitTree:
  """A pytree whose graph nodes were flattened together by ``split_tree``.

  ``leaves`` are the nodes' Variables (and bare arrays) in path order; a
  path starts with the node's place in the List.  ``objects`` are the nodes
  and Variables by GraphDef index; ``others`` the leaves that are not graph
  nodes.

  >>> import nnx_edu as nnx
  >>> rngs = nnx.Rngs(0)
  >>> split = split_tree([rngs, rngs])  # the same node twice
  >>> split.paths, split.objects[1] is rngs
  ([(0, 'default', 'count'), (0, 'default', 'key')], True)
  """

  structure: Structure
  paths: list[graphwalk.Path]
  leaves: list[tp.Any]
  objects: list[tp.Any]
  others: list[tp.Any]

  def values(self) -> list[tp.Any]:
    """The leaves as JAX sees them: ``raw_value`` of each.

    >>> import nnx_edu as nnx
    >>> split_tree([nnx.Param(1.0)]).values()
    [1.0]
    """
    return [raw_value(leaf) for leaf in self.leaves]


def split_tree(tree: tp.Any) -> SplitTree:
  """Step 1: take the graph nodes out of ``tree`` and flatten them together.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
  >>> split = split_tree(((model, jnp.ones(2)), {}))
  >>> split.paths, len(split.others)
  ([(0, 'bias'), (0, 'kernel')], 1)
  """
  flat, treedef = jax.tree.flatten(tree, is_leaf=is_graph_node)
  node_mask = tuple(map(is_graph_node, flat))
  objects_by_index: list[tp.Any] = []
  nodes = List([x for x, is_node in zip(flat, node_mask) if is_node])
  graphdef, paths, leaves = graphwalk.flatten(nodes, nodes=objects_by_index)
  others = [x for x, is_node in zip(flat, node_mask) if not is_node]
  sort_attributes(objects_by_index)
  return SplitTree(Structure(treedef, node_mask, graphdef), paths, leaves, objects_by_index, others)


def sort_attributes(nodes: tp.Iterable[tp.Any]) -> None:
  """Put each node's attributes (and a ``Dict``'s keys) in alphabetical order.

  Flax rebuilds the caller's objects after a transform in GraphDef order,
  which is alphabetical, so a Module printed after ``nnx.jit`` lists its
  attributes by name.  We keep the caller's objects as they are, except for
  this order: sorting them here makes the reprs agree with Flax's.

  >>> import nnx_edu as nnx
  >>> layer = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
  >>> list(vars(layer))[:3]
  ['kernel', 'bias', 'in_features']
  >>> sort_attributes([layer])
  >>> list(vars(layer))[:3]
  ['bias', 'dot_general', 'dtype']
  """
  for node in nodes:
    if isinstance(node, Pytree):
      _sort_by_key(vars(node))
    if isinstance(node, Dict):
      _sort_by_key(node._items)


def _sort_by_key(attributes: dict) -> None:
  if all(isinstance(key, str) for key in attributes) and list(attributes) != sorted(attributes):
    items = sorted(attributes.items())
    attributes.clear()
    attributes.update(items)


def merge_tree(structure: Structure, values: tp.Iterable, others: tp.Iterable,
               built: dict[int, tp.Any]) -> tp.Any:
  """The inverse of ``split_tree``: fresh nodes from ``values``, put back in the pytree.

  ``built`` is filled with the new objects by GraphDef index (see ``graphwalk.unflatten``).

  >>> import nnx_edu as nnx
  >>> split = split_tree([nnx.Param(1.0), 'x'])
  >>> merge_tree(split.structure, [2.0], split.others, {})
  [Param(
    value=2.0
  ), 'x']
  """
  values = iter(values)
  nodes = graphwalk.unflatten(structure.graphdef, lambda path: next(values), built=built)
  return fill(structure.treedef, structure.node_mask, nodes, others)


# -- step 2: inside the JAX transform ------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Changes:
  """What a call did to the graph nodes; static, so JAX returns it as aux data.

  Attributes:
    graphdef: the input nodes after the call, then the nodes the function
      returned, as one List.
    reused: ``(index after, index before)`` for each node or Variable the
      call received and still holds; ``write_back`` reuses the caller's
      objects for those instead of creating new ones.
    paths: the path of each new value (the first key is the node's place
      in that List).
    n_inputs: how many input nodes head that List.
    out_treedef, out_node_mask: the structure of the output, as in ``Structure``.
    unchanged: the inputs kept their structure and nothing new came out, so
      new values can go straight into the caller's Variables.

  See ``run_inside`` for an example.
  """

  graphdef: graphwalk.NodeDef
  reused: tuple[tuple[int, int], ...]
  paths: tuple[graphwalk.Path, ...]
  n_inputs: int
  out_treedef: jax.tree_util.PyTreeDef
  out_node_mask: tuple[bool, ...]
  unchanged: bool


jax.tree_util.register_static(Changes)


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class StaticAux:
  """Any other static fact learnt while tracing, handed out of a transform as aux data.

  >>> import jax
  >>> jax.tree.leaves((1.0, StaticAux('not a leaf')))
  [1.0]
  """

  value: tp.Any


def run_inside(structure: Structure, values: tp.Sequence, others: tp.Sequence,
               call: tp.Callable[[tp.Any], tp.Any]):
  """Step 2: rebuild the nodes, ``call`` the pytree, flatten the nodes again.

  Returns ``(the nodes' leaves after the call, non-node leaves of the output,
  Changes)``; the leaves are Variables (or bare arrays), see ``raw_value``.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> counter = nnx.BatchStat(jnp.array(0))
  >>> split = split_tree(([counter], {}))
  >>> def call(tree):
  ...   (counter,), _ = tree
  ...   counter.value += 1
  ...   return 'done'
  >>> leaves, others, changes = run_inside(
  ...     split.structure, split.values(), split.others, call)
  >>> leaves[0].value, others, changes.unchanged
  (Array(1, dtype=int32, weak_type=True), ['done'], True)
  >>> write_back(split, changes, [2], others), counter.value
  ('done', 2)
  """
  built: dict[int, tp.Any] = {}
  tree = merge_tree(structure, values, others, built)
  inputs = list(built[0])  # the List that merge_tree built holds the input nodes
  out = call(tree)
  out_flat, out_treedef = jax.tree.flatten(out, is_leaf=is_graph_node)
  out_node_mask = tuple(map(is_graph_node, out_flat))
  out_nodes = [x for x, is_node in zip(out_flat, out_node_mask) if is_node]
  after: list[tp.Any] = []
  graphdef, paths, leaves = graphwalk.flatten(List(inputs + out_nodes), nodes=after)
  index_before = {id(obj): i for i, obj in built.items() if i > 0}  # 0: the List itself
  reused = tuple((i, index_before[id(obj)]) for i, obj in enumerate(after)
                  if id(obj) in index_before)
  unchanged = (not out_nodes and graphdef == structure.graphdef
               and len(reused) == len(after) - 1
               and all(now == before for now, before in reused)
               and all(isinstance(leaf, Variable) for leaf in leaves))
  changes = Changes(graphdef, reused, tuple(paths), len(inputs), out_treedef, out_node_mask,
                    unchanged)
  others_out = [x for x, is_node in zip(out_flat, out_node_mask) if not is_node]
  return leaves, others_out, changes


# -- step 3: write back into the caller's objects ---------------------------------------
def write_back(split: SplitTree, changes: Changes, values: tp.Sequence,
               others: tp.Sequence, moved: tp.Sequence[bool] | None = None) -> tp.Any:
  """Step 3: put the new values (and structure) into the caller's objects.

  Returns the function's output, with any graph nodes it returned rebuilt
  (an input node comes back as the caller's own object).  If the structure
  is unchanged, ``moved`` may say which leaves ``values`` holds new values
  for (the others kept theirs).  See ``run_inside`` for an example.
  """
  if changes.unchanged:  # then every leaf is a Variable: write into it
    leaves = split.leaves if moved is None else itertools.compress(split.leaves, moved)
    for leaf, value in zip(leaves, values):
      leaf.set_raw_value(value)
    nodes: list[tp.Any] = []
  else:
    built = {now: split.objects[before] for now, before in changes.reused}
    values = iter(values)
    nodes = list(graphwalk.unflatten(changes.graphdef, lambda path: next(values), built=built))
    sort_attributes(built.values())  # a node that gained attributes: sort them in
    nodes = nodes[changes.n_inputs:]
  return fill(changes.out_treedef, changes.out_node_mask, nodes, others)


def fill(treedef: jax.tree_util.PyTreeDef, node_mask: tuple[bool, ...], nodes: tp.Iterable,
         others: tp.Iterable) -> tp.Any:
  """A pytree from its treedef: graph nodes where ``node_mask`` says, others elsewhere.

  >>> import jax
  >>> fill(jax.tree.structure((0, [0])), (False, True), ['node'], ['other'])
  ('other', ['node'])
  """
  nodes, others = iter(nodes), iter(others)
  return treedef.unflatten([next(nodes) if is_node else next(others) for is_node in node_mask])


def refuse_bound_method(fun: tp.Callable, transform: str) -> None:
  """Transforms need the Module as an argument, not bound into a method.

  >>> import nnx_edu as nnx
  >>> refuse_bound_method(nnx.Rngs(0).fork, 'jit')
  Traceback (most recent call last):
  ...
  TypeError: nnx.jit got the bound method Rngs.fork: the Rngs would be hidden inside it, so its state could not go in and come back out. Decorate the method itself (@nnx.jit above its def), or call nnx.jit(Rngs.fork)(module, ...).
  """
  owner = getattr(fun, '__self__', None)
  if inspect.ismethod(fun) and is_graph_node(owner):
    cls = type(owner).__name__
    raise TypeError(
        f'nnx.{transform} got the bound method {cls}.{fun.__name__}: the '
        f'{cls} would be hidden inside it, so its state could not go in and '
        f'come back out. Decorate the method itself (@nnx.{transform} above '
        f'its def), or call nnx.{transform}({cls}.{fun.__name__})(module, ...).'
    )
