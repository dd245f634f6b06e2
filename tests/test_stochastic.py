"""Dropout and Sequential, measured against Flax 0.12.8."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx as fnnx

import nnx_edu as nnx

jax.config.update('jax_default_matmul_precision', 'highest')

X = jnp.asarray(np.random.default_rng(0).normal(size=(4, 5, 6)), jnp.float32)


def text(module) -> str:
  return re.sub(r' at 0x[0-9a-f]+', '', repr(module))


def raw(value):
  """Key arrays compare through their data."""
  if jnp.issubdtype(value.dtype, jax.dtypes.prng_key):
    return jax.random.key_data(value)
  return value


def rngs_pair(kind: str):
  """The same source of keys, built in both libraries."""
  if kind == 'default':
    return nnx.Rngs(0), fnnx.Rngs(0)
  if kind == 'dropout_stream':
    return nnx.Rngs(params=0, dropout=7), fnnx.Rngs(params=0, dropout=7)
  return nnx.RngStream(3, tag='dropout'), fnnx.RngStream(3, tag='dropout')


# -- Dropout --------------------------------------------------------------------
@pytest.mark.parametrize('rate', [0.0, 0.1, 0.5, 0.9, 1.0])
@pytest.mark.parametrize('broadcast_dims', [(), (0,), (1, 2)])
@pytest.mark.parametrize('kind', ['default', 'dropout_stream', 'rng_stream'])
def test_dropout_masks_match_flax_call_after_call(rate, broadcast_dims, kind):
  ours, theirs = rngs_pair(kind)
  a = nnx.Dropout(rate, broadcast_dims=broadcast_dims, rngs=ours)
  b = fnnx.Dropout(rate, broadcast_dims=broadcast_dims, rngs=theirs)
  for _ in range(2):  # the second call must draw the next key, as Flax does
    np.testing.assert_array_equal(a(X), b(X))


@pytest.mark.parametrize('kind', ['rngs', 'stream', 'key'])
def test_dropout_rngs_given_to_the_call_match_flax(kind):
  make = {'rngs': lambda lib: lib.Rngs(dropout=5),
          'stream': lambda lib: lib.RngStream(5, tag='dropout'),
          'key': lambda lib: jax.random.key(5)}[kind]
  np.testing.assert_array_equal(nnx.Dropout(0.3)(X, rngs=make(nnx)),
                                fnnx.Dropout(0.3)(X, rngs=make(fnnx)))


@pytest.mark.parametrize('with_rngs', [True, False])
def test_dropout_repr_matches_flax(with_rngs):
  ours = nnx.Dropout(0.2, broadcast_dims=(1,), rngs=nnx.Rngs(0) if with_rngs else None)
  theirs = fnnx.Dropout(0.2, broadcast_dims=(1,), rngs=fnnx.Rngs(0) if with_rngs else None)
  assert text(ours) == text(theirs)


def test_dropout_state_holds_its_forked_stream_like_flax():
  ours = nnx.state(nnx.Dropout(0.5, rngs=nnx.Rngs(0)))
  theirs = fnnx.state(fnnx.Dropout(0.5, rngs=fnnx.Rngs(0)))
  assert [p for p, _ in nnx.to_flat_state(ours)] == [p for p, _ in fnnx.to_flat_state(theirs)]
  np.testing.assert_array_equal(raw(ours['rngs']['key'][...]), raw(theirs['rngs']['key'][...]))


def test_eval_switches_dropout_off_and_train_back_on():
  model = nnx.Sequential(nnx.Linear(6, 6, rngs=nnx.Rngs(0)), nnx.Dropout(0.5, rngs=nnx.Rngs(1)))
  model.eval()
  assert model.layers[1].deterministic is True
  np.testing.assert_array_equal(model(X), model.layers[0](X))
  model.train()
  assert model.layers[1].deterministic is False
  assert (model(X) == 0).any()


def test_call_deterministic_wins_over_the_constructor():
  layer = nnx.Dropout(0.5, deterministic=True, rngs=nnx.Rngs(0))
  assert (layer(X, deterministic=False) == 0).any()
  np.testing.assert_array_equal(layer(X), X)


@pytest.mark.parametrize('rate', [-0.1, 1.5])
def test_dropout_raises_when_rate_is_outside_zero_one(rate):
  with pytest.raises(ValueError, match=r'Dropout: rate .* must lie in \[0, 1\]'):
    nnx.Dropout(rate)


def test_dropout_raises_when_it_needs_rngs_but_has_none():
  with pytest.raises(ValueError, match='Dropout: deterministic=False .* needs random keys'):
    nnx.Dropout(0.5)(X)


def test_dropout_raises_when_deterministic_is_never_given():
  with pytest.raises(ValueError, match='Dropout: deterministic is None'):
    nnx.Dropout(0.5, deterministic=None)(X)


def test_dropout_raises_when_the_constructor_rngs_have_the_wrong_type():
  with pytest.raises(TypeError, match='Dropout: rngs must be'):
    nnx.Dropout(0.5, rngs=0)


def test_dropout_raises_when_the_call_rngs_have_the_wrong_type():
  with pytest.raises(TypeError, match='Dropout: rngs must be'):
    nnx.Dropout(0.5)(X, rngs=0)


# -- Sequential -----------------------------------------------------------------
def mlp(lib):
  rngs = lib.Rngs(0)
  return lib.Sequential(lib.Linear(6, 8, rngs=rngs), lib.relu,
                        lib.Dropout(0.5, rngs=rngs), lib.Linear(8, 3, rngs=rngs))


def test_sequential_repr_matches_flax():
  assert text(mlp(nnx)) == text(mlp(fnnx))


def test_sequential_state_paths_and_values_match_flax():
  ours = nnx.to_flat_state(nnx.state(mlp(nnx)))
  theirs = fnnx.to_flat_state(fnnx.state(mlp(fnnx)))
  assert [p for p, _ in ours] == [p for p, _ in theirs]
  for (_, a), (_, b) in zip(ours, theirs):
    np.testing.assert_array_equal(raw(a[...]), raw(b[...]))


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
