"""Sequential, measured against Flax 0.12.8."""

import numpy as np
import pytest
from flax import nnx as fnnx

import nnx_edu as nnx
from tests.parity import assert_same_state, inputs, normalize_repr

X = inputs(4, 5, 6, seed=0)


def mlp(lib):
  rngs = lib.Rngs(0)
  return lib.Sequential(lib.Linear(6, 8, rngs=rngs), lib.relu,
                        lib.Dropout(0.5, rngs=rngs), lib.Linear(8, 3, rngs=rngs))


def test_sequential_repr_matches_flax():
  assert normalize_repr(repr(mlp(nnx))) == normalize_repr(repr(mlp(fnnx)))


def test_sequential_state_paths_and_values_match_flax():
  assert_same_state(mlp(nnx), mlp(fnnx))


@pytest.mark.parametrize('call_rngs', [False, True])
def test_sequential_output_matches_flax(call_rngs):
  kwargs = lambda lib: {'rngs': lib.Rngs(dropout=9)} if call_rngs else {}
  ours, theirs = mlp(nnx), mlp(fnnx)
  for _ in range(2):
    np.testing.assert_allclose(ours(X, **kwargs(nnx)), theirs(X, **kwargs(fnnx)), atol=1e-6)


def test_sequential_spreads_tuple_and_dict_outputs_like_flax():
  steps = (lambda x: (x, 2 * x), lambda a, b: {'a': a, 'b': b}, lambda a, b: a - b)
  np.testing.assert_array_equal(nnx.Sequential(*steps)(X), fnnx.Sequential(*steps)(X))


@pytest.mark.parametrize('args, kwargs', [((), {}), ((1,), {}), ((1, 2), {}), ((), {'a': 1})])
def test_empty_sequential_returns_its_input_like_flax(args, kwargs):
  assert nnx.Sequential()(*args, **kwargs) == fnnx.Sequential()(*args, **kwargs)


def test_sequential_survives_split_and_merge():
  model = mlp(nnx)
  model.eval()
  graphdef, state = nnx.split(model)
  np.testing.assert_array_equal(nnx.merge(graphdef, state)(X), model(X))


def test_sequential_raises_when_a_layer_is_not_callable():
  with pytest.raises(TypeError, match=r'Sequential: layers\[1\] is a int'):
    nnx.Sequential(nnx.relu, 3)(X)
