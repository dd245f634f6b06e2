"""Spec of the recurrent layers: the cells (recurrent_cells.py, lstm_cells.py), RNN, Bidirectional.

Every layer is built twice, by nnx_edu and by flax 0.12.8 from the same seed,
and must give bit-identical parameters, outputs and carries within 1e-6,
the same RNG state afterwards and equal repr text.  RNN runs are compared
under ``nnx.jit``, a whole grid of options in one compiled function (a scan
compiles slowly; one program per grid keeps the file fast), and eagerly.
"""

import itertools
import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx as fnnx

import nnx_edu as nnx
from nnx_edu.nn.recurrent import flip_sequences
from tests.parity import assert_close, assert_same_state, inputs, normalize_repr, to_flat_state

CELLS = ['SimpleCell', 'GRUCell', 'LSTMCell', 'OptimizedLSTMCell']
LSTMS = ['LSTMCell', 'OptimizedLSTMCell']
BATCH, TIME, IN, HIDDEN = 4, 5, 3, 2
LENGTHS = np.array([5, 3, 1, 4])  # one sequence per batch entry, padded to TIME


# -- helpers -------------------------------------------------------------------------
def both(make):
  """``make(lib)`` for nnx_edu and for Flax: ours first."""
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', UserWarning)  # keep_rngs / carry_init deprecations
    return make(nnx), make(fnnx)


def cell_pair(name, *args, seed=0, **kwargs):
  args = args or (IN, HIDDEN)
  return both(lambda lib: getattr(lib, name)(*args, rngs=lib.Rngs(seed), **kwargs))


# bfloat16 parameters from custom initializers.  (orthogonal() has no bfloat16
# QR on CPU, in Flax as here; only LSTMCell's default draws in float32 first.)
# Every bfloat16 test uses these, so each initializer compiles once per shape.
BF16 = {'param_dtype': jnp.bfloat16, 'kernel_init': nnx.initializers.glorot_uniform(),
        'recurrent_kernel_init': nnx.initializers.normal(0.3),
        'bias_init': nnx.initializers.uniform()}


def rnn_pair(name, seed=0, **kwargs):
  return both(lambda lib: lib.RNN(getattr(lib, name)(IN, HIDDEN, rngs=lib.Rngs(seed)), **kwargs))


def repr_text(module) -> str:
  """The repr without addresses; RNN.state_axes prints the class nnx.Carry, whose module differs."""
  return normalize_repr(repr(module)).replace('flax.nnx.transforms.iteration.Carry',
                                              'nnx_edu.transforms.iteration.Carry')


# -- cells: parameters and repr ---------------------------------------------------------
@pytest.mark.parametrize('name', CELLS)
@pytest.mark.parametrize('sizes, options', [
    ((IN, HIDDEN), {}),
    ((1, 1), {}),
    ((IN, HIDDEN), dict(dtype=jnp.bfloat16, **BF16)),
], ids=['default', 'sizes_1_1', 'bfloat16_custom_initializers'])
def test_cell_parameters_and_repr_match_flax(name, sizes, options):
  ours, theirs = cell_pair(name, *sizes, seed=7, **options)
  assert repr_text(ours) == repr_text(theirs)
  assert_same_state(ours, theirs)


def test_lstm_cell_draws_its_recurrent_kernels_in_float32_then_casts():
  ours, theirs = cell_pair('LSTMCell', param_dtype=jnp.bfloat16)
  assert ours.hi.kernel.dtype == jnp.bfloat16
  assert_same_state(ours, theirs)


@pytest.mark.parametrize('name', CELLS)
def test_cell_metadata_reaches_the_parameters(name):
  ours, theirs = cell_pair(name, kernel_metadata={'note': 'x'},
                           recurrent_kernel_metadata={'note': 'h'},
                           bias_metadata={'note': 'b'})
  mine, flax = dict(to_flat_state(ours)), dict(to_flat_state(theirs))
  for path in flax:
    assert mine[path].note == flax[path].note, path


