"""Transforms -- compilation: nnx.jit and nnx.eval_shape, against Flax 0.12.8.

Each parity test runs the same code with both libraries and compares the
outputs and the whole State afterwards: what a transform changes inside a
Module (BatchNorm statistics, Rngs counts, sown values) must come out the same.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx as fnnx

import nnx_edu as nnx
from nnx_edu.core import pytrees
from tests.models import PROBE_X, probe
from tests.parity import assert_same_state

BOTH = [nnx, fnnx]


def layered(lib):
  """Real layers: Linear, BatchNorm and Dropout."""
  class Net(lib.Module):
    def __init__(self, rngs):
      self.linear = lib.Linear(3, 4, rngs=rngs)
      self.bn = lib.BatchNorm(4, rngs=rngs)
      self.dropout = lib.Dropout(0.5, rngs=rngs)

    def __call__(self, x):
      return self.dropout(self.bn(self.linear(x)))

  return Net(lib.Rngs(0))


# -- jit -----------------------------------------------------------------------------
def test_jit_propagates_batch_stats_rng_counts_and_sown_values_like_flax():
  results = []
  for lib in BOTH:
    model = probe(lib)
    forward = lib.jit(lambda model, x: model(x))
    outs = [forward(model, PROBE_X) for _ in range(2)]
    results.append((outs, lib.state(model)))
  (ours, our_state), (theirs, their_state) = results
  np.testing.assert_array_equal(ours, theirs)
  assert_same_state(our_state, their_state)


def test_jit_called_again_reuses_its_split_and_its_compilation():
  model = layered(nnx)
  forward = nnx.jit(lambda model, x: model(x))
  outs = [forward(model, PROBE_X) for _ in range(3)]
  assert len(forward._compiled) == 1 and len(forward._recent) == 1
  assert not np.array_equal(outs[0], outs[1])  # the dropout key moved on
  model.eval()  # a structural change: split again, compile for the new flags
  forward(model, PROBE_X), forward(model, PROBE_X)
  (recent,) = forward._recent.values()
  assert len(forward._compiled) == 2 and recent.version == pytrees.structure_version


def test_jit_sees_train_and_eval_switches_between_calls():
  results = []
  for lib in BOTH:
    model = layered(lib)
    forward = lib.jit(lambda model, x: model(x))
    outs = [forward(model, PROBE_X)]
    model.eval()
    outs.append(forward(model, PROBE_X))
    model.train()
    outs.append(forward(model, PROBE_X))
    results.append((outs, lib.state(model)))
  (ours, our_state), (theirs, their_state) = results
  for a, b in zip(ours, theirs):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
  assert_same_state(our_state, their_state, exact=False)


def test_jit_keeps_references_shared_between_arguments():
  for lib in BOTH:
    a, b = probe(lib), probe(lib, seed=1)
    b.w = a.w  # b now shares a's kernel

    @lib.jit
    def check(a, b, same):
      a.w.value = a.w.value + 1
      return a.w is b.w, a is same

    shared, same = check(a, b, a)
    assert bool(shared) and bool(same)
    assert b.w is a.w and float(b.w.value[0, 0]) == float(a.w.value[0, 0])


def test_jit_returns_the_callers_own_module_and_builds_new_ones():
  for lib in BOTH:
    model = probe(lib)
    assert lib.jit(lambda m: m)(model) is model
    assert lib.jit(lambda m: (m.rngs, 1))(model)[0] is model.rngs
    made = lib.jit(lambda: probe(lib, seed=3))()
    assert_same_state(nnx.state(made) if lib is nnx else fnnx.state(made),
                      lib.state(probe(lib, seed=3)))


def test_jit_brings_out_attributes_added_and_removed_inside():
  results = []
  for lib in BOTH:
    model = probe(lib)

    @lib.jit
    def restructure(model):
      model.extra = lib.BatchStat(jnp.ones(3))
      del model.stat
    restructure(model)
    results.append(lib.state(model))
  assert_same_state(*results)


@pytest.mark.parametrize('make', [
    lambda lib, f: lib.jit(f, static_argnums=2),
    lambda lib, f: lib.jit(f, static_argnames='power'),
    lambda lib, f: lib.jit(static_argnums=(2,))(f),
    lambda lib, f: lib.jit(donate_argnums=0)(f),
])
def test_jit_options_work_as_in_flax(make):
  outs = []
  for lib in BOTH:
    model = probe(lib)
    f = make(lib, lambda model, x, power: model(x) ** power)
    outs.append([f(model, PROBE_X, 2), f(model, PROBE_X, power=3)])
    assert model.w.value.shape == (3, 2)  # donated arrays were replaced by fresh ones
  np.testing.assert_allclose(outs[0], outs[1], rtol=1e-6)


def test_jit_works_on_methods_and_on_pytrees_of_modules():
  class Doubler(nnx.Module):
    def __init__(self):
      self.calls = nnx.BatchStat(jnp.array(0))

    @nnx.jit
    def __call__(self, x):
      self.calls.value += 1
      return 2 * x

  doubler = Doubler()
  doubler(jnp.ones(1)), doubler(jnp.ones(1))
  assert int(doubler.calls.value) == 2
  both = nnx.jit(lambda pair, x: pair['a'](x) + pair['b'][0](x))
  pair = {'a': doubler, 'b': [doubler]}
  assert float(both(pair, jnp.ones(1))[0]) == 4.0 and int(doubler.calls.value) == 4


def test_jit_refuses_a_bound_method_and_says_how_to_decorate_it():
  model = probe(nnx)
  with pytest.raises(TypeError, match=r'bound method Probe.__call__.*@nnx.jit'):
    nnx.jit(model.__call__)


def test_jit_refuses_unhashable_static_arguments():
  f = nnx.jit(lambda x, sizes: x, static_argnums=1)
  with pytest.raises(TypeError, match='static arguments must be hashable.*tuples'):
    f(jnp.ones(1), [1, 2])


# -- eval_shape ----------------------------------------------------------------------
def test_eval_shape_gives_shape_dtype_structs_and_leaves_arguments_alone():
  for lib in BOTH:
    model = probe(lib)
    abstract = lib.eval_shape(lambda m, x: (m, m(x)), model, PROBE_X)
    assert isinstance(abstract[0].w.value, jax.ShapeDtypeStruct)
    assert abstract[1].shape == (4, 2) and abstract[0] is not model
    assert not hasattr(model, 'seen') and int(model.rngs.dropout.count.value) == 0
