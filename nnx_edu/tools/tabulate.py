"""Tools -- a summary table of a Module: ``nnx.tabulate``.

``nnx.tabulate(model, x)`` calls the model on ``x`` and draws a table with
one row per call of a Module (or of one of its public methods): its path in
the model, its type, what went in and what came out, and, for each Variable
type, the shapes of the Module's own Variables and the element count and
bytes of the Module and everything below it.  A last row holds the totals.

It puts earlier chapters together:

* the model runs *abstractly*: ``jax.eval_shape`` of a ``split`` and
  ``merge`` (``core/graph.py``).  Shapes and dtypes flow through every layer, no
  number is computed, and the model is left as it was;
* to see the calls, the public methods (and ``__call__``) of every class in
  the model are wrapped while it runs.  Each node of the model carries a tag,
  a static attribute that survives split and merge, saying which node it is;
* the counts are ``SizeBytes`` (``core/reprs.py``), summed per Variable type as in a
  Module's repr (``core/objects.py``): RNG state counts as one type, and a node shared
  by two parents counts once, under the first path that reaches it.

The table is the one Flax draws with ``rich`` (without its colours), so the
same model gives the same rows and numbers in both.

>>> import jax.numpy as jnp
>>> import nnx_edu as nnx
>>> rngs = nnx.Rngs(0)
>>> model = nnx.Sequential(nnx.Linear(2, 4, rngs=rngs), nnx.relu, nnx.Linear(4, 1, rngs=rngs))
>>> print(nnx.tabulate(model, jnp.ones((8, 2))))
                              Sequential Summary
┏━━━━━━━━━━┳━━━━━━━━━━━━┳━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━┓
┃ path     ┃ type       ┃ inputs       ┃ outputs      ┃ Param                ┃
┡━━━━━━━━━━╇━━━━━━━━━━━━╇━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━┩
│          │ Sequential │ float32[8,2] │ float32[8,1] │ 17 (68 B)            │
├──────────┼────────────┼──────────────┼──────────────┼──────────────────────┤
│ layers/0 │ Linear     │ float32[8,2] │ float32[8,4] │ bias: float32[4]     │
│          │            │              │              │ kernel: float32[2,4] │
│          │            │              │              │                      │
│          │            │              │              │ 12 (48 B)            │
├──────────┼────────────┼──────────────┼──────────────┼──────────────────────┤
│ layers/2 │ Linear     │ float32[8,4] │ float32[8,1] │ bias: float32[1]     │
│          │            │              │              │ kernel: float32[4,1] │
│          │            │              │              │                      │
│          │            │              │              │ 5 (20 B)             │
├──────────┼────────────┼──────────────┼──────────────┼──────────────────────┤
│          │            │              │        Total │ 17 (68 B)            │
└──────────┴────────────┴──────────────┴──────────────┴──────────────────────┘
<BLANKLINE>
                         Total Parameters: 17 (68 B)
<BLANKLINE>

``nnx.relu`` is a plain function, not a Module, so it has no row.  The text
itself -- cells and box -- is drawn by the previous chapter, ``text_table.py``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import itertools
import typing as tp

import jax
import jax.numpy as jnp

from nnx_edu.core import graph
from nnx_edu.core.filters import sort_key
from nnx_edu.core.objects import Pytree, children_of, is_node_like, stat_group
from nnx_edu.core.reprs import SizeBytes
from nnx_edu.core.rngs import RngStream
from nnx_edu.core.variables import Variable
from nnx_edu.tools.text_table import cell_text, draw_table, inputs_text, is_array

__all__ = ['tabulate']

Path = tuple[tp.Any, ...]
TAG = '_nnx_tabulate_id'  # the static attribute that says which node a copy is
_runs = itertools.count()  # tags differ between runs, so no jit cache is reused


@dataclasses.dataclass
class CallInfo:
  """One recorded call: one row of the table (the fields of Flax's, for ``row_filter``).

  ``outputs`` holds ``jax.ShapeDtypeStruct`` where the call returned arrays.

  >>> from nnx_edu.tools.tabulate import CallInfo, filter_rng_streams
  >>> import nnx_edu as nnx
  >>> row = CallInfo(0, 0, nnx.RngStream, ('rngs',), '', None)
  >>> filter_rng_streams(row)
  False
  """

  call_order: int
  object_id: int
  type: type
  path: Path
  inputs_repr: str
  outputs: tp.Any
  flops: int | None = None
  vjp_flops: int | None = None


def filter_rng_streams(row: CallInfo) -> bool:
  """The default ``row_filter``: leave out the calls that draw random keys.

  >>> import nnx_edu as nnx
  >>> filter_rng_streams(CallInfo(0, 0, nnx.Linear, ('layer',), '', None))
  True
  """
  return not issubclass(row.type, RngStream)


def tabulate(obj: Pytree, *input_args: tp.Any, depth: int | None = None,
             method: str = '__call__',
             row_filter: tp.Callable[[CallInfo], bool] = filter_rng_streams,
             table_kwargs: tp.Mapping[str, tp.Any] | None = None,
             column_kwargs: tp.Mapping[str, tp.Any] | None = None,
             console_kwargs: tp.Mapping[str, tp.Any] | None = None,
             compute_flops: bool = False, compute_vjp_flops: bool = False,
             **input_kwargs: tp.Any) -> str:
  """A text table summarising ``obj`` called on the inputs.

  Args:
    obj: the Module (or other graph node) to summarise.
    *input_args, **input_kwargs: what to call ``obj.<method>`` with: arrays
      (or ``jax.ShapeDtypeStruct``) and plain Python values.
    depth: show only the rows at most this deep (the model itself is depth
      0, its attributes depth 1, ...); ``None`` shows all.
    method: the method to call, ``'__call__'`` by default.
    row_filter: which rows to keep; by default all but the RNG streams'.
    table_kwargs, column_kwargs, console_kwargs: Flax's options for ``rich``;
      nnx_edu draws plain text and refuses them.
    compute_flops, compute_vjp_flops: add a column with XLA's estimate of
      the floating-point operations of each call, forward (``flops``) or
      forward and backward (``vjp_flops``).  Each row is then compiled on
      its own, which takes longer.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> table = nnx.tabulate(nnx.Linear(3, 2, rngs=nnx.Rngs(0)), jnp.ones((1, 3)))
  >>> print(table.splitlines()[-1].strip())
  Total Parameters: 8 (32 B)
  """
  _refuse_rich_options(table_kwargs, column_kwargs, console_kwargs)
  if not isinstance(obj, Pytree):
    raise TypeError(
        f'tabulate summarises a Module (or another graph node), got a '
        f'{type(obj).__name__}. Pass the model: nnx.tabulate(model, x).'
    )
  if not hasattr(obj, method):
    raise AttributeError(
        f'tabulate: {type(obj).__name__} has no method {method!r} to call. '
        "Leave method='__call__' or name one the model has."
    )
  model = graph.clone(obj)  # the tags go on a copy; obj is not touched
  input_args, input_kwargs = jax.tree.map(  # nor are Rngs (or Modules) passed as inputs
      lambda x: graph.clone(x) if isinstance(x, Pytree) else x, (input_args, input_kwargs),
      is_leaf=lambda x: isinstance(x, Pytree))
  nodes = _collect(model)
  run = next(_runs)
  for node_id, node in nodes.items():
    if isinstance(node.node, Pytree):
      vars(node.node)[TAG] = (run, node_id)
  recorder = _Recorder(run, nodes, compute_flops, compute_vjp_flops)
  with recorder.watching({type(node.node) for node in nodes.values()}):
    call, inputs = _as_pure(_caller(method), model, input_args, input_kwargs)
    jax.eval_shape(call, *inputs)
  rows = sorted(recorder.rows, key=lambda row: row.call_order)
  rows = [row for row in rows if (depth is None or len(row.path) <= depth) and row_filter(row)]
  flops = ['flops'] * compute_flops + ['vjp_flops'] * compute_vjp_flops
  return _render(type(obj).__name__, nodes, id(model), rows, flops)


def _refuse_rich_options(*options: tp.Any) -> None:
  if any(options):
    raise TypeError(
        'tabulate: table_kwargs, column_kwargs and console_kwargs are options '
        "of the 'rich' library, which Flax draws its table with. nnx_edu "
        'draws plain text and has no such options; leave them out.'
    )


# -- what each node holds ---------------------------------------------------------
@dataclasses.dataclass
class _Node:
  node: tp.Any
  path: Path
  sizes: dict[str, SizeBytes]  # per Variable type: this node and all below
  variables: dict[str, dict[tp.Any, Variable]]  # per Variable type: its own


def _collect(root: Pytree) -> dict[int, _Node]:
  """``{id(node): _Node}`` for every graph node; children in sorted key order."""
  nodes: dict[int, _Node] = {}
  seen: set[int] = set()

  def visit(value: tp.Any, path: Path) -> _Node:
    here = nodes[id(value)] = _Node(value, path, {}, {})
    seen.add(id(value))
    for key, child in sorted(children_of(value).items(), key=lambda kv: sort_key(kv[0])):
      if id(child) in seen:  # shared: counted where it was first reached
        continue
      if isinstance(child, Variable):
        seen.add(id(child))
        group = stat_group(type(child))
        here.variables.setdefault(group, {})[key] = child
        _add(here.sizes, {group: SizeBytes.of(child.get_raw_value())})
      elif is_node_like(child):
        _add(here.sizes, visit(child, (*path, key)).sizes)
    return here

  visit(root, ())
  return nodes


def _add(totals: dict[str, SizeBytes], sizes: dict[str, SizeBytes]) -> None:
  for group, size in sizes.items():
    totals[group] = totals[group] + size if group in totals else size


def _variable_groups(nodes: dict[int, _Node]) -> list[str]:
  return sorted({group for node in nodes.values() for group in node.variables})


# -- watching the calls ------------------------------------------------------------
class _Recorder:
  """Wraps the public methods of the model's classes and records each call."""

  def __init__(self, run: int, nodes: dict[int, _Node], flops: bool, vjp_flops: bool):
    self.run, self.nodes, self.flops, self.vjp_flops = run, nodes, flops, vjp_flops
    self.paused = False  # while compiling a call to count its flops
    self.rows: list[CallInfo] = []
    self.seen: set[tuple[str, int]] = set()
    self.order = itertools.count()

  @contextlib.contextmanager
  def watching(self, classes: set[type]) -> tp.Iterator[None]:
    """While inside, every public method (and ``__call__``) of ``classes`` is recorded."""
    methods = {(cls, name): fn for cls in classes
               for name, fn in inspect.getmembers(cls, inspect.isfunction)
               if (name == '__call__' or not name.startswith('_'))
               and not isinstance(inspect.getattr_static(cls, name), (staticmethod, classmethod))}
    # All found before any is replaced, so that a subclass wraps the original.
    own = {(cls, name): cls.__dict__.get(name) for cls, name in methods}
    for (cls, name), fn in methods.items():
      setattr(cls, name, self.wrap(fn, name))
    try:
      yield
    finally:
      for (cls, name), original in own.items():
        if original is None:  # inherited: remove the wrapper to uncover it
          delattr(cls, name)
        else:
          setattr(cls, name, original)

  def wrap(self, fn: tp.Callable, name: str) -> tp.Callable:
    @functools.wraps(fn)
    def recorded(obj: tp.Any, *args: tp.Any, **kwargs: tp.Any) -> tp.Any:
      tag = vars(obj).get(TAG)
      if tag is None or tag[0] != self.run or self.paused:  # not for the table
        return fn(obj, *args, **kwargs)
      path = self.nodes[tag[1]].path
      path = path if name == '__call__' else (*path, name)
      order = next(self.order)  # taken before the call: rows read top-down
      inputs = inputs_text(args, kwargs)
      try:
        out = fn(obj, *args, **kwargs)
      except Exception as error:
        _note_where(error, path, type(obj), inputs)
        raise
      if (inputs, tag[1]) not in self.seen:  # the same call twice is one row
        self.seen.add((inputs, tag[1]))
        self.rows.append(CallInfo(order, tag[1], type(obj), path, inputs, _abstract(out),
                                  self.count_flops(fn, obj, args, kwargs, self.flops, False),
                                  self.count_flops(fn, obj, args, kwargs, self.vjp_flops, True)))
      return out

    return recorded

  def count_flops(self, fn: tp.Callable, obj: Pytree, args: tuple, kwargs: dict,
                  wanted: bool, backward: bool) -> int | None:
    """XLA's count of the floating-point operations of one call (and of its vjp)."""
    if not wanted:
      return None
    forward, inputs = _as_pure(fn, obj, args, kwargs)

    def forward_and_back(*inputs: tp.Any) -> tp.Any:
      out, pullback = jax.vjp(forward, *inputs)
      return pullback(out)

    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), inputs)
    self.paused = True
    try:
      lowered = jax.jit(forward_and_back if backward else forward).lower(*abstract)
    finally:
      self.paused = False
    cost = lowered.cost_analysis() or lowered.compile().cost_analysis()
    return int(cost.get('flops', 0)) if cost else 0


