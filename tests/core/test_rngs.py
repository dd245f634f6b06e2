"""Core -- Rngs: streams, seeds, counts under jit, and the same keys as Flax 0.12.8."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx_edu as nnx
from tests.parity import assert_same_state


def test_rngs_without_a_default_name_the_missing_stream():
  rngs = nnx.Rngs(params=0)
  with pytest.raises(AttributeError, match="no stream 'dropout' and no 'default'"):
    rngs.dropout()
  with pytest.raises(KeyError):
    rngs['dropout']


@pytest.mark.parametrize('seed', [0.5, 'zero', [0, 1], jnp.ones(3)])
def test_rngs_refuse_a_seed_that_is_not_an_int_or_key(seed):
  with pytest.raises(TypeError, match="must be an int or a jax.random.key"):
    nnx.Rngs(seed)


def test_rngs_count_advances_through_jit_of_the_pure_functions():
  rngs = nnx.Rngs(0)
  graphdef, state = nnx.split(rngs)

  @jax.jit
  def draw(state):
    r = nnx.merge(graphdef, state)
    key = r.params()
    return key, nnx.state(r)

  _, state = draw(state)
  nnx.update(rngs, state)
  assert int(rngs.default.count.value) == 1


# -- against Flax ------------------------------------------------------------------------
@pytest.mark.parametrize('seed', [0, 1, 42])
@pytest.mark.parametrize('streams', [{}, {'params': 3}, {'dropout': 5, 'params': 6}])
def test_rngs_give_the_same_key_sequences_as_flax(seed, streams, fnnx):
  ours, theirs = nnx.Rngs(seed, **streams), fnnx.Rngs(seed, **streams)
  for name in ['params', 'dropout', 'default', 'params', 'other', 'dropout']:
    a, b = getattr(ours, name)(), getattr(theirs, name)()
    np.testing.assert_array_equal(jax.random.key_data(a), jax.random.key_data(b))
  np.testing.assert_array_equal(jax.random.key_data(ours()), jax.random.key_data(theirs()))
  assert repr(ours) == repr(theirs)


@pytest.mark.parametrize('split', [None, 2, (2, 3), {'params': 2}])
def test_rngs_fork_and_split_match_flax(split, fnnx):
  ours, theirs = nnx.Rngs(0, params=1), fnnx.Rngs(0, params=1)
  if split is None:
    a, b = ours.fork(), theirs.fork()
  else:
    a, b = ours.split(split), theirs.split(split)
  assert_same_state(nnx.state(a), fnnx.state(b))
  if split is None:  # split streams hold a batch of keys, for nnx.vmap
    np.testing.assert_array_equal(jax.random.key_data(a.params()), jax.random.key_data(b.params()))


@pytest.mark.parametrize('seed', [0, 12345, jax.random.key(4), jax.random.PRNGKey(5)])
def test_rngs_accept_the_seed_forms_flax_accepts(seed, fnnx):
  a, b = nnx.Rngs(seed), fnnx.Rngs(seed)
  np.testing.assert_array_equal(jax.random.key_data(a()), jax.random.key_data(b()))


@pytest.mark.parametrize('sampler, args', [('normal', ((3,),)), ('uniform', ((2, 2),)),
                                           ('bernoulli', (0.5, (4,))), ('randint', ((3,), 0, 9))])
def test_stream_samplers_draw_the_same_numbers(sampler, args, fnnx):
  a = getattr(nnx.Rngs(0).params, sampler)(*args)
  b = getattr(fnnx.Rngs(0).params, sampler)(*args)
  np.testing.assert_array_equal(a, b)