@pytest.mark.parametrize('name', CELLS)
def test_keep_rngs_and_carry_init_warn_and_print_like_flax(name):
  with (pytest.warns(UserWarning, match='keep_rngs argument is deprecated'),
        pytest.warns(UserWarning, match='carry_init is provided in __init__')):
    ours = getattr(nnx, name)(IN, HIDDEN, keep_rngs=True, carry_init=nnx.initializers.ones,
                              rngs=nnx.Rngs(0))
  _, theirs = cell_pair(name, keep_rngs=True, carry_init=nnx.initializers.ones)
  assert repr_text(ours) == repr_text(theirs)
  assert_same_state(ours, theirs)  # the kept stream was forked before the parameters


def test_simple_cell_residual_prints_and_steps_like_flax():
  ours, theirs = cell_pair('SimpleCell', HIDDEN, HIDDEN, residual=True,
                           activation_fn=nnx.relu)
  assert repr_text(ours) == repr_text(theirs)
  h, x = inputs(BATCH, HIDDEN, seed=2), inputs(BATCH, HIDDEN)
  assert_close(ours(h, x), theirs(h, x))


# -- cells: one step and the first carry -------------------------------------------------
def assert_same_step(ours, theirs, batch):
  carry = ours.initialize_carry((*batch, IN), nnx.Rngs(3), nnx.initializers.normal(1.0))
  x = inputs(*batch, IN)
  assert_close(ours(carry, x), theirs(carry, x))


@pytest.mark.parametrize('name', CELLS)
@pytest.mark.parametrize('batch', [(), (BATCH,), (2, 3)])
def test_one_step_matches_flax_for_any_batch_axes(name, batch):
  assert_same_step(*cell_pair(name), batch)


STEP_OPTIONS = {'dtype': {'dtype': jnp.bfloat16}, 'param_dtype': BF16,
                'activation_fn': {'activation_fn': nnx.relu},
                'gate_fn': {'gate_fn': nnx.hard_sigmoid}}


@pytest.mark.parametrize('name, option', [
    (name, option) for name in CELLS for option in STEP_OPTIONS
    if not (name == 'SimpleCell' and option == 'gate_fn')])  # SimpleCell has no gates
def test_one_step_matches_flax_for_dtypes_and_activations(name, option):
  assert_same_step(*cell_pair(name, **STEP_OPTIONS[option]), (BATCH,))


@pytest.mark.parametrize('name', CELLS)
@pytest.mark.parametrize('batch', [(), (BATCH,), (2, 3)])
@pytest.mark.parametrize('carry_init', [None, nnx.initializers.ones, nnx.initializers.normal(2.0)])
def test_initialize_carry_matches_flax(name, batch, carry_init):
  ours, theirs = cell_pair(name, **BF16)
  rngs, frngs = nnx.Rngs(5), fnnx.Rngs(5)
  carry = ours.initialize_carry((*batch, IN), rngs, carry_init)
  fcarry = theirs.initialize_carry((*batch, IN), frngs, carry_init)
  assert_close(carry, fcarry)
  assert jax.tree.leaves(carry)[0].shape == (*batch, HIDDEN)
  assert rngs.default.count[...] == frngs.default.count[...]  # one key per carry array


@pytest.mark.parametrize('name', CELLS)
def test_initialize_carry_takes_a_stream_or_the_kept_one(name):
  ours, theirs = cell_pair(name, keep_rngs=True, carry_init=nnx.initializers.normal())
  assert_close(ours.initialize_carry((BATCH, IN)), theirs.initialize_carry((BATCH, IN)))
  stream, fstream = nnx.RngStream(9, tag='carry'), fnnx.RngStream(9, tag='carry')
  assert_close(ours.initialize_carry((BATCH, IN), stream),
               theirs.initialize_carry((BATCH, IN), fstream))
  assert_same_state(ours, theirs)


# -- RNN: a grid of options under nnx.jit -----------------------------------------------
DIRECTIONS = [{'reverse': False}, {'reverse': True}, {'reverse': True, 'keep_order': True}]


