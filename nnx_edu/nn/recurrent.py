"""Layers -- running a cell over time: RNN and Bidirectional.

A cell (``recurrent_cells.py``) does one step.  ``RNN(cell)`` runs it over every step of a
sequence with ``nnx.scan`` (``transforms/iteration.py``): the carry goes from step to step,
the outputs of all steps are stacked along the time axis.  ``nnx.scan``
rather than a Python loop means the step is traced once, however long the
sequence; ``nnx.scan`` rather than ``jax.lax.scan`` means the cell's own
Variables travel with the carry, so a cell that updates state (a counter, a
Dropout's RNG stream) keeps its updates.

Shapes: ``(*batch, time, features)``, or ``(time, *batch, features)`` with
``time_major=True``.  Sequences of different lengths are padded to one
length and passed with ``seq_lengths``; padding comes after the real steps.
Two things then need the lengths:

* ``reverse=True`` reads each sequence backwards, *without* reading its
  padding first: ``flip_sequences`` reverses the first ``length`` steps.
* ``return_carry=True`` returns, for each sequence, the carry after its last
  real step, not after the padding.

``Bidirectional`` runs one RNN forwards and one backwards over the same
input and merges their outputs, so every step sees its past and its future.

>>> import jax.numpy as jnp
>>> import nnx_edu as nnx
>>> rnn = nnx.RNN(nnx.LSTMCell(3, 4, rngs=nnx.Rngs(0)), return_carry=True)
>>> (c, h), y = rnn(jnp.ones((2, 5, 3)), seq_lengths=jnp.array([5, 2]))
>>> y.shape, h.shape
((2, 5, 4), (2, 4))
>>> bool((h[1] == y[1, 1]).all())   # the second sequence ended at step 2
True
"""

from __future__ import annotations

import logging
import typing as tp

import jax
import jax.numpy as jnp

from nnx_edu.core.filters import All, Filter
from nnx_edu.core.module import Module
from nnx_edu.core.pytrees import data
from nnx_edu.core.rngs import Rngs, RngState, RngStream
from nnx_edu.nn.common import Array
from nnx_edu.nn.recurrent_cells import RNNCellBase
from nnx_edu.transforms.iteration import Carry, StateAxes, scan, split_rngs

__all__ = ['RNN', 'Bidirectional']

CallRngs = Rngs | RngStream | None


def flip_sequences(inputs: Array, seq_lengths: Array | None, num_batch_dims: int,
                   time_major: bool) -> Array:
  """Reverse each sequence's first ``length`` steps along the time axis.

  Step ``t`` of a sequence of length ``L`` takes step ``(L - 1 - t) mod T``:
  the real steps are reversed and stay in front; the padding behind them is
  reversed among itself.  Without ``seq_lengths`` the whole axis is flipped.

  >>> import jax.numpy as jnp
  >>> inputs = jnp.array([[1, 0, 0], [2, 3, 0], [4, 5, 6]])
  >>> flip_sequences(inputs, jnp.array([1, 2, 3]), num_batch_dims=1, time_major=False)
  Array([[1, 0, 0],
         [3, 2, 0],
         [6, 5, 4]], dtype=int32)
  """
  time_axis = 0 if time_major else num_batch_dims
  if seq_lengths is None:
    return jnp.flip(inputs, axis=time_axis)
  steps = inputs.shape[time_axis]
  t = jnp.arange(steps)
  lengths = jnp.expand_dims(seq_lengths, time_axis)  # time axis of size 1
  # t runs along the time axis; the batch axes come from the lengths
  t = jnp.reshape(t, [steps if axis == time_axis else 1 for axis in range(lengths.ndim)])
  source = (lengths + (steps - 1 - t)) % steps  # (L - 1 - t) mod T, without negatives
  source = jnp.reshape(source, source.shape + (1,) * (inputs.ndim - source.ndim))  # features
  return jnp.take_along_axis(inputs, source, axis=time_axis)


