"""Core -- tree mode: a model taken apart as the JAX pytree it is.

``graphwalk.py`` walks a model object by object and remembers sharing.
Tree mode (``graph=False``, see ``graph_mode.py``) lets JAX do the walk:
a Module is a pytree (``objects.py``), so ``jax.tree_util`` already knows
its leaves -- its Variables and bare arrays -- and gives back a
``PyTreeDef`` that can rebuild it.  Two things are added on top:

* the leaves are put in **path order**, as in graph mode, so a State is the
  same whichever mode made it; ``TreeNodeDef.order`` remembers where each
  one sits in JAX's own order, to rebuild the tree;
* a Variable met twice is an **error naming both paths**: a pytree has no
  way to say "the same object again", and two copies would silently come
  back as two different Variables.

>>> import nnx_edu as nnx
>>> definition, paths, leaves = tree_flatten(nnx.Linear(2, 3, rngs=nnx.Rngs(0)))
>>> paths, [type(leaf).__name__ for leaf in leaves]
([('bias',), ('kernel',)], ['Param', 'Param'])
>>> type(tree_unflatten(definition, leaves)).__name__
'Linear'
"""

from __future__ import annotations

import dataclasses
import typing as tp

import jax

from nnx_edu.core.filters import Path, path_sort_key
from nnx_edu.core.graph_mode import tree_mode_advice
from nnx_edu.core.graphwalk import ARRAY_DEF, ArrayDef, VariableDef, build_leaf, describe_leaf
from nnx_edu.core.objects import Pytree, key_name
from nnx_edu.core.variables import Variable


@dataclasses.dataclass(frozen=True)
class TreeNodeDef:
  """How to rebuild a tree-mode model: JAX's treedef and what each leaf was.

  ``leaves`` holds a ``VariableDef`` or ``ArrayDef`` per leaf, in path order;
  ``order[i]`` is the position of the i-th leaf in JAX's own order.
  """

  type: type
  treedef: jax.tree_util.PyTreeDef
  paths: tuple[Path, ...]
  order: tuple[int, ...]
  leaves: tuple[VariableDef | ArrayDef, ...]

  def __repr__(self) -> str:
    count = len(self.leaves)
    return f'GraphDef({self.type.__name__}, tree mode, {count} {"leaf" if count == 1 else "leaves"})'


# Hashable and without leaves: it can go through jax.jit as a static argument.
jax.tree_util.register_static(TreeNodeDef)


def _is_leaf(value: tp.Any) -> bool:
  # Variables are leaves (their value stays inside them), and so is an
  # Object made with pytree=False, which JAX cannot open: refused below.
  return isinstance(value, Variable) or (isinstance(value, Pytree) and not value._is_pytree)


def tree_flatten(node: tp.Any, function: str = 'split'
                 ) -> tuple[TreeNodeDef, list[Path], list[tp.Any]]:
  """``(definition, paths, leaves)`` of ``node`` walked as a JAX pytree, leaves in path order.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> weight = nnx.Param(jnp.ones(2))
  >>> tree_flatten({'a': weight, 'b': weight})
  Traceback (most recent call last):
  ...
  ValueError: split: the same Param is reached at ['a'] and at ['b']. Tree mode (graph=False) does not support shared references: it sees a model as a JAX pytree. Either make the model a tree (one path to each object), or use graph mode: nnx.split(..., graph=True), or nnx.compat.split(...).
  """
  pairs, treedef = jax.tree_util.tree_flatten_with_path(node, is_leaf=_is_leaf)
  first_path: dict[int, str] = {}  # id(Variable) -> where it was first met
  for jax_path, leaf in pairs:
    if isinstance(leaf, Pytree):
      raise ValueError(
          f'{function}: the {type(leaf).__name__} at {jax.tree_util.keystr(jax_path) or "the root"} '
          'was made with pytree=False, so JAX cannot open it and tree mode cannot see its '
          f'Variables. Use graph mode, nnx.{function}(..., graph=True), or make the class a pytree.'
      )
    if isinstance(leaf, Variable):
      here = jax.tree_util.keystr(jax_path)
      seen = first_path.setdefault(id(leaf), here)
      if seen is not here:
        raise ValueError(
            f'{function}: the same {type(leaf).__name__} is reached at {seen} and at {here}. '
            + tree_mode_advice(function)
        )
  paths = [tuple(key_name(entry) for entry in jax_path) for jax_path, _ in pairs]
  order = sorted(range(len(pairs)), key=lambda i: path_sort_key(paths[i]))
  leaves = [pairs[i][1] for i in order]
  definition = TreeNodeDef(
      type=type(node), treedef=treedef, paths=tuple(paths[i] for i in order),
      order=tuple(order), leaves=tuple(_leaf_def(leaf, i) for i, leaf in enumerate(leaves)))
  return definition, list(definition.paths), leaves


def _leaf_def(leaf: tp.Any, index: int) -> VariableDef | ArrayDef:
  return describe_leaf(leaf, index) if isinstance(leaf, Variable) else ARRAY_DEF


def tree_unflatten(definition: TreeNodeDef, leaves: tp.Sequence[tp.Any], *,
                   copy_variables: bool = False, recreate_variables: bool = True) -> tp.Any:
  """Rebuild a tree-mode model from its definition and its leaves in path order.

  A Variable leaf is used as it is (or copied, with ``copy_variables``); a
  plain value where a Variable was becomes a new Variable of that type
  and metadata, unless ``recreate_variables=False`` leaves it bare.
  """
  in_jax_order: list[tp.Any] = [None] * len(leaves)
  for position, leaf, leaf_def in zip(definition.order, leaves, definition.leaves):
    in_jax_order[position] = build_leaf(leaf_def, leaf, copy_variables, recreate_variables)
  return definition.treedef.unflatten(in_jax_order)