def run_grid(rnn, x, lengths, time_major):
  """Every direction x (no lengths, lengths), in one program, returning the carry.

  Without return_carry the RNN keeps no carries; one run checks that path.
  """
  results = [rnn(x, time_major=time_major, return_carry=True,
                 seq_lengths=lengths if use_lengths else None, **direction)
             for direction, use_lengths in itertools.product(DIRECTIONS, (False, True))]
  results.append(rnn(x, time_major=time_major, seq_lengths=lengths, reverse=True))
  return results


@pytest.mark.parametrize('name', CELLS)
@pytest.mark.parametrize('time_major', [False, True])
def test_rnn_outputs_and_carries_match_flax_under_jit(name, time_major):
  ours, theirs = rnn_pair(name)
  x = inputs(*(TIME, BATCH, IN) if time_major else (BATCH, TIME, IN))
  lengths = jnp.asarray(LENGTHS)
  mine = nnx.jit(run_grid, static_argnums=3)(ours, x, lengths, time_major)
  flax = fnnx.jit(run_grid, static_argnums=3)(theirs, x, lengths, time_major)
  assert_close(mine, flax)
  assert_same_state(ours, theirs)  # the carry stream advanced alike


@pytest.mark.parametrize('name', CELLS)
def test_rnn_runs_eagerly_like_flax(name):
  ours, theirs = rnn_pair(name, return_carry=True, reverse=True, keep_order=True)
  x = inputs(BATCH, TIME, IN)
  lengths = jnp.asarray(LENGTHS)
  assert_close(ours(x, seq_lengths=lengths), theirs(x, seq_lengths=lengths))
  assert_same_state(ours, theirs)


@pytest.mark.parametrize('batch', [(), (2, 3)])
def test_rnn_takes_any_number_of_batch_axes(batch):
  ours, theirs = rnn_pair('GRUCell', return_carry=True)
  x = inputs(*batch, TIME, IN)
  assert_close(ours(x, reverse=True), theirs(x, reverse=True))


def test_rnn_without_batch_axis_reads_one_length():
  ours, theirs = rnn_pair('LSTMCell', return_carry=True, reverse=True)
  x, length = inputs(TIME, IN), jnp.array(3)
  assert_close(ours(x, seq_lengths=length), theirs(x, seq_lengths=length))


def test_rnn_final_carry_with_two_batch_axes_is_each_sequence_own_last_carry():
  # Flax 0.12.8 fails here (it indexes one batch axis); we read any number.
  ours, theirs = rnn_pair('GRUCell', return_carry=True)
  x = inputs(2, 2, TIME, IN)
  lengths = jnp.asarray(LENGTHS.reshape(2, 2))
  carry, y = ours(x, seq_lengths=lengths)
  fcarry, fy = theirs(x.reshape(4, TIME, IN), seq_lengths=lengths.reshape(4))
  assert_close((carry.reshape(4, HIDDEN), y.reshape(4, TIME, HIDDEN)), (fcarry, fy))


def test_rnn_with_a_zero_length_behaves_like_flax():
  ours, theirs = rnn_pair('SimpleCell', return_carry=True, reverse=True)
  x, lengths = inputs(BATCH, TIME, IN), jnp.array([0, 2, 5, 1])
  assert_close(ours(x, seq_lengths=lengths), theirs(x, seq_lengths=lengths))


@pytest.mark.parametrize('name', LSTMS)
def test_rnn_initial_carry_and_unroll_match_flax(name):
  ours, theirs = rnn_pair(name, unroll=2, rngs=False)
  x = inputs(BATCH, TIME, IN)
  carry = (inputs(BATCH, HIDDEN, seed=4), inputs(BATCH, HIDDEN, seed=5))
  assert_close(ours(x, initial_carry=carry), theirs(x, initial_carry=carry))