def _last_real_carry(carries: tp.Any, seq_lengths: Array) -> tp.Any:
  """From carries stacked over time (axis 0), each sequence's carry at step length - 1."""
  # One index array per batch axis, shaped to broadcast against seq_lengths.
  batch_index = jnp.indices(seq_lengths.shape, sparse=True)
  return jax.tree.map(lambda x: x[(seq_lengths - 1, *batch_index)], carries)


def _shapes(tree: tp.Any) -> tp.Any:
  return jax.tree.map(lambda x: tuple(jnp.shape(x)), tree)


def _types(tree: tp.Any) -> str:
  return ', '.join(f'{jnp.dtype(x.dtype).name}{list(x.shape)}' for x in jax.tree.leaves(tree))


class RNN(Module):
  """Run a recurrent cell over every step of a sequence.

  Args:
    cell: an ``RNNCellBase`` (``SimpleCell``, ``GRUCell``, ``LSTMCell``, ...).
    time_major: inputs are ``(time, *batch, features)`` instead of
      ``(*batch, time, features)``.
    return_carry: return ``(final_carry, outputs)`` instead of ``outputs``.
    reverse: read the sequences backwards (respecting ``seq_lengths``).
    keep_order: with ``reverse``, flip the outputs back so that output ``t``
      belongs to input ``t``.
    unroll: how many steps ``jax.lax.scan`` unrolls per loop iteration.
    state_axes: how the cell's Variables are scanned, an ``nnx.StateAxes``
      of filters to ``nnx.Carry`` / ``None`` / an axis (default:
      ``StateAxes({...: nnx.Carry})``, everything is carried).
    broadcast_rngs: a filter of the cell's RNG streams that give every step
      the *same* keys (e.g. one dropout mask for the whole sequence).
    rngs: the stream ``initialize_carry`` draws from: ``True`` a new
      ``'carry'`` stream seeded 0, ``nnx.Rngs`` a fork of its ``carry``
      stream, ``False`` none (pass ``rngs`` or ``initial_carry`` per call).

  All call arguments but ``inputs`` are keywords; ``return_carry``,
  ``time_major``, ``reverse`` and ``keep_order`` override the constructor's.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> rnn = nnx.RNN(nnx.GRUCell(3, 4, rngs=nnx.Rngs(0)))
  >>> rnn(jnp.ones((2, 7, 3))).shape      # (batch, time, hidden)
  (2, 7, 4)
  """

  def __init__(self, cell: RNNCellBase, *, time_major: bool = False,
               return_carry: bool = False, reverse: bool = False, keep_order: bool = False,
               unroll: int = 1, state_axes: tp.Mapping[Filter, tp.Any] | None = None,
               broadcast_rngs: Filter = None, rngs: Rngs | bool = True):
    self.cell = cell
    self.time_major = time_major
    self.return_carry = return_carry
    self.reverse = reverse
    self.keep_order = keep_order
    self.unroll = unroll
    if rngs is True:
      self.rngs = RngStream(0, tag='carry')
    elif isinstance(rngs, Rngs):
      self.rngs = rngs.carry.fork()
    elif rngs is False:
      self.rngs = data(None)
    else:
      raise ValueError(
          f'RNN: rngs must be True (a new carry stream seeded 0), nnx.Rngs (the RNN forks '
          f'its carry stream) or False (no stream), got {type(rngs).__name__}. '
          'Example: nnx.RNN(cell, rngs=nnx.Rngs(carry=0)).')
    # A StateAxes, not a plain dict: a dict whose keys mix ... and types cannot
    # be sorted, which pytree flattening needs (Flax fails on such a dict).
    self.state_axes = StateAxes(state_axes or {...: Carry})
    self.broadcast_rngs = broadcast_rngs

  def __call__(self, inputs: Array, *, initial_carry: tp.Any = None,
               seq_lengths: Array | None = None, return_carry: bool | None = None,
               time_major: bool | None = None, reverse: bool | None = None,
               keep_order: bool | None = None, rngs: CallRngs = None) -> tp.Any:
    """The outputs of every step, or ``(final_carry, outputs)`` with ``return_carry``.

    Args:
      inputs: ``(*batch, time, features)`` (``(time, *batch, features)`` if
        time-major).
      initial_carry: the carry before the first step; by default
        ``cell.initialize_carry`` with ``rngs``.
      seq_lengths: integer lengths of shape ``batch``, each at least 1 (with
        length 0 the final carry is the one after all steps, as in Flax).
      return_carry, time_major, reverse, keep_order: override the
        constructor's.
      rngs: the carry stream for this call; ``nnx.Rngs`` are forked.

    >>> import jax.numpy as jnp
    >>> import nnx_edu as nnx
    >>> rnn = nnx.RNN(nnx.SimpleCell(1, 2, rngs=nnx.Rngs(0)), time_major=True)
    >>> carry, y = rnn(jnp.ones((6, 3, 1)), return_carry=True, reverse=True, keep_order=True)
    >>> carry.shape, y.shape
    ((3, 2), (6, 3, 2))
    >>> bool((carry == y[0]).all())   # read backwards, the last step is the first
    True
    """
    return_carry = self.return_carry if return_carry is None else return_carry
    time_major = self.time_major if time_major is None else time_major
    reverse = self.reverse if reverse is None else reverse
    keep_order = self.keep_order if keep_order is None else keep_order
    time_axis, batch_shape = self._time_and_batch(inputs, time_major)
    if seq_lengths is not None:
      seq_lengths = self._check_seq_lengths(seq_lengths, inputs, batch_shape, time_major)
    if reverse:
      inputs = flip_sequences(inputs, seq_lengths, len(batch_shape), time_major)

    rngs = self.rngs if rngs is None else rngs
    if isinstance(rngs, Rngs):
      rngs = rngs.carry.fork()
    step_shape = inputs.shape[:time_axis] + inputs.shape[time_axis + 1:]
    if initial_carry is None:
      carry = self.cell.initialize_carry(step_shape, rngs)
    else:
      carry = initial_carry
      self._check_initial_carry(carry, step_shape, inputs.shape, time_major)

    # With lengths, the final carry is read from the carries of all steps.
    keep_all_carries = seq_lengths is not None and return_carry
    # The cell's Variables are carried from step to step, except the RNG
    # streams named by broadcast_rngs: those are the same at every step.
    state_axes = StateAxes({All(RngState, self.broadcast_rngs): None, **self.state_axes})

    # split_rngs(splits=1, squeeze=True) gives each broadcast stream a fresh
    # key per call (and puts the stream back afterwards).
    @split_rngs(splits=1, only=self.broadcast_rngs, squeeze=True)
    @scan(in_axes=(state_axes, Carry, time_axis), unroll=self.unroll,
          out_axes=(Carry, (0, time_axis) if keep_all_carries else time_axis))
    def run(cell: RNNCellBase, carry: tp.Any, x: Array) -> tuple:
      new_carry, y = cell(carry, x)
      self._check_carry_kept(carry, new_carry)
      return new_carry, ((new_carry, y) if keep_all_carries else y)

    carry, outputs = run(self.cell, carry, inputs)
    if keep_all_carries:
      carries, outputs = outputs
      carry = _last_real_carry(carries, seq_lengths)
    if reverse and keep_order:  # a cell may return several outputs: flip each
      outputs = jax.tree.map(
          lambda y: flip_sequences(y, seq_lengths, len(batch_shape), time_major), outputs)
    return (carry, outputs) if return_carry else outputs

  # -- errors that teach, raised before lax.scan would fail ----------------------------
  def _time_and_batch(self, inputs: Array, time_major: bool) -> tuple[int, tuple[int, ...]]:
    """The time axis of ``inputs`` and the shape of its batch axes."""
    features = self.cell.num_feature_axes
    shape = tuple(jnp.shape(inputs))
    if len(shape) < features + 1:
      raise ValueError(
          f'RNN: inputs of shape {shape} have rank {len(shape)}, but the RNN needs a time '
          f'axis and {features} feature axis/axes: (*batch, time, features), or '
          '(time, *batch, features) with time_major=True. For a sequence of numbers, '
          'add a feature axis: inputs[..., None].')
    if time_major:
      return 0, shape[1:len(shape) - features]
    time_axis = len(shape) - features - 1
    return time_axis, shape[:time_axis]

  def _check_seq_lengths(self, seq_lengths: tp.Any, inputs: Array,
                         batch_shape: tuple[int, ...], time_major: bool) -> Array:
    seq_lengths = jnp.asarray(seq_lengths)
    layout = '(time, *batch, features)' if time_major else '(*batch, time, features)'
    if seq_lengths.shape != batch_shape:
      raise ValueError(
          f'RNN: seq_lengths must hold one length per sequence, shape {batch_shape} for '
          f'inputs of shape {inputs.shape} read as {layout} (time_major={time_major}); '
          f'got shape {seq_lengths.shape}. Pass one length per sequence, or set time_major '
          'to match how your inputs are laid out.')
    if not jnp.issubdtype(seq_lengths.dtype, jnp.integer):
      raise ValueError(
          f'RNN: seq_lengths must be integers (numbers of steps), got dtype '
          f'{seq_lengths.dtype}. Cast them: seq_lengths.astype(jnp.int32).')
    return seq_lengths

  def _check_initial_carry(self, carry: tp.Any, step_shape: tuple[int, ...],
                           input_shape: tuple[int, ...], time_major: bool) -> None:
    def expected_carry():
      return self.cell.initialize_carry(step_shape, RngStream(0, tag='carry'))

    try:  # shapes only: eval_shape computes nothing and draws no key
      expected = _shapes(jax.eval_shape(expected_carry))
    except NotImplementedError:  # a cell without initialize_carry: nothing to compare to
      return
    if _shapes(carry) != expected:
      cell = type(self.cell).__name__
      raise ValueError(
          f'RNN: initial_carry has shape {_shapes(carry)}, but for inputs of shape '
          f'{input_shape} (time_major={time_major}) each step has shape {step_shape} and '
          f'{cell}.initialize_carry gives shape {expected}. Make it with '
          f'rnn.cell.initialize_carry({step_shape}, rngs), or check time_major.')

  def _check_carry_kept(self, carry: tp.Any, new_carry: tp.Any) -> None:
    """A scan's carry must keep its structure, shapes and dtypes from step to step."""
    def spec(tree: tp.Any) -> tp.Any:
      return jax.tree.structure(tree), [(x.shape, x.dtype) for x in jax.tree.leaves(tree)]

    if spec(carry) != spec(new_carry):
      raise ValueError(
          f'RNN: {type(self.cell).__name__} was given a carry of {_types(carry)} and '
          f'returned one of {_types(new_carry)}; a scanned carry must keep its shapes and '
          'dtypes from step to step. Give initial_carry in the dtype the cell returns, or '
          'create the cell with a dtype equal to its param_dtype.')


