"""Transforms -- iteration: ``vmap`` and ``scan`` over Modules.

``nnx.vmap`` and ``nnx.scan`` lift ``jax.vmap`` and ``jax.lax.scan`` the
way ``nnx.jit`` lifts ``jax.jit`` (``lifting.py``, ``compilation.py``).  The new question is *which
axis* of each Variable is mapped or scanned over.  ``in_axes`` answers it
per argument, as in JAX: an int, ``None`` (not mapped: one value shared by
all) or, for scan, ``nnx.Carry``.  ``nnx.StateAxes`` answers it per kind of
Variable inside one Module, for example ``StateAxes({nnx.Param: 0, ...: None})``.

The classic use is a *stack of identical layers*.  ``vmap`` a constructor
over split random keys and get N layers at once (each Variable gains a
leading axis of size N); then ``scan`` over that axis in the forward pass,
so the loop body is compiled once, not N times:

>>> import jax, jax.numpy as jnp
>>> import nnx_edu as nnx
>>> class Block(nnx.Module):
...   def __init__(self, rngs):
...     self.linear = nnx.Linear(3, 3, rngs=rngs)
...   def __call__(self, x):
...     return jax.nn.relu(self.linear(x))
>>> @nnx.split_rngs(splits=4)
... @nnx.vmap(in_axes=(0,), out_axes=0)
... def create_stack(rngs):
...   return Block(rngs)
>>> stack = create_stack(nnx.Rngs(0))
>>> stack.linear.kernel.value.shape
(4, 3, 3)
>>> @nnx.scan(in_axes=(nnx.Carry, 0), out_axes=nnx.Carry)
... def forward(x, block):
...   return block(x)
>>> forward(jnp.ones((2, 3)), stack).shape
(2, 3)

``split_rngs`` is what makes the N layers different: it turns each random
stream into N streams for the duration of the call.
"""

from __future__ import annotations

import functools
import typing as tp
from collections import abc

import jax
import jax.numpy as jnp

from nnx_edu.core import filters as filterlib
from nnx_edu.core.graph import iter_graph
from nnx_edu.core.rngs import RngStream
from nnx_edu.transforms.lifting import (MISSING, StaticAux, is_graph_node, raw_value,
                                        refuse_bound_method, run_inside, split_tree, write_back)

__all__ = ['Carry', 'StateAxes', 'restore_rngs', 'scan', 'split_rngs', 'vmap']


class Carry:
  """Marks the loop carry in ``nnx.scan``'s ``in_axes`` and ``out_axes``.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> total = nnx.scan(lambda carry, x: carry + x, in_axes=(nnx.Carry, 0), out_axes=nnx.Carry)
  >>> total(jnp.zeros(()), jnp.arange(4.0))
  Array(6., dtype=float32)
  """


class StateAxes(abc.Mapping):
  """Axes for the Variables of one Module argument, chosen by filter.

  The first filter that selects a Variable gives its axis; end with
  ``...`` to cover the rest.

  >>> import nnx_edu as nnx
  >>> axes = nnx.StateAxes({nnx.Param: 0, ...: None})
  >>> axes
  StateAxes({<class 'nnx_edu.core.variable_types.Param'>: 0, Ellipsis: None})
  >>> axes.axis_of(('bias',), nnx.BatchStat(0.0)) is None
  True
  """

  def __init__(self, filter_axes: tp.Mapping | tp.Iterable[tuple[tp.Any, tp.Any]], /):
    pairs = tuple(filter_axes.items() if isinstance(filter_axes, abc.Mapping) else filter_axes)
    self.filters = tuple(f for f, _ in pairs)
    self.axes = tuple(a for _, a in pairs)
    self._predicates = filterlib.to_predicates(self.filters)

  def axis_of(self, path: tuple, leaf: tp.Any) -> tp.Any:
    """The axis of the Variable ``leaf`` found at ``path`` in the Module.

    >>> import nnx_edu as nnx
    >>> nnx.StateAxes({nnx.Param: 0, ...: None}).axis_of(('kernel',), nnx.Param(1.0))
    0
    """
    for predicate, axis in zip(self._predicates, self.axes):
      if predicate(path, leaf):
        return axis
    raise ValueError(
        f'{self!r} has no filter for the {type(leaf).__name__} at {path}. '
        'Add one, or end with `...: axis` to cover every other Variable.'
    )

  def __getitem__(self, key):
    return self.axes[self.filters.index(key)]

  def __iter__(self):
    return iter(self.filters)

  def __len__(self) -> int:
    return len(self.filters)

  def __eq__(self, other: object) -> bool:
    return isinstance(other, StateAxes) and (self.filters, self.axes) == (other.filters, other.axes)

  def __hash__(self) -> int:
    return hash((self.filters, self.axes))

  def __repr__(self) -> str:
    return f'StateAxes({dict(zip(self.filters, self.axes))})'