def two_output_cell(lib):
  class TwoOutputs(lib.RNNCellBase):
    """A SimpleCell that returns its output twice, the second doubled."""

    def __init__(self):
      self.simple = lib.SimpleCell(IN, HIDDEN, rngs=lib.Rngs(0))

    def __call__(self, carry, x):
      carry, y = self.simple(carry, x)
      return carry, (y, 2 * y)

    def initialize_carry(self, input_shape, rngs=None, carry_init=None):
      return self.simple.initialize_carry(input_shape, rngs, carry_init)

    @property
    def num_feature_axes(self):
      return 1

  return TwoOutputs()


def test_rnn_with_state_axes_unroll_and_several_outputs_matches_flax():
  ours, theirs = both(lambda lib: lib.RNN(
      two_output_cell(lib), unroll=True, reverse=True, keep_order=True,
      state_axes=lib.StateAxes({lib.Param: None, ...: lib.Carry})))
  x, lengths = inputs(BATCH, TIME, IN), jnp.asarray(LENGTHS)
  assert_close(ours(x, seq_lengths=lengths), theirs(x, seq_lengths=lengths))


def test_rnn_carry_stream_follows_flax():
  """True: a stream seeded 0; Rngs: forked at build and at each call that passes them."""
  ours, theirs = both(lambda lib: lib.RNN(lib.LSTMCell(IN, HIDDEN, rngs=lib.Rngs(0)),
                                          rngs=lib.Rngs(carry=3)))
  assert_same_state(ours, theirs)
  x = inputs(BATCH, TIME, IN)
  rngs, frngs = nnx.Rngs(8), fnnx.Rngs(8)
  ours(x), theirs(x)
  ours(x, rngs=rngs), theirs(x, rngs=frngs)
  assert_same_state(ours, theirs)
  assert rngs.default.count[...] == frngs.default.count[...] == 1


def test_rnn_repr_matches_flax():
  ours, theirs = both(lambda lib: lib.RNN(lib.GRUCell(IN, HIDDEN, rngs=lib.Rngs(0)),
                                          time_major=True, unroll=3, broadcast_rngs='dropout'))
  assert repr_text(ours) == repr_text(theirs)
  ours, theirs = rnn_pair('SimpleCell', rngs=False)
  assert repr_text(ours) == repr_text(theirs)


def test_grad_through_rnn_matches_flax():
  ours, theirs = rnn_pair('OptimizedLSTMCell', return_carry=True, reverse=True)
  x, lengths = inputs(BATCH, TIME, IN), jnp.asarray(LENGTHS)

  def loss(rnn, x):
    (_, h), y = rnn(x, seq_lengths=lengths)
    return jnp.sum(h ** 2) + jnp.mean(y)

  grads = nnx.grad(loss)(ours, x)
  fgrads = fnnx.grad(loss)(theirs, x)
  mine, flax = dict(grads.flat_state()), dict(fgrads.flat_state())
  assert list(mine) == list(flax)
  assert_close([v[...] for v in mine.values()], [v[...] for v in flax.values()])


# -- a cell with state of its own ------------------------------------------------------
def noisy_cell(lib):
  class NoisyCell(lib.RNNCellBase):
    """A GRU whose outputs go through Dropout, counting its steps in a BatchStat."""

    def __init__(self, rngs):
      self.gru = lib.GRUCell(IN, HIDDEN, rngs=rngs)
      self.steps = lib.BatchStat(jnp.zeros((), jnp.int32))
      self.dropout = lib.Dropout(0.5, rngs=rngs)

    def __call__(self, carry, x):
      self.steps[...] += 1
      carry, y = self.gru(carry, x)
      return carry, self.dropout(y)

    def initialize_carry(self, input_shape, rngs=None, carry_init=None):
      return self.gru.initialize_carry(input_shape, rngs, carry_init)

    @property
    def num_feature_axes(self):
      return 1

  return NoisyCell(lib.Rngs(0, dropout=1))