def _note_where(error: Exception, path: Path, cls: type, inputs: str) -> None:
  """Say which row failed, once: the innermost call is the one to look at."""
  if any(note.startswith('nnx.tabulate:') for note in getattr(error, '__notes__', ())):
    return
  where = '/'.join(map(str, path)) or '(the model itself)'
  error.add_note(f'nnx.tabulate: raised in the call of {where} ({cls.__name__}) '
                 f'with inputs {" ".join(inputs.split())}')


def _caller(method: str) -> tp.Callable[..., None]:
  def call(module: Pytree, *args: tp.Any, **kwargs: tp.Any) -> None:
    getattr(module, method)(*args, **kwargs)  # the rows are what we want, not the result

  return call


def _as_pure(fn: tp.Callable, node: Pytree, args: tuple, kwargs: dict):
  """``fn(node, *args, **kwargs)`` as a pure function of ``(state, arrays)``, and those.

  Only the arrays among the inputs become its arguments; other values
  (flags, sizes) stay as they are, so the model can branch on them.
  """
  graphdef, state = graph.split(node)
  leaves, treedef = jax.tree.flatten((args, kwargs))
  traced = [i for i, leaf in enumerate(leaves) if is_array(leaf)]

  def pure(state: tp.Any, arrays: list) -> tp.Any:
    filled = list(leaves)
    for i, array in zip(traced, arrays):
      filled[i] = array
    args, kwargs = jax.tree.unflatten(treedef, filled)
    return fn(graph.merge(graphdef, state), *args, **kwargs)

  return pure, (state, [leaves[i] for i in traced])


