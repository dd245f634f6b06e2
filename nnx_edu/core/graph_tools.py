"""Core -- graph tools: looking over a whole graph, and rewriting it.

``split`` and ``merge`` (``graph.py``) take a graph apart and put it back.
Four tools built on them answer everyday questions about a model:

* ``find_duplicates(model)`` -- which objects are reachable along more than
  one path?  (A shared Variable or Module, say tied embeddings.)
* ``iter_module_children(model)`` -- the graph nodes one level down.
* ``recursive_map(f, model)`` -- rebuild the graph bottom-up, replacing
  any node, Variable or attribute by what ``f(path, value)`` returns: how
  one swaps every ``Linear`` for a ``LoRA``.
* ``map(f, model)`` -- a copy of the model with ``f(path, variable)`` in
  place of each Variable: ``split``, ``map_state``, ``merge``.

>>> import jax.numpy as jnp
>>> import nnx_edu as nnx
>>> model = nnx.Sequential(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), nnx.relu)
>>> zeros = nnx.map(lambda path, v: v.replace(jnp.zeros_like(v.value)), model)
>>> zeros(jnp.ones((1, 2)))
Array([[0., 0., 0.]], dtype=float32)

Flax's versions also take ``graph=False``, for *tree mode*, which treats
Modules as plain JAX pytrees; here ``graph`` may only be ``None`` or
``True`` (graph mode): tree mode (``treewalk.py``) reaches the functions
of ``graph.py`` first.
"""

from __future__ import annotations

import dataclasses
import typing as tp

import jax

from nnx_edu.core import filters as filterlib
from nnx_edu.core.filters import Key, Path, sort_key
from nnx_edu.core.graph import merge, split
from nnx_edu.core.graphwalk import ARRAY_DEF, ContainerDef, NodeDef, NodeRef, VariableDef
from nnx_edu.core.module import List
from nnx_edu.core.objects import MARKS, Pytree, children_of, is_array
from nnx_edu.core.pytrees import structure_changed
from nnx_edu.core.state import State
from nnx_edu.core.state_tools import map_state
from nnx_edu.core.variables import A, Variable


def _check_graph_mode(graph: bool | None, function: str) -> None:
  if graph is False:
    raise NotImplementedError(
        f'{function}(..., graph=False) asks for tree mode, which nnx_edu has for split, '
        f'merge, state, graphdef, clone and iter_graph but not yet for {function}. Leave '
        'graph out (or pass graph=True) for graph mode.'
    )
  if graph is not None and graph is not True:
    raise TypeError(f'{function}: graph must be None, True or False, got {graph!r}.')


def _is_container(value: tp.Any) -> bool:
  """A JAX pytree with an inside (a list, tuple, dict, State, None...), not a graph node."""
  if isinstance(value, (Pytree, Variable)) or is_array(value):
    return False
  treedef = jax.tree.structure(value)
  return not (treedef.num_nodes == 1 and treedef.num_leaves == 1)


def _copy_containers(node: A) -> A:
  """New lists, dicts and tuples around the same graph nodes, Variables and leaves."""
  return jax.tree.map(lambda x: x, node, is_leaf=lambda x: isinstance(x, (Pytree, Variable)))


def _copy(node: A) -> A:
  """A copy of the graph that shares its Variables (``split`` and ``merge``, not ``clone``).

  In a one-item List any value is a graph node, so this works for plain
  containers of Modules too.
  """
  return merge(*split(List([_copy_containers(node)])))[0]


def _children(value: tp.Any) -> list[tuple[Key, tp.Any]]:
  """``(key, child)`` of a graph node or container, sorted by key, as ``split`` sees them."""
  children = children_of(value)
  return [(key, children[key]) for key in sorted(children, key=sort_key) if key != MARKS]


