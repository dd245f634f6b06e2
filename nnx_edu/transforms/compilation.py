"""Transforms -- compilation: ``nnx.jit`` and ``nnx.eval_shape``.

``nnx.jit`` is ``jax.jit`` lifted to functions of Modules (``lifting.py``): the
Modules among the arguments go in, whatever the function changed in them
comes back out.

>>> import jax.numpy as jnp
>>> import nnx_edu as nnx
>>> class Counter(nnx.Module):
...   def __init__(self):
...     self.calls = nnx.BatchStat(jnp.array(0))
...   def __call__(self, x):
...     self.calls.value += 1
...     return 2 * x
>>> counter = Counter()
>>> double = nnx.jit(lambda model, x: model(x))
>>> double(counter, jnp.ones(2))
Array([2., 2.], dtype=float32)
>>> int(counter.calls.value)
1

``nnx.jit`` runs once per training step, so it remembers the split of its
arguments from one call to the next (see ``JitWrapped``): on a model whose
structure has not changed, a call costs about what ``jax.jit`` of a pure
function of arrays costs.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import itertools
import typing as tp

import jax

from nnx_edu.core import graphwalk, pytrees
from nnx_edu.transforms.lifting import (MISSING, Changes, SplitTree, StaticAux, Structure, fill,
                                        is_graph_node, raw_value, refuse_bound_method, run_inside,
                                        split_tree, write_back)

__all__ = ['eval_shape', 'jit']


# -- jit -----------------------------------------------------------------------------
def jit(fun: tp.Callable | None = MISSING, *,
        static_argnums: int | tp.Sequence[int] | None = None,
        static_argnames: str | tp.Iterable[str] | None = None,
        donate_argnums: int | tp.Sequence[int] | None = None,
        donate_argnames: str | tp.Iterable[str] | None = None,
        keep_unused: bool = False, device: jax.Device | None = None,
        backend: str | None = None, inline: bool = False):
  """``jax.jit`` for functions whose arguments may be Modules.

  Use it as ``nnx.jit(f)``, ``@nnx.jit`` or ``@nnx.jit(static_argnums=...)``.
  The options mean what they mean for ``jax.jit``; donating a Module
  donates its Variables' arrays.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> @nnx.jit(static_argnames='scale')
  ... def forward(model, x, scale):
  ...   return scale * model(x)
  >>> forward(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), jnp.ones((1, 2)), scale=2).shape
  (1, 3)
  """
  options = dict(static_argnums=static_argnums, static_argnames=static_argnames,
                 donate_argnums=donate_argnums, donate_argnames=donate_argnames,
                 keep_unused=keep_unused, device=device, backend=backend, inline=inline)
  if fun is MISSING:
    return functools.partial(jit, **options)
  refuse_bound_method(fun, 'jit')
  return JitWrapped(fun, **options)


@dataclasses.dataclass(eq=False)
class _Recent:
  """A call ``JitWrapped`` remembers: valid while no structure has changed."""

  split: SplitTree
  compiled: tp.Callable
  version: int


class JitWrapped:
  """A function of Modules compiled with ``jax.jit``; ``nnx.jit`` makes it.

  Two caches make repeated calls cheap:

  * ``_compiled`` keeps one ``jax.jit`` of the pure function per argument
    structure (GraphDef, pytree structure, static arguments), so equal
    structures share compilations;
  * ``_recent`` remembers the split of the last few calls, keyed by the
    identity of the graph nodes passed.  It stays valid while
    ``pytrees.structure_version`` does not move -- no node gained, lost or
    replaced an attribute -- and then a call only reads the Variables'
    values, calls the compiled function and writes the new values back.

  Changes that bypass attribute assignment (a list marked ``nnx.data``
  edited in place, Variable metadata edited in place) are not noticed:
  assign the attribute again to make ``nnx.jit`` see them.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
  >>> step = nnx.jit(lambda model, x: model(x).sum())
  >>> _ = step(model, jnp.ones(2)); _ = step(model, jnp.ones(2))
  >>> len(step._compiled), len(step._recent)
  (1, 1)
  """

  MAX_RECENT = 8  # the cache holds its nodes alive, so keep it small

  def __init__(self, fun: tp.Callable, *, static_argnums, static_argnames, donate_argnums,
               donate_argnames, **jit_options: tp.Any):
    functools.update_wrapper(self, fun)
    self.fun = fun
    self.static_argnums, self.static_argnames = argnums_and_names(
        fun, static_argnums, static_argnames)
    self.donate_argnums, self.donate_argnames = argnums_and_names(
        fun, donate_argnums, donate_argnames)
    self.jit_options = jit_options
    self._compiled: dict[tp.Any, tp.Callable] = {}
    self._recent: dict[tp.Any, _Recent] = {}

  def __get__(self, obj: tp.Any, objtype: type | None = None):
    # Used as a method decorator: bind the instance as the first argument.
    return self if obj is None else functools.partial(self, obj)

  def __call__(self, *args: tp.Any, **kwargs: tp.Any) -> tp.Any:
    statics, dynamic = self._take_statics(args, kwargs)
    flat, treedef = jax.tree.flatten(dynamic, is_leaf=is_graph_node)
    key = (treedef, statics, *[id(x) if is_graph_node(x) else None for x in flat])
    recent = self._recent.get(key)
    if recent is None or recent.version != pytrees.structure_version:
      split = split_tree(dynamic)
      recent = _Recent(split, self._compile(split, statics, dynamic), -1)
    others = [x for x in flat if not is_graph_node(x)]
    values, others_out, changes, moved = recent.compiled(*recent.split.values(), *others)
    out = write_back(recent.split, changes, values, others_out, moved.value)
    self._remember(key, recent, changes)
    return out

  def _take_statics(self, args: tuple, kwargs: dict):
    """``(static arguments, (args, kwargs) without them)``."""
    if not (self.static_argnums or self.static_argnames):
      return (), (args, kwargs)
    statics = (tuple((i, args[i]) for i in self.static_argnums if i < len(args))
               + tuple((k, kwargs[k]) for k in self.static_argnames if k in kwargs))
    try:
      hash(statics)
    except TypeError:
      raise TypeError(
          f'nnx.jit({getattr(self.fun, "__name__", "f")}): static arguments must be hashable, got '
          f'{[type(v).__name__ for _, v in statics]}. Pass tuples instead of '
          'lists, or make the argument a regular (traced) one.'
      ) from None
    args = tuple(None if i in self.static_argnums else a for i, a in enumerate(args))
    kwargs = {k: v for k, v in kwargs.items() if k not in self.static_argnames}
    return statics, (args, kwargs)

  def _compile(self, split: SplitTree, statics: tuple, dynamic: tuple) -> tp.Callable:
    key = (split.structure, statics)
    if key not in self._compiled:
      pure = functools.partial(_pure_call, self.fun, split.structure, statics, len(split.leaves))
      donate = self._donated_positions(split, dynamic)
      self._compiled[key] = jax.jit(pure, donate_argnums=donate, **self.jit_options)
    return self._compiled[key]

  def _donated_positions(self, split: SplitTree, dynamic: tuple) -> tuple[int, ...]:
    """Which of the compiled function's inputs -- values, then others -- are donated."""
    if not (self.donate_argnums or self.donate_argnames):
      return ()
    args, kwargs = dynamic
    owners = [i for i, a in enumerate(args) for _ in jax.tree.leaves(a, is_leaf=is_graph_node)]
    owners += [k for k in sorted(kwargs) for _ in jax.tree.leaves(kwargs[k], is_leaf=is_graph_node)]
    donated = [o in self.donate_argnums or o in self.donate_argnames for o in owners]
    node_donated = [d for d, is_node in zip(donated, split.structure.node_mask) if is_node]
    other_donated = [d for d, is_node in zip(donated, split.structure.node_mask) if not is_node]
    flags = [node_donated[path[0]] for path in split.paths] + other_donated
    return tuple(i for i, flag in enumerate(flags) if flag)

  def _remember(self, key: tp.Any, recent: _Recent, changes: Changes) -> None:
    if not changes.unchanged:  # the split no longer describes the nodes
      self._recent.pop(key, None)
      return
    recent.version = pytrees.structure_version
    if self._recent.get(key) is not recent:  # a new entry, or one replacing a stale one
      self._recent[key] = recent
      if len(self._recent) > self.MAX_RECENT:
        del self._recent[next(iter(self._recent))]  # the oldest