# -- axes, leaf by leaf -----------------------------------------------------------------
def _is_spec(x: tp.Any) -> bool:
  return x is None or x is Carry or isinstance(x, (int, StateAxes))


def leaf_specs(prefix: tp.Any, tree: tp.Any, where: str) -> list:
  """The axis spec of each leaf of ``tree`` (graph nodes count as leaves).

  ``prefix`` is read the way JAX reads ``in_axes``: one spec stands for a
  whole subtree.

  >>> leaf_specs((0, None), ([1, 2], 3), 'in_axes')
  [0, 0, None]
  """
  if isinstance(prefix, list):
    prefix = tuple(prefix)
  specs: list = []
  try:  # JAX pairs each spec with the subtree it covers; count that subtree's leaves
    jax.tree.map(lambda spec, sub: specs.extend(
        [spec] * len(jax.tree.leaves(sub, is_leaf=is_graph_node))), prefix, tree, is_leaf=_is_spec)
  except ValueError as error:
    raise ValueError(f'{where}={prefix!r} does not fit the values it describes: {error}') from None
  return specs


def _axis(spec: tp.Any, path: tuple, leaf: tp.Any) -> tp.Any:
  return spec.axis_of(path, leaf) if isinstance(spec, StateAxes) else spec


def plain_axes(specs: list, node_mask: tuple, where: str) -> list:
  """The specs of the leaves that are not graph nodes; StateAxes are for Modules only."""
  axes = [s for s, is_node in zip(specs, node_mask) if not is_node]
  if any(isinstance(a, StateAxes) for a in axes):
    raise ValueError(f'{where}: StateAxes is for Module arguments, but it was given for an array.')
  return axes


def _move(x: tp.Any, source: int, destination: int) -> tp.Any:
  return x if source == destination else jnp.moveaxis(x, source, destination)


# -- vmap ---------------------------------------------------------------------------------
def vmap(f: tp.Callable | None = MISSING, *, in_axes: tp.Any = 0, out_axes: tp.Any = 0,
         axis_name: tp.Hashable | None = None, axis_size: int | None = None,
         spmd_axis_name: tp.Any = None):
  """``jax.vmap`` for functions of Modules.

  A Module's Variables are mapped over the axis its ``in_axes`` entry gives
  (an int, ``None`` or a ``StateAxes``); Modules the function returns are
  stacked as ``out_axes`` says.  Keyword arguments are mapped over axis 0.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
  >>> batched = nnx.vmap(lambda model, x: model(x), in_axes=(None, 0))
  >>> batched(model, jnp.ones((5, 2))).shape
  (5, 3)
  """
  if f is MISSING:
    return functools.partial(vmap, in_axes=in_axes, out_axes=out_axes, axis_name=axis_name,
                             axis_size=axis_size, spmd_axis_name=spmd_axis_name)
  refuse_bound_method(f, 'vmap')

  @functools.wraps(f)
  def vmap_wrapper(*args: tp.Any, **kwargs: tp.Any):
    split = split_tree((args, kwargs))
    node_mask = split.structure.node_mask
    specs = leaf_specs((in_axes, 0), (args, kwargs), 'nnx.vmap: in_axes')
    input_node_specs = [s for s, is_node in zip(specs, node_mask) if is_node]

    def output_axes(changes, after) -> list:
      """Input Modules keep their in_axes; whatever ``f`` returns takes out_axes."""
      skeleton = changes.out_treedef.unflatten([0] * len(changes.out_node_mask))
      out_specs = leaf_specs(out_axes, skeleton, 'nnx.vmap: out_axes')
      node_specs = input_node_specs + [s for s, n in zip(out_specs, changes.out_node_mask) if n]
      return ([_axis(node_specs[p[0]], p[1:], leaf) for p, leaf in zip(changes.paths, after)]
              + plain_axes(out_specs, changes.out_node_mask, 'nnx.vmap: out_axes'))

    def call(tree):
      out = f(*tree[0], **tree[1])
      inputs = [x for x in jax.tree.leaves(tree, is_leaf=is_graph_node) if is_graph_node(x)]
      _check_one_axis_per_node(inputs, input_node_specs, out, out_axes)
      return out

    def pure(values, others):
      after, others_out, changes = run_inside(split.structure, values, others, call)
      axes = output_axes(changes, after)
      outputs = [raw_value(leaf) for leaf in after] + others_out
      mapped = [x for x, axis in zip(outputs, axes) if axis is not None]
      unmapped = [x for x, axis in zip(outputs, axes) if axis is None]
      return mapped, unmapped, changes, StaticAux(tuple(axes))

    value_axes = [_axis(input_node_specs[p[0]], p[1:], leaf)
                  for p, leaf in zip(split.paths, split.leaves)]
    mapped, unmapped, changes, axes = jax.vmap(
        pure, in_axes=(value_axes, plain_axes(specs, node_mask, 'nnx.vmap')),
        out_axes=(0, None, None, None), axis_name=axis_name, axis_size=axis_size,
        spmd_axis_name=spmd_axis_name)(split.values(), split.others)
    mapped, unmapped = iter(mapped), iter(unmapped)  # back in order, each on its axis
    outputs = [next(unmapped) if axis is None else _move(next(mapped), 0, axis)
               for axis in axes.value]
    n = len(changes.paths)
    return write_back(split, changes, outputs[:n], outputs[n:])

  return vmap_wrapper


