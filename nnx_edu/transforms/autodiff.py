"""Transforms -- autodiff: ``grad`` and ``value_and_grad`` for functions of Modules.

``nnx.grad`` lifts ``jax.grad`` the way the previous chapter lifts
``jax.jit``: the Modules among the arguments are split, rebuilt inside, and
what the function changed is written back.  The new part is choosing *what
to differentiate*: for each Module argument, the Variables a filter selects
-- ``nnx.Param`` unless a ``DiffState`` says otherwise.  Those Variables go
to ``jax.grad`` as a State; every other Variable rides along as a constant.
So the gradient for a Module comes back as a State of Params holding
gradients, exactly the shape of the Module's parameters:

>>> import jax, jax.numpy as jnp
>>> import nnx_edu as nnx
>>> model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
>>> grads = nnx.grad(lambda model, x: model(x).sum())(model, jnp.ones((1, 2)))
>>> jax.tree.map(jnp.shape, grads)
State({
  'bias': Param(
    value=(3,)
  ),
  'kernel': Param(
    value=(2, 3)
  )
})
"""

from __future__ import annotations

import dataclasses
import functools
import typing as tp

import jax

from nnx_edu.core import filters as filterlib
from nnx_edu.core.state import State
from nnx_edu.core.variable_types import Param
from nnx_edu.core.variables import Variable
from nnx_edu.transforms.lifting import (MISSING, SplitTree, is_graph_node, raw_value,
                                        refuse_bound_method, run_inside, split_tree, write_back)

__all__ = ['DiffState', 'grad', 'value_and_grad']


# -- grad ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class DiffState:
  """Differentiate argument ``argnum`` with respect to the Variables ``filter`` selects.

  Pass it in ``argnums``; a plain int ``i`` means ``DiffState(i, nnx.Param)``.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> model = nnx.Linear(2, 1, rngs=nnx.Rngs(0))
  >>> loss = lambda model: model(jnp.ones(2)).sum()
  >>> grads = nnx.grad(loss, argnums=nnx.DiffState(0, nnx.PathContains('bias')))(model)
  >>> list(grads)
  ['bias']
  """

  argnum: int
  filter: filterlib.Filter


def grad(f: tp.Callable | None = MISSING, *,
         argnums: int | DiffState | tp.Sequence[int | DiffState] = 0,
         has_aux: bool = False, holomorphic: bool = False, allow_int: bool = False):
  """``jax.grad`` for functions whose arguments may be Modules.

  The gradient for a Module argument is a ``State`` of its ``nnx.Param``
  Variables (or those a ``DiffState`` selects) holding the gradients.
  Anything else the function changes (BatchNorm statistics, Rngs counts)
  is written back into the Module.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> model = nnx.BatchNorm(2, rngs=nnx.Rngs(0))
  >>> grads = nnx.grad(lambda m, x: m(x).sum())(model, jnp.arange(4.0).reshape(2, 2))
  >>> sorted(grads), model.mean.value  # the running mean moved, outside too
  (['bias', 'scale'], Array([0.01, 0.02], dtype=float32))
  """
  if f is MISSING:
    return functools.partial(grad, argnums=argnums, has_aux=has_aux,
                             holomorphic=holomorphic, allow_int=allow_int)
  return _gradient(f, argnums, has_aux, holomorphic, allow_int, jax.grad)


def value_and_grad(f: tp.Callable | None = MISSING, *,
                   argnums: int | DiffState | tp.Sequence[int | DiffState] = 0,
                   has_aux: bool = False, holomorphic: bool = False, allow_int: bool = False):
  """``jax.value_and_grad`` for functions of Modules; see ``grad``.

  Returns ``(value, grads)``, or ``((value, aux), grads)`` with ``has_aux``.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> model = nnx.Linear(2, 1, rngs=nnx.Rngs(0))
  >>> loss, grads = nnx.value_and_grad(lambda m: (m(jnp.ones(2)) ** 2).sum())(model)
  >>> loss.shape, sorted(grads)
  ((), ['bias', 'kernel'])
  """
  if f is MISSING:
    return functools.partial(value_and_grad, argnums=argnums, has_aux=has_aux,
                             holomorphic=holomorphic, allow_int=allow_int)
  return _gradient(f, argnums, has_aux, holomorphic, allow_int, jax.value_and_grad)


