"""Transforms -- autodiff: nnx.grad, nnx.value_and_grad and DiffState, against Flax 0.12.8.

Gradients come back as States of Variables, as in Flax; what the function changed in
the Module (statistics, Rngs counts, sown values) comes out the same too.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx as fnnx

import nnx_edu as nnx
from tests.models import PROBE_X, probe
from tests.parity import assert_same_state

BOTH = [nnx, fnnx]


def loss_of(model, x):
  return (model(x) ** 2).mean()


ARGNUMS = {
    '0': lambda lib: 0,
    '(0, 1)': lambda lib: (0, 1),
    'DiffState Param': lambda lib: lib.DiffState(0, lib.Param),
    'DiffState BatchStat': lambda lib: lib.DiffState(0, lib.BatchStat),
    'DiffState PathContains': lambda lib: lib.DiffState(0, lib.PathContains('w')),
    '(DiffState w, 1)': lambda lib: (lib.DiffState(0, lib.PathContains('w')), 1),
}


@pytest.mark.parametrize('argnums', list(ARGNUMS))
@pytest.mark.parametrize('transform', ['grad', 'value_and_grad'])
def test_gradients_are_states_of_variables_as_in_flax(argnums, transform):
  results = []
  for lib in BOTH:
    model = probe(lib)
    out = getattr(lib, transform)(loss_of, argnums=ARGNUMS[argnums](lib))(model, PROBE_X)
    value, grads = out if transform == 'value_and_grad' else (None, out)
    grads = grads if isinstance(grads, tuple) else (grads,)
    results.append((value, grads, lib.state(model)))
  (v1, g1, s1), (v2, g2, s2) = results
  if transform == 'value_and_grad':
    np.testing.assert_allclose(v1, v2, rtol=1e-6)
  for a, b in zip(g1, g2):
    if isinstance(a, jax.Array):
      np.testing.assert_allclose(a, b, rtol=1e-6)
    else:
      assert type(a).__name__ == 'State'
      assert_same_state(a, b, exact=False)
  assert_same_state(s1, s2, exact=False)  # stats, counts and sown values came out


@pytest.mark.parametrize('transform', ['grad', 'value_and_grad'])
def test_has_aux_returns_the_aux_as_flax_does(transform):
  results = []
  for lib in BOTH:
    model = probe(lib)
    f = getattr(lib, transform)(lambda m, x: (loss_of(m, x), {'y': m(x), 'n': 1.0}), has_aux=True)
    out = f(model, PROBE_X)
    (value, aux), grads = out if transform == 'value_and_grad' else ((None, out[1]), out[0])
    results.append((value, aux, grads))
  (v1, a1, g1), (v2, a2, g2) = results
  np.testing.assert_allclose(a1['y'], a2['y'], rtol=1e-6)
  assert a1['n'] == a2['n'] == 1.0
  assert_same_state(g1, g2, exact=False)
  assert type(g1['w']).__name__ == 'Param'


def test_grad_of_a_variable_passed_directly():
  param = nnx.Param(jnp.arange(3.0))
  grads = nnx.grad(lambda p: (p.value ** 2).sum())(param)
  np.testing.assert_array_equal(grads.value, [0.0, 2.0, 4.0])


LOOSE = {
    'a Perturbation': lambda lib: lib.Perturbation(jnp.arange(3.0)),
    'a State': lambda lib: lib.State({'p': lib.Perturbation(jnp.arange(3.0)),
                                      'w': lib.Param(jnp.ones(3))}),
    'a list': lambda lib: [lib.BatchStat(jnp.arange(3.0)), lib.Param(jnp.ones(3))],
}


@pytest.mark.parametrize('argnums', ['0', 'DiffState Param'])
@pytest.mark.parametrize('loose', list(LOOSE))
def test_variables_outside_a_module_are_differentiated_whatever_their_type(loose, argnums):
  # As in Flax: the filter chooses among a Module's Variables, not among loose ones.
  def loss(tree):
    return sum((leaf.get_value() ** 2).sum() for leaf in jax.tree.leaves(
        tree, is_leaf=lambda x: isinstance(x, (nnx.Variable, fnnx.Variable))))

  grads = [lib.grad(loss, argnums=ARGNUMS[argnums](lib))(LOOSE[loose](lib)) for lib in BOTH]
  leaves = [jax.tree.leaves(g) for g in grads]
  assert [type(g).__name__ for g in grads] == [type(grads[1]).__name__] * 2
  for a, b in zip(*leaves, strict=True):
    np.testing.assert_allclose(a, b)


def test_has_aux_needs_a_pair():
  with pytest.raises(TypeError, match=r'has_aux=True.*\(loss, aux\)'):
    nnx.grad(loss_of, has_aux=True)(probe(nnx), PROBE_X)


def test_argnums_beyond_the_arguments_is_explained():
  with pytest.raises(TypeError, match='argument 2 but only 2 positional'):
    nnx.grad(loss_of, argnums=(0, 2))(probe(nnx), PROBE_X)


def test_argnums_naming_an_argument_twice_is_refused():
  with pytest.raises(ValueError, match='names an argument twice'):
    nnx.grad(loss_of, argnums=(0, nnx.DiffState(0, nnx.Param)))