def _check_one_axis_per_node(inputs: list, in_specs: list, out: tp.Any, out_axes: tp.Any) -> None:
  """A Module passed in and returned has one axis: out_axes may not contradict in_axes."""
  out_specs = leaf_specs(out_axes, out, 'nnx.vmap: out_axes')
  for node, spec in zip(jax.tree.leaves(out, is_leaf=is_graph_node), out_specs):
    for given, in_spec in zip(inputs, in_specs):
      if node is given and spec != in_spec:
        raise ValueError(
            f'nnx.vmap: a {type(node).__name__} passed with in_axes {in_spec!r} is '
            f'returned with out_axes {spec!r}, but one Module has one axis. Return a '
            'copy (nnx.clone) to give it a new axis.')


# -- scan ---------------------------------------------------------------------------------
def scan(f: tp.Callable | None = MISSING, *, length: int | None = None, reverse: bool = False,
         unroll: int | bool = 1, in_axes: tp.Any = (Carry, 0), out_axes: tp.Any = (Carry, 0)):
  """``jax.lax.scan`` for functions of Modules.

  Each argument is the loop carry (``nnx.Carry``, at most one), scanned over
  an axis (an int: each step sees one slice) or the same at every step
  (``None``).  ``out_axes`` says the same of the output: with the default
  ``(Carry, 0)`` the function returns ``(carry, y)`` and the ``y`` of all
  steps come out stacked.  Modules scanned over (a stack of layers) get
  their updated slices back stacked; changes to ``None`` Modules are
  discarded, as in Flax.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> cumsum = nnx.scan(lambda total, x: (total + x, total + x))
  >>> cumsum(jnp.zeros(()), jnp.arange(4.0))
  (Array(6., dtype=float32), Array([0., 1., 3., 6.], dtype=float32))
  """
  if f is MISSING:
    return functools.partial(scan, length=length, reverse=reverse, unroll=unroll,
                             in_axes=in_axes, out_axes=out_axes)
  refuse_bound_method(f, 'scan')
  in_carry = Carry in jax.tree.leaves(in_axes, is_leaf=_is_spec)
  if in_carry != (Carry in jax.tree.leaves(out_axes, is_leaf=_is_spec)):
    raise ValueError(
        f'nnx.scan: in_axes={in_axes!r} and out_axes={out_axes!r} must both have '
        'nnx.Carry or both not: the carry the function receives is the carry it returns.'
    )

  @functools.wraps(f)
  def scan_wrapper(*args: tp.Any, **kwargs: tp.Any):
    split = split_tree((args, kwargs))
    node_mask = split.structure.node_mask
    specs = leaf_specs((in_axes, None), (args, kwargs), 'nnx.scan: in_axes')
    node_specs = [s for s, is_node in zip(specs, node_mask) if is_node]
    kinds = [_axis(node_specs[p[0]], p[1:], leaf) for p, leaf in zip(split.paths, split.leaves)]
    other_kinds = plain_axes(specs, node_mask, 'nnx.scan')
    values = split.values()
    carry = (_carry_part(values, kinds), _carry_part(split.others, other_kinds))
    xs = ([_move(v, k, 0) for v, k in zip(values, kinds) if _scanned(k)],
          [_move(o, k, 0) for o, k in zip(split.others, other_kinds) if _scanned(k)])

    def body(carry, x):
      leaves = _step_inputs(kinds, carry[0], x[0], values)
      others = _step_inputs(other_kinds, carry[1], x[1], split.others)
      after, others_out, changes = run_inside(split.structure, leaves, others,
                                              lambda tree: f(*tree[0], **tree[1]))
      after_kinds = _check_scan_changes(split, kinds, node_specs, changes, after)
      skeleton = changes.out_treedef.unflatten([0] * len(changes.out_node_mask))
      out_kinds = plain_axes(leaf_specs(out_axes, skeleton, 'nnx.scan: out_axes'),
                             changes.out_node_mask, 'nnx.scan: out_axes')
      if None in out_kinds:
        raise ValueError('nnx.scan: out_axes=None is not allowed: every output is '
                         'either the carry or stacked over the steps.')
      after = [raw_value(leaf) for leaf in after]
      new_carry = (_carry_part(after, after_kinds), _carry_part(others_out, out_kinds))
      if len(new_carry[1]) != len(carry[1]):
        raise ValueError(
            f'nnx.scan: the function got a carry of {len(carry[1])} arrays but returned '
            f'one of {len(new_carry[1])}. Return the carry in the shape it came in.')
      ys = ([v for v, k in zip(after, after_kinds) if _scanned(k)],
            [o for o, k in zip(others_out, out_kinds) if _scanned(k)])
      return new_carry, (ys, changes, StaticAux((tuple(after_kinds), tuple(out_kinds))))

    carry, (ys, changes, kinds_out) = jax.lax.scan(
        body, carry, xs, length=length, reverse=reverse, unroll=unroll)
    after_kinds, out_kinds = kinds_out.value
    before = dict(zip(split.paths, values))  # None Modules keep their values
    after = _loop_outputs(after_kinds, carry[0], ys[0],
                     [before.get(p) for p in changes.paths])
    others_out = _loop_outputs(out_kinds, carry[1], ys[1], [])
    return write_back(split, changes, after, others_out)

  return scan_wrapper