def _pure_call(fun: tp.Callable, structure: Structure, statics: tuple, n_values: int,
               *leaves: tp.Any):
  """The pure function that ``jax.jit`` compiles: values and others in, the same out."""
  def call(tree):
    args, kwargs = tree
    args, kwargs = list(args), dict(kwargs)
    for where, value in statics:
      if isinstance(where, int):
        args[where] = value
      else:
        kwargs[where] = value
    return fun(*args, **kwargs)

  values = leaves[:n_values]
  after, others, changes = run_inside(structure, values, leaves[n_values:], call)
  new_values = [raw_value(leaf) for leaf in after]
  if not changes.unchanged:
    return new_values, others, changes, StaticAux(None)
  # Return only the values the function replaced: a Variable it only read
  # keeps its array, and JAX has fewer outputs to hand back.
  moved = tuple(new is not old for new, old in zip(new_values, values))
  return list(itertools.compress(new_values, moved)), others, changes, StaticAux(moved)


def argnums_and_names(fun: tp.Callable, argnums: tp.Any, argnames: tp.Any):
  """Complete ``argnums`` from ``argnames`` and back, via ``fun``'s signature, as jax.jit does.

  >>> argnums_and_names(lambda model, x, scale: None, None, 'scale')
  ((2,), ('scale',))
  """
  argnums = () if argnums is None else (argnums,) if isinstance(argnums, int) else tuple(argnums)
  argnames = () if argnames is None else (argnames,) if isinstance(argnames, str) else tuple(argnames)
  try:
    parameters = inspect.signature(fun).parameters.values()
  except (TypeError, ValueError):  # builtins and some callables have no signature
    return argnums, argnames
  positional = [p.name for p in parameters
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
  numbers = set(argnums) | {positional.index(n) for n in argnames if n in positional}
  names = set(argnames) | {positional[i] for i in argnums if i < len(positional)}
  return tuple(sorted(numbers)), tuple(sorted(names))


# -- eval_shape -------------------------------------------------------------------
def eval_shape(f: tp.Callable, *args: tp.Any, **kwargs: tp.Any) -> tp.Any:
  """Run ``f`` abstractly: no arrays are computed, only their shapes and dtypes.

  Modules in the output hold ``jax.ShapeDtypeStruct`` in their Variables, which
  is a cheap way to see what a model would look like.  The arguments are
  left as they were.

  >>> import nnx_edu as nnx
  >>> abstract = nnx.eval_shape(lambda: nnx.Linear(2, 3, rngs=nnx.Rngs(0)))
  >>> abstract.kernel.value
  ShapeDtypeStruct(shape=(2, 3), dtype=float32)
  """
  refuse_bound_method(f, 'eval_shape')
  split = split_tree((args, kwargs))

  def pure(values, others):
    after, others, changes = run_inside(split.structure, values, others,
                                        lambda tree: f(*tree[0], **tree[1]))
    return [raw_value(leaf) for leaf in after], others, changes

  values, others, changes = jax.eval_shape(pure, split.values(), split.others)
  values = iter(values)
  nodes = list(graphwalk.unflatten(changes.graphdef, lambda path: next(values)))
  return fill(changes.out_treedef, changes.out_node_mask, nodes[changes.n_inputs:], others)