# -- find_duplicates -------------------------------------------------------------------
def find_duplicates(node: tp.Any, /, *, only: filterlib.Filter = ...) -> list[list[Path]]:
  """The paths of every graph node, Variable or array reachable along more than one path.

  One list of paths per shared object, each in sorted path order; the lists
  come in the order the walk first meets each object.  A later path counts
  only if ``only(path, value)`` selects it; the first always does.

  >>> import nnx_edu as nnx
  >>> class Tied(nnx.Module):
  ...   def __init__(self, rngs):
  ...     self.encoder = nnx.Linear(2, 2, rngs=rngs)
  ...     self.decoder = self.encoder        # the same Module twice
  ...     self.scale = nnx.Param(1.0)
  ...     self.gain = self.scale             # the same Variable twice
  >>> nnx.find_duplicates(Tied(nnx.Rngs(0)))
  [[('decoder',), ('encoder',)], [('gain',), ('scale',)]]
  >>> nnx.find_duplicates(Tied(nnx.Rngs(0)), only=nnx.Param)
  [[('gain',), ('scale',)]]
  """
  is_candidate = filterlib.to_predicate(only)
  paths_of: dict[int, list[Path]] = {}  # id(object) -> its paths, first path first

  def visit(value: tp.Any, path: Path) -> None:
    has_identity = isinstance(value, (Pytree, Variable)) or is_array(value)
    if not has_identity and not _is_container(value):
      return  # a plain setting: an int, a string, a function
    if id(value) in paths_of:  # met before: record the new path, do not walk it again
      if is_candidate(path, value):
        paths_of[id(value)].append(path)
      return
    if has_identity:
      paths_of[id(value)] = [path]
    if isinstance(value, Pytree) or _is_container(value):
      for key, child in _children(value):
        visit(child, (*path, key))

  visit(node, ())
  return [paths for paths in paths_of.values() if len(paths) > 1]


# -- iter_module_children ----------------------------------------------------------------
def iter_module_children(node: Pytree, /, *, graph: bool | None = None
                         ) -> tp.Iterator[tuple[Key, Pytree]]:
  """Yield ``(key, child)`` for each graph node (Module, Rngs, ...) directly below ``node``.

  Keys come sorted; a child held under two keys is yielded twice.
  Variables are not graph nodes here (``iter_graph`` walks everything).

  >>> import nnx_edu as nnx
  >>> model = nnx.Sequential(nnx.Linear(1, 1, rngs=nnx.Rngs(0)), nnx.relu)
  >>> [(key, type(child).__name__) for key, child in nnx.iter_module_children(model)]
  [('layers', 'List')]
  >>> [key for key, _ in nnx.iter_module_children(model.layers)]
  [0]
  """
  _check_graph_mode(graph, 'iter_module_children')
  if not isinstance(node, Pytree):
    raise ValueError(
        f'iter_module_children expects a graph node (a Module, nnx.List, Rngs, ...), got '
        f'{type(node).__name__}. For a list or dict of Modules, iterate over it directly.'
    )
  for key, child in _children(node):
    if isinstance(child, Pytree):
      yield key, child


# -- recursive_map -----------------------------------------------------------------------
def recursive_map(f: tp.Callable[[Path, tp.Any], tp.Any], node: A, /, *,
                  graph: bool | None = None) -> A:
  """Rebuild ``node`` bottom-up: every value is replaced by ``f(path, value)``.

  ``f`` sees each attribute, list item, Variable and sub-node -- children
  before their parent, keys sorted, the root last with path ``()`` -- and
  returns the value to put in its place (often the value itself).  A shared
  node or Variable is passed to ``f`` once.  The graph is copied first, so
  ``node`` keeps its structure; but the copy shares ``node``'s Variables, and
  when ``f`` returns a new Variable for a Variable attribute of a node, the
  new value and metadata are written *into* the shared Variable (as Flax does).

  >>> import nnx_edu as nnx
  >>> model = nnx.Sequential(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), nnx.Dropout(0.1))
  >>> def add_lora(path, value):
  ...   if isinstance(value, nnx.Linear):
  ...     return nnx.LoRALinear(value.in_features, value.out_features, lora_rank=1,
  ...                           rngs=nnx.Rngs(1))
  ...   return value
  >>> [type(layer).__name__ for layer in nnx.recursive_map(add_lora, model).layers]
  ['LoRALinear', 'Dropout']
  >>> [type(layer).__name__ for layer in model.layers]
  ['Linear', 'Dropout']
  """
  _check_graph_mode(graph, 'recursive_map')
  root = _copy(node)
  done: dict[int, tuple[tp.Any, tp.Any]] = {}  # id -> (node, f's result); node kept alive
  in_progress: dict[int, Path] = {}

  def visit(value: tp.Any, path: Path) -> tp.Any:
    tracked = isinstance(value, (Pytree, Variable))
    if tracked:
      if id(value) in done:
        return done[id(value)][1]
      if id(value) in in_progress:
        _raise_cycle(value, in_progress[id(value)], path)
      in_progress[id(value)] = path
    if isinstance(value, Pytree) or _is_container(value):
      for key, child in _children(value):
        new = visit(child, (*path, key))
        if new is not child:
          _replace_child(value, key, child, new, (*path, key))
    result = f(path, value)
    if tracked:
      done[id(value)] = (value, result)
    return result

  return visit(root, ())


