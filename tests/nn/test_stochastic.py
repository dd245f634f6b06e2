"""Dropout, measured against Flax 0.12.8: the same masks, call after call."""

import jax
import numpy as np
import pytest
from flax import nnx as fnnx

import nnx_edu as nnx
from tests.parity import assert_same_state, inputs, normalize_repr

X = inputs(4, 5, 6, seed=0)


def rngs_pair(kind: str):
  """The same source of keys, built in both libraries."""
  if kind == 'default':
    return nnx.Rngs(0), fnnx.Rngs(0)
  if kind == 'dropout_stream':
    return nnx.Rngs(params=0, dropout=7), fnnx.Rngs(params=0, dropout=7)
  return nnx.RngStream(3, tag='dropout'), fnnx.RngStream(3, tag='dropout')


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
  assert normalize_repr(repr(ours)) == normalize_repr(repr(theirs))


def test_dropout_state_holds_its_forked_stream_like_flax():
  assert_same_state(nnx.Dropout(0.5, rngs=nnx.Rngs(0)), fnnx.Dropout(0.5, rngs=fnnx.Rngs(0)))


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


# -- errors that teach ----------------------------------------------------------
@pytest.mark.parametrize('rate', [-0.1, 1.5])
def test_dropout_raises_when_rate_is_outside_zero_one(rate):
  with pytest.raises(ValueError, match=r'Dropout: rate .* must lie in \[0, 1\]'):
    nnx.Dropout(rate)


def test_dropout_raises_when_it_needs_rngs_but_has_none():
  with pytest.raises(ValueError, match='`deterministic` is False, but no `rngs` argument was '
                                       r'provided to Dropout.* needs random keys'):
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