@pytest.mark.parametrize('broadcast_rngs, jit', [(None, False), ('dropout', True)])
def test_cell_state_updates_survive_the_scan_like_flax(broadcast_rngs, jit):
  ours, theirs = both(lambda lib: lib.RNN(noisy_cell(lib), broadcast_rngs=broadcast_rngs))
  x = inputs(BATCH, TIME, IN)

  run = lambda rnn, x: rnn(x)
  if jit:
    assert_close(nnx.jit(run)(ours, x), fnnx.jit(run)(theirs, x))
  else:
    assert_close(run(ours, x), run(theirs, x))
  assert ours.cell.steps[...] == TIME
  assert_same_state(ours, theirs)  # the dropout stream advanced alike


# -- Bidirectional ------------------------------------------------------------------------
def _sum(a, b):
  return a + b


def bidirectional_pair(**kwargs):
  return both(lambda lib: lib.Bidirectional(
      lib.RNN(lib.LSTMCell(IN, HIDDEN, rngs=lib.Rngs(0))),
      lib.RNN(lib.GRUCell(IN, HIDDEN, rngs=lib.Rngs(1))), **kwargs))


@pytest.mark.parametrize('use_lengths', [False, True])
@pytest.mark.parametrize('merge_fn', [None, _sum])
def test_bidirectional_matches_flax_under_jit(use_lengths, merge_fn):
  time_major = use_lengths  # both layouts, without doubling the (slow) compiles
  ours, theirs = bidirectional_pair(time_major=time_major, return_carry=True,
                                    **({'merge_fn': merge_fn} if merge_fn else {}))
  x = inputs(*(TIME, BATCH, IN) if time_major else (BATCH, TIME, IN))
  lengths = jnp.asarray(LENGTHS) if use_lengths else None
  run = lambda layer, x: layer(x, seq_lengths=lengths)
  assert_close(nnx.jit(run)(ours, x), fnnx.jit(run)(theirs, x))
  assert_same_state(ours, theirs)


def test_bidirectional_repr_initial_carry_and_rngs_match_flax():
  ours, theirs = bidirectional_pair(merge_fn=_sum, rngs=False)
  assert repr_text(ours) == repr_text(theirs)
  ours, theirs = both(lambda lib: lib.Bidirectional(
      lib.RNN(lib.LSTMCell(IN, HIDDEN, rngs=lib.Rngs(0))),
      lib.RNN(lib.GRUCell(IN, HIDDEN, rngs=lib.Rngs(1))), rngs=lib.Rngs(2)))
  assert repr_text(ours) == repr_text(theirs)
  x = inputs(BATCH, TIME, IN)
  carry = ((inputs(BATCH, HIDDEN, seed=3), inputs(BATCH, HIDDEN, seed=4)),
           inputs(BATCH, HIDDEN, seed=5))
  assert_close(ours(x, initial_carry=carry), theirs(x, initial_carry=carry))
  ours(x, rngs=nnx.Rngs(4)), theirs(x, rngs=fnnx.Rngs(4))
  assert_same_state(ours, theirs)


@pytest.mark.parametrize('time_major', [False, True])
def test_flip_sequences_matches_flax(time_major):
  from flax.nnx.nn.recurrent import flip_sequences as flax_flip_sequences

  x = inputs(*(TIME, BATCH, 2) if time_major else (BATCH, TIME, 2))
  for lengths in (None, jnp.asarray(LENGTHS), jnp.array([0, 5, 2, 2])):
    np.testing.assert_array_equal(flip_sequences(x, lengths, 1, time_major),
                                  flax_flip_sequences(x, lengths, 1, time_major))


# -- errors that teach ---------------------------------------------------------------------
def gru_rnn(**kwargs):
  return nnx.RNN(nnx.GRUCell(IN, HIDDEN, rngs=nnx.Rngs(0)), **kwargs)


def test_rnn_raises_when_initial_carry_has_the_wrong_shape():
  with pytest.raises(ValueError, match=re.escape(
      'initial_carry has shape (3, 2), but for inputs of shape (4, 5, 3) (time_major=False) '
      'each step has shape (4, 3) and GRUCell.initialize_carry gives shape (4, 2)')):
    gru_rnn()(inputs(BATCH, TIME, IN), initial_carry=jnp.zeros((3, HIDDEN)))


