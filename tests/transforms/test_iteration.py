"""Transforms -- iteration: nnx.vmap, nnx.scan, StateAxes and split_rngs, against Flax 0.12.8."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx as fnnx

import nnx_edu as nnx
from tests.models import PROBE_X, probe
from tests.parity import assert_same_state

BOTH = [nnx, fnnx]


def stacked_model(lib, layers=3):
  """The Flax guide's pattern: vmap a constructor, scan the forward pass."""
  class Block(lib.Module):
    def __init__(self, rngs):
      self.linear = lib.Linear(4, 4, rngs=rngs)
      self.bn = lib.BatchNorm(4, rngs=rngs)
      self.dropout = lib.Dropout(0.1, rngs=rngs)

    def __call__(self, x):
      return jax.nn.relu(self.dropout(self.bn(self.linear(x))))

  class Model(lib.Module):
    def __init__(self, rngs):
      @lib.split_rngs(splits=layers)
      @lib.vmap(in_axes=(0,), out_axes=0)
      def create_block(rngs):
        return Block(rngs)

      self.blocks = create_block(rngs)

    def __call__(self, x):
      @lib.scan(in_axes=(lib.Carry, 0), out_axes=lib.Carry)
      def forward(x, block):
        return block(x)

      return forward(x, self.blocks)

  return Model(lib.Rngs(0))


def test_a_vmapped_stack_scanned_forward_matches_flax():
  results = []
  for lib in BOTH:
    model = stacked_model(lib)
    x = jnp.arange(20.0).reshape(5, 4) / 10
    outs = [model(x), lib.jit(lambda m, x: m(x))(model, x)]
    results.append((outs, lib.state(model)))
  (ours, our_state), (theirs, their_state) = results
  np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)
  assert_same_state(our_state, their_state, exact=False)
  assert our_state['blocks']['linear']['kernel'].value.shape == (3, 4, 4)


# -- vmap ----------------------------------------------------------------------------
@pytest.mark.parametrize('in_axes', ['(None, 0)', '(StateAxes, 0)', '(0, None)'])
def test_vmap_axes_per_argument_and_per_variable_type(in_axes):
  results = []
  for lib in BOTH:
    model = probe(lib)
    axes = {'(None, 0)': (None, 0), '(0, None)': (0, None),
            '(StateAxes, 0)': (lib.StateAxes({lib.BatchStat: 0, ...: None}), 0)}[in_axes]
    if in_axes == '(0, None)':  # four copies, stacked
      model = lib.vmap(lambda m: lib.clone(m), in_axes=(None,), out_axes=0, axis_size=4)(model)
    if in_axes == '(StateAxes, 0)':
      model.stat.value = jnp.zeros((4, 2))
    f = lib.vmap(lambda m, x: m.w.value.sum() + x.sum() + m.stat.value.sum(), in_axes=axes)
    results.append((f(model, PROBE_X), lib.state(model)))
  np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-6)
  assert_same_state(results[0][1], results[1][1])


def test_vmap_refuses_to_give_a_module_two_axes():
  f = nnx.vmap(lambda m: m, in_axes=(None,), out_axes=0, axis_size=2)
  with pytest.raises(ValueError, match='passed with in_axes None is returned with out_axes 0'):
    f(probe(nnx))


def test_state_axes_are_for_modules_only():
  f = nnx.vmap(lambda x: x, in_axes=(nnx.StateAxes({...: 0}),))
  with pytest.raises(ValueError, match='StateAxes is for Module arguments'):
    f(jnp.ones(3))


def test_state_axes_without_a_filter_for_a_variable_say_so():
  f = nnx.vmap(lambda m: m.w.value, in_axes=(nnx.StateAxes({nnx.BatchStat: 0}),), axis_size=2)
  with pytest.raises(ValueError, match=r"has no filter for the Param at \('b',\)"):
    f(probe(nnx))


# -- scan ----------------------------------------------------------------------------
@pytest.mark.parametrize('reverse', [False, True])
def test_scan_carries_stacks_and_reverses_like_flax(reverse):
  outs = []
  for lib in BOTH:
    f = lib.scan(lambda total, x: (total + x, total * x), reverse=reverse)
    outs.append(f(jnp.zeros(2), jnp.arange(8.0).reshape(4, 2)))
  np.testing.assert_array_equal(outs[0][0], outs[1][0])
  np.testing.assert_array_equal(outs[0][1], outs[1][1])


def test_scan_in_axes_and_out_axes_must_agree_on_the_carry():
  with pytest.raises(ValueError, match='must both have nnx.Carry'):
    nnx.scan(lambda x, y: x, in_axes=(nnx.Carry, 0), out_axes=0)


def test_scan_refuses_a_carry_of_another_shape():
  f = nnx.scan(lambda carry, x: ((carry, carry), x))
  with pytest.raises(ValueError, match='carry of 1 arrays but returned one of 2'):
    f(jnp.zeros(()), jnp.ones(3))


def test_scan_refuses_to_return_a_new_module():
  f = nnx.scan(lambda x, y: (x, nnx.Linear(1, 1, rngs=nnx.Rngs(0))))
  with pytest.raises(ValueError, match='returned a new Module'):
    f(jnp.zeros(()), jnp.ones(2))


# -- split_rngs ----------------------------------------------------------------------
@pytest.mark.parametrize('only', [..., 'params'])
@pytest.mark.parametrize('splits', [3, (2, 3)])
def test_split_rngs_splits_and_restores_like_flax(only, splits):
  results = []
  for lib in BOTH:
    rngs = lib.Rngs(params=0, dropout=1)
    backups = lib.split_rngs(rngs, splits=splits, only=only)
    during = lib.state(rngs)
    lib.restore_rngs(backups)
    results.append((during, lib.state(rngs)))
  assert_same_state(results[0][0], results[1][0])
  assert_same_state(results[0][1], results[1][1])