def _scanned(kind: tp.Any) -> bool:
  return kind is not None and kind is not Carry


def _carry_part(items: tp.Sequence, kinds: tp.Sequence) -> list:
  """The items that are part of the loop carry."""
  return [item for item, k in zip(items, kinds) if k is Carry]


def _step_inputs(kinds: tp.Sequence, carried: tp.Sequence, sliced: tp.Sequence,
                 constant: tp.Sequence) -> list:
  """One loop step's inputs: from the carry, the current slice, or the constants."""
  carried, sliced = iter(carried), iter(sliced)
  return [next(carried) if k is Carry else constant[i] if k is None else next(sliced)
          for i, k in enumerate(kinds)]


def _loop_outputs(kinds: tp.Sequence, carried: tp.Sequence, stacked: tp.Sequence,
                  constant: tp.Sequence) -> list:
  """After the loop: final carry, stacked slices moved back to their axis, or constants."""
  carried, stacked = iter(carried), iter(stacked)
  return [next(carried) if k is Carry else constant[i] if k is None
          else _move(next(stacked), 0, k) for i, k in enumerate(kinds)]


def _check_scan_changes(split, kinds, node_specs, changes, after) -> list:
  """The kind of each leaf after a step; the carry and constants must keep their leaves."""
  if len(changes.paths) and changes.paths[-1][0] >= changes.n_inputs:
    raise ValueError('nnx.scan: the function returned a new Module. Only the carry may '
                     'hold Modules, and they must be the ones passed in.')
  after_kinds = [_axis(node_specs[p[0]], p[1:], leaf) for p, leaf in zip(changes.paths, after)]
  for kind in (Carry, None):
    was = [p for p, k in zip(split.paths, kinds) if k is kind]
    now = [p for p, k in zip(changes.paths, after_kinds) if k is kind]
    if was != now:
      name = 'the carry' if kind is Carry else 'a Module with in_axes None'
      raise ValueError(
          f'nnx.scan: inside the loop, {name} changed its Variables (before: {was[:4]}, '
          f'after: {now[:4]}). Only Modules scanned over an axis may gain Variables, '
          'for example with sow.')
  return after_kinds