def test_rnn_raises_when_seq_lengths_do_not_fit_time_major_inputs():
  with pytest.raises(ValueError, match=re.escape(
      'RNN: seq_lengths must hold one length per sequence, shape (5,) for inputs of shape '
      '(4, 5, 3) read as (time, *batch, features) (time_major=True); got shape (4,)')):
    gru_rnn(time_major=True)(inputs(BATCH, TIME, IN), seq_lengths=jnp.asarray(LENGTHS))


def test_rnn_raises_when_seq_lengths_are_not_integers():
  with pytest.raises(ValueError, match=r'seq_lengths must be integers .* got dtype float32'):
    gru_rnn()(inputs(BATCH, TIME, IN), seq_lengths=jnp.ones(BATCH))


def test_rnn_raises_when_inputs_have_no_feature_axis():
  with pytest.raises(ValueError, match=re.escape(
      'RNN: inputs of shape (5,) have rank 1, but the RNN needs a time axis and 1 feature')):
    gru_rnn()(jnp.ones(TIME))


def test_rnn_raises_when_inputs_do_not_have_in_features():
  with pytest.raises(ValueError, match=re.escape(
      'GRUCell: the inputs of one step have shape (4, 7), but in_features=3')):
    gru_rnn()(inputs(BATCH, TIME, 7))


def test_rnn_raises_when_the_cell_changes_the_carry_dtype():
  rnn = nnx.RNN(nnx.SimpleCell(IN, HIDDEN, dtype=jnp.bfloat16, rngs=nnx.Rngs(0)))
  with pytest.raises(ValueError, match=re.escape(
      'RNN: SimpleCell was given a carry of float32[4, 2] and returned one of '
      'bfloat16[4, 2]')):
    rnn(inputs(BATCH, TIME, IN))


def test_rnn_raises_when_rngs_is_not_a_bool_or_rngs():
  with pytest.raises(ValueError, match='RNN: rngs must be True .* got RngStream'):
    gru_rnn(rngs=nnx.RngStream(0, tag='carry'))


def test_cell_raises_when_the_carry_has_the_wrong_size():
  cell = nnx.GRUCell(IN, HIDDEN, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=re.escape(
      'GRUCell: the carry h has shape (4, 5), but hidden_features=2')):
    cell(jnp.zeros((BATCH, 5)), inputs(BATCH, IN))


@pytest.mark.parametrize('name', LSTMS)
def test_lstm_raises_when_the_carry_is_not_a_pair(name):
  cell = getattr(nnx, name)(IN, HIDDEN, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=re.escape(
      f'{name}: the carry must be the pair (c, h) that initialize_carry returns, got an '
      'array of shape (4, 2)')):
    cell(jnp.zeros((BATCH, HIDDEN)), inputs(BATCH, IN))


def test_initialize_carry_raises_without_rngs():
  cell = nnx.LSTMCell(IN, HIDDEN, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=re.escape(
      'LSTMCell.initialize_carry: rngs is None and the cell keeps no stream of its own')):
    cell.initialize_carry((BATCH, IN))


def test_bidirectional_raises_when_initial_carry_is_not_a_pair():
  layer = nnx.Bidirectional(gru_rnn(), gru_rnn())
  with pytest.raises(ValueError, match=re.escape(
      'Bidirectional: initial_carry must be a pair (forward_carry, backward_carry), got '
      'ArrayImpl')):
    layer(inputs(BATCH, TIME, IN), initial_carry=jnp.zeros((BATCH, HIDDEN)))


def test_bidirectional_raises_when_rngs_has_the_wrong_type():
  with pytest.raises(TypeError, match='Bidirectional: rngs must be True .* got int'):
    nnx.Bidirectional(gru_rnn(), gru_rnn(), rngs=3)