def _replace_child(parent: tp.Any, key: Key, old: tp.Any, new: tp.Any, path: Path) -> None:
  if isinstance(parent, Pytree):
    if isinstance(old, Variable) and isinstance(new, Variable):
      old.set_raw_value(new.get_raw_value())  # Flax updates the Variable in place
      old.set_metadata(new.get_metadata())
      return
    parent._graph_set(key, new)
  elif isinstance(parent, (list, dict, State)):
    parent[key] = new
  else:
    raise ValueError(
        f'recursive_map: f returned a new value for {path}, which is inside a '
        f'{type(parent).__name__}; a {type(parent).__name__} cannot be changed in place. '
        f'Return a whole new {type(parent).__name__} from f at {path[:-1]} instead, or hold '
        'the values in an nnx.List.'
    )
  structure_changed()


def _raise_cycle(value: tp.Any, first: Path, again: Path) -> tp.NoReturn:
  raise ValueError(
      f'recursive_map: the graph has a cycle: the {type(value).__name__} at {first} is met '
      f'again inside itself, at {again}. recursive_map replaces a node after its children, '
      'so a node cannot be its own descendant; remove the back-reference first.'
  )


# -- map -------------------------------------------------------------------------------
def map(f: tp.Callable[[Path, tp.Any], tp.Any], node: A, /, *, graph: bool | None = None,
        recreate_variables: bool = True) -> A:
  """A new ``node`` with ``f(path, leaf)`` in place of each Variable (and array) leaf.

  This is ``split``, then ``map_state(f, state)``, then ``merge``.  ``f``
  gets the Variables themselves; what it returns goes into the new graph:

  * a Variable is used as it is (return ``v`` and the copy shares it;
    return ``v.replace(...)`` for a new one);
  * a plain value becomes a Variable of the old one's type and metadata --
    unless ``recreate_variables=False``, which leaves it bare.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
  >>> ones = nnx.map(lambda path, v: jnp.ones_like(v.value), model)
  >>> type(ones.bias).__name__, ones.bias.value
  ('Param', Array([1., 1., 1.], dtype=float32))
  >>> bare = nnx.map(lambda path, v: v.value.shape, model, recreate_variables=False)
  >>> bare.kernel, bare.bias
  ((2, 3), (3,))
  """
  _check_graph_mode(graph, 'map')
  if not isinstance(node, (Pytree, Variable)) and not _is_container(node):
    return f((), node)  # a lone value (an array, a number) is its own only leaf
  # In a one-item List every value is a graph node; paths start with its index 0.
  graphdef, state = split(List([_copy_containers(node)]))
  mapped = map_state(lambda path, leaf: f(path[1:], leaf), state)
  if not recreate_variables:
    flat = dict(mapped.flat_state())
    graphdef = _keep_bare(graphdef, flat, (), {})
    mapped = State.from_flat_path(flat)
  return merge(graphdef, mapped)[0]


def _keep_bare(definition: tp.Any, flat: dict[Path, tp.Any], path: Path,
               bare: dict[int, tp.Any]) -> tp.Any:
  """The GraphDef with an array slot wherever ``flat`` holds a plain value for a Variable.

  ``merge`` puts a plain value under a ``VariableDef`` into a new Variable;
  under an ``ArrayDef`` it leaves it as it is.  A shared Variable appears
  once as a VariableDef and then as NodeRefs, which get the same value.
  """
  kind = type(definition)
  if kind is VariableDef and not isinstance(flat[path], Variable):
    bare[definition.index] = flat[path]
    return ARRAY_DEF
  if kind is NodeRef and definition.index in bare:
    flat[path] = bare[definition.index]
    return ARRAY_DEF
  if kind is NodeDef or kind is ContainerDef:
    attributes = tuple((key, _keep_bare(d, flat, (*path, key), bare))
                       for key, d in definition.attributes)
    return dataclasses.replace(definition, attributes=attributes)
  return definition