def _abstract(out: tp.Any) -> tp.Any:
  """An output with arrays (and Python numbers, which jit makes arrays) as ShapeDtypeStructs."""
  def shape_of(x: tp.Any) -> tp.Any:
    if is_array(x) or isinstance(x, (bool, int, float, complex)):
      return jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x))
    return x

  return jax.tree.map(shape_of, out, is_leaf=lambda x: isinstance(x, Pytree))


# -- the table ---------------------------------------------------------------------
def _render(name: str, nodes: dict[int, _Node], root: int, rows: list[CallInfo],
            flops: list[str]) -> str:
  groups = _variable_groups(nodes)
  header = ['path', 'type', 'inputs', 'outputs', *flops, *groups]
  body = [['/'.join(map(str, row.path)), row.type.__name__, row.inputs_repr, cell_text(row.outputs),
           *(str(getattr(row, column)) for column in flops),
           *(_variables_cell(nodes[row.object_id], group) for group in groups)]
          for row in rows]
  sizes = nodes[root].sizes
  footer = [''] * (3 + len(flops)) + ['Total', *(repr(sizes[group]) for group in groups)]
  total = sum(sizes.values(), SizeBytes(0, 0))
  return draw_table(f'{name} Summary', header, body, footer, f'Total Parameters: {total!r}')


def _variables_cell(node: _Node, group: str) -> str:
  """A node's own Variables of one type (shape, and metadata if any), then the total."""
  shown = {}
  for key, variable in node.variables.get(group, {}).items():
    value = variable.get_raw_value()
    metadata = {k: v for k, v in variable.get_metadata().items() if k != 'eager_sharding'}
    if metadata:
      shown[key] = {'value': value if is_array(value) else '', **metadata}
    elif is_array(value):
      shown[key] = value
  text = cell_text(shown) + '\n\n' if shown else ''
  size = node.sizes.get(group)
  return text + repr(size) if size else text