# -- split_rngs ---------------------------------------------------------------------------
class SplitBackups(list):
  """The streams ``split_rngs`` changed, with their old key and count.

  ``restore_rngs`` puts them back; used in a ``with`` block it does so at the end.

  >>> import nnx_edu as nnx
  >>> rngs = nnx.Rngs(0)
  >>> with nnx.split_rngs(rngs, splits=2) as backups:
  ...   len(backups)
  1
  """

  def __enter__(self) -> SplitBackups:
    return self

  def __exit__(self, *exc_info: object) -> None:
    restore_rngs(self)


def split_rngs(node: tp.Any = MISSING, /, *, splits: int | tuple[int, ...],
               only: filterlib.Filter = ..., squeeze: bool = False):
  """Make each RNG stream in ``node`` hand out ``splits`` keys at once.

  Each selected stream draws one key, splits it into ``splits`` keys and
  restarts its count, so that ``nnx.vmap`` over axis 0 gives every
  instance its own stream.  Returns the backups for ``restore_rngs``.
  Without ``node`` it is a decorator: the streams among the arguments are
  split for the call and restored after it.

  >>> import nnx_edu as nnx
  >>> rngs = nnx.Rngs(params=0, dropout=1)
  >>> with nnx.split_rngs(rngs, splits=5, only='params'):
  ...   rngs.params.key.value.shape, rngs.dropout.key.value.shape
  ((5,), ())
  >>> rngs.params.key.value.shape, int(rngs.params.count.value)
  ((), 1)
  """
  if node is MISSING:
    def decorator(f):
      @functools.wraps(f)
      def split_rngs_wrapper(*args: tp.Any, **kwargs: tp.Any):
        with split_rngs((args, kwargs), splits=splits, only=only, squeeze=squeeze):
          return f(*args, **kwargs)

      return split_rngs_wrapper

    return decorator
  if squeeze and splits != 1:
    raise ValueError(f'split_rngs: squeeze=True needs splits=1, got splits={splits}.')
  predicate = filterlib.to_predicate(only)
  backups = SplitBackups()
  for path, stream in _streams(node):
    if not (predicate((*path, 'key'), stream.key) and predicate((*path, 'count'), stream.count)):
      continue
    keys = jax.random.split(stream(), splits)  # after stream(): its count moved on
    backups.append((stream, stream.key.value, stream.count.value))
    shape = (splits,) if isinstance(splits, int) else tuple(splits)
    stream.key.value = keys[0] if squeeze else keys
    stream.count.value = jnp.zeros(stream.count.shape if squeeze else shape + stream.count.shape,
                                   dtype=jnp.uint32)
  return backups


def _streams(tree: tp.Any):
  """``(path, stream)`` for every RngStream in the graph nodes of ``tree``, once each."""
  seen: set[int] = set()
  for node in jax.tree.leaves(tree, is_leaf=is_graph_node):
    if is_graph_node(node) and not isinstance(node, jax.Array):
      for path, value in iter_graph(node) if not isinstance(node, RngStream) else [((), node)]:
        if isinstance(value, RngStream) and id(value) not in seen:
          seen.add(id(value))
          yield path, value


def restore_rngs(backups: tp.Iterable, /) -> None:
  """Give the streams that ``split_rngs`` changed their old key and count back.

  >>> import nnx_edu as nnx
  >>> rngs = nnx.Rngs(0)
  >>> backups = nnx.split_rngs(rngs, splits=3)
  >>> nnx.restore_rngs(backups)
  >>> rngs.default.key.value.shape
  ()
  """
  for stream, key, count in backups:
    stream.key.value = key
    stream.count.value = count