def _gradient(f, argnums, has_aux, holomorphic, allow_int, transform):
  name = transform.__name__
  refuse_bound_method(f, name)
  label = f'nnx.{name}({getattr(f, "__name__", "f")})'  # for error messages
  single = isinstance(argnums, (int, DiffState))
  diffs = [a if isinstance(a, DiffState) else DiffState(a, Param)
           for a in ((argnums,) if single else argnums)]
  numbers = [d.argnum for d in diffs]
  if len(set(numbers)) != len(numbers):
    raise ValueError(f'nnx.{name}: argnums {numbers} names an argument twice.')

  @functools.wraps(f)
  def gradient_wrapper(*args: tp.Any, **kwargs: tp.Any):
    if max(numbers) >= len(args):
      raise TypeError(
          f'{label}: argnums {numbers} asks for argument '
          f'{max(numbers)} but only {len(args)} positional arguments were given. '
          'Differentiated arguments must be passed by position.'
      )
    split = split_tree((args, kwargs))
    diff_args, slots = _diff_arguments(split, args, diffs)
    values = split.values()

    def pure(*traced_args):
      leaves = list(values)
      for slot, leaf in zip(slots, jax.tree.leaves(traced_args, is_leaf=is_graph_node)):
        if slot is not None:
          leaves[slot] = leaf  # a Variable holding a tracer: the inner model uses it
      losses = []

      def call(tree):
        inner_args, inner_kwargs = tree
        inner_args = list(inner_args)
        for d, traced in zip(diffs, traced_args):  # plain arrays are differentiated too
          inner_args[d.argnum] = jax.tree.map(
              lambda node, x: node if is_graph_node(node) else x,
              inner_args[d.argnum], traced, is_leaf=is_graph_node)
        out = f(*inner_args, **inner_kwargs)
        if has_aux and not (isinstance(out, tuple) and len(out) == 2):
          raise TypeError(
              f'{label} with has_aux=True: the function must return '
              f'a pair (loss, aux), but it returned a {type(out).__name__}.')
        loss, aux = out if has_aux else (out, None)
        losses.append(loss)
        return aux

      after, others, changes = run_inside(split.structure, leaves, split.others, call)
      return losses[0], ([raw_value(leaf) for leaf in after], others, changes)

    gradded = transform(pure, argnums=tuple(range(len(diffs))), has_aux=True,
                        holomorphic=holomorphic, allow_int=allow_int)
    if transform is jax.value_and_grad:
      (loss, (new_values, others, changes)), grads = gradded(*diff_args)
    else:
      grads, (new_values, others, changes) = gradded(*diff_args)
    aux = write_back(split, changes, new_values, others)
    grads = grads[0] if single else grads
    if transform is jax.value_and_grad:
      return ((loss, aux) if has_aux else loss), grads
    return (grads, aux) if has_aux else grads

  return gradient_wrapper


def _diff_arguments(split: SplitTree, args: tuple, diffs: list[DiffState]):
  """What ``jax.grad`` sees: each differentiated argument with its graph nodes
  replaced by a State of their selected Variables.

  Also returns, for each leaf of those arguments, its index among
  ``split.leaves`` (``None`` for plain arrays).
  """
  nodes = list(split.objects[0])  # the List that split_tree flattened
  number: dict[int, int] = {}
  for k, node in enumerate(nodes):
    number.setdefault(id(node), k)
  predicate = {}  # node number -> the filter of the argument holding it
  for d in diffs:
    for node in jax.tree.leaves(args[d.argnum], is_leaf=is_graph_node):
      if is_graph_node(node):
        predicate.setdefault(number[id(node)], filterlib.to_predicate(d.filter))
  selected: dict[int, list] = {k: [] for k in predicate}
  slot_of: dict[int, int] = {}
  for j, (path, leaf) in enumerate(zip(split.paths, split.leaves)):
    k, relative = path[0], path[1:]
    # A Variable passed loose (alone, or in a State or list) is differentiated
    # whatever its type, as in Flax: the filter chooses among a node's Variables.
    if k in predicate and (isinstance(nodes[k], Variable) or predicate[k](relative, leaf)):
      selected[k].append((relative, leaf))
      slot_of[id(leaf)] = j

  def substitute(x):
    if not is_graph_node(x):
      return x
    pairs = selected[number[id(x)]]
    if isinstance(x, Variable):  # a Variable passed directly is its own gradient
      return pairs[0][1] if pairs else State({})
    return State.from_flat_path(pairs)

  diff_args = tuple(jax.tree.map(substitute, args[d.argnum], is_leaf=is_graph_node)
                    for d in diffs)
  slots = [slot_of.get(id(x)) for x in jax.tree.leaves(diff_args, is_leaf=is_graph_node)]
  return diff_args, slots