def _concatenate(a: Array, b: Array) -> Array:
  """Join two outputs along the feature axis (``Bidirectional``'s default merge)."""
  return jnp.concatenate([a, b], axis=-1)


class Bidirectional(Module):
  """Run one RNN forwards and one backwards over the input; merge their outputs.

  The backward RNN reads each sequence from its last real step to its first
  (``reverse=True``) and its outputs are flipped back (``keep_order=True``),
  so output ``t`` of both directions belongs to input ``t``.

  Args:
    forward_rnn, backward_rnn: two ``RNN``\\ s (pass the same one twice only to
      share parameters).
    merge_fn: ``merge_fn(forward, backward)`` for every output (default:
      concatenate along the feature axis).
    time_major, return_carry: as in ``RNN``; ``return_carry`` returns
      ``((forward_carry, backward_carry), outputs)``.
    rngs: the carry stream both RNNs draw from: ``True`` a new one seeded 0,
      ``nnx.Rngs`` a fork of its ``carry`` stream, an ``RngStream`` itself,
      ``False`` none (each RNN uses its own).

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> layer = nnx.Bidirectional(nnx.RNN(nnx.GRUCell(3, 4, rngs=nnx.Rngs(0))),
  ...                           nnx.RNN(nnx.GRUCell(3, 4, rngs=nnx.Rngs(1))))
  >>> layer(jnp.ones((2, 5, 3))).shape
  (2, 5, 8)
  """

  def __init__(self, forward_rnn: RNN, backward_rnn: RNN, *,
               merge_fn: tp.Callable[[Array, Array], Array] = _concatenate,
               time_major: bool = False, return_carry: bool = False,
               rngs: Rngs | RngStream | bool = True):
    self.forward_rnn = forward_rnn
    self.backward_rnn = backward_rnn
    self.merge_fn = merge_fn
    self.time_major = time_major
    self.return_carry = return_carry
    if rngs is True:
      self.rngs = RngStream(0, tag='carry')
    elif rngs is False:
      self.rngs = None
    elif isinstance(rngs, Rngs):
      self.rngs = rngs.carry.fork()
    elif isinstance(rngs, RngStream):
      self.rngs = rngs
    else:
      raise TypeError(
          f'Bidirectional: rngs must be True (a new carry stream seeded 0), nnx.Rngs, an '
          f'nnx.RngStream or False, got {type(rngs).__name__}. Example: '
          'nnx.Bidirectional(forward, backward, rngs=nnx.Rngs(carry=0)).')

  def __call__(self, inputs: Array, *, initial_carry: tuple[tp.Any, tp.Any] | None = None,
               rngs: CallRngs = None, seq_lengths: Array | None = None,
               return_carry: bool | None = None, time_major: bool | None = None,
               reverse: bool | None = None, keep_order: bool | None = None) -> tp.Any:
    """Merged outputs, or ``((forward_carry, backward_carry), outputs)``.

    ``initial_carry`` is a pair: one carry per direction.  ``reverse`` and
    ``keep_order`` are accepted, so that ``Bidirectional`` can be called
    like an ``RNN``, and ignored.

    >>> import jax.numpy as jnp
    >>> import nnx_edu as nnx
    >>> layer = nnx.Bidirectional(nnx.RNN(nnx.SimpleCell(3, 4, rngs=nnx.Rngs(0))),
    ...                           nnx.RNN(nnx.SimpleCell(3, 4, rngs=nnx.Rngs(1))),
    ...                           merge_fn=lambda a, b: a + b)
    >>> (fwd, bwd), y = layer(jnp.ones((2, 5, 3)), seq_lengths=jnp.array([5, 3]),
    ...                       return_carry=True)
    >>> fwd.shape, bwd.shape, y.shape
    ((2, 4), (2, 4), (2, 5, 4))
    """
    time_major = self.time_major if time_major is None else time_major
    return_carry = self.return_carry if return_carry is None else return_carry
    rngs = self.rngs if rngs is None else rngs
    if isinstance(rngs, Rngs):
      rngs = rngs.carry
    carry_forward, carry_backward = self._split_initial_carry(initial_carry)
    if self.forward_rnn is self.backward_rnn:
      logging.getLogger(__name__).warning(
          'forward_rnn and backward_rnn is the same object, so they will share parameters.')

    common = {'rngs': rngs, 'seq_lengths': seq_lengths, 'return_carry': True,
              'time_major': time_major}
    carry_forward, forward = self.forward_rnn(
        inputs, initial_carry=carry_forward, reverse=False, **common)
    carry_backward, backward = self.backward_rnn(
        inputs, initial_carry=carry_backward, reverse=True, keep_order=True, **common)
    outputs = jax.tree.map(self.merge_fn, forward, backward)
    return ((carry_forward, carry_backward), outputs) if return_carry else outputs

  @staticmethod
  def _split_initial_carry(initial_carry: tp.Any) -> tuple[tp.Any, tp.Any]:
    if initial_carry is None:
      return None, None
    if not (isinstance(initial_carry, (tuple, list)) and len(initial_carry) == 2):
      raise ValueError(
          'Bidirectional: initial_carry must be a pair (forward_carry, backward_carry), '
          f'got {type(initial_carry).__name__}. Make each with '
          'layer.forward_rnn.cell.initialize_carry(...) and '
          'layer.backward_rnn.cell.initialize_carry(...).')
    return initial_carry[0], initial_carry[1]
