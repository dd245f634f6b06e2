"""The same models built with nnx_edu and flax.nnx: same State, same reprs.

Every test runs over every model of tests/models.py: a single block, nested
blocks, List/Dict containers, shared references, and a model holding Rngs.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx as fnnx

import nnx_edu as nnx
from parity import normalize_repr
from models import MODELS

MODEL_NAMES = list(MODELS)


def both(name, seed=0):
  return MODELS[name](nnx, seed), MODELS[name](fnnx, seed)


def flat_summary(state):
  """(path, type name, value) for each leaf, for comparing across libraries."""
  out = []
  for path, leaf in state.flat_state():
    value = leaf.get_value() if hasattr(leaf, 'get_value') else leaf
    out.append((path, type(leaf).__name__, np.asarray(jax.random.key_data(value))
                if jnp.issubdtype(getattr(value, 'dtype', float), jax.dtypes.prng_key)
                else np.asarray(value)))
  return out


def assert_same_state(ours, theirs):
  a, b = flat_summary(ours), flat_summary(theirs)
  assert [(p, t) for p, t, _ in a] == [(p, t) for p, t, _ in b]
  for (path, _, x), (_, _, y) in zip(a, b):
    np.testing.assert_array_equal(x, y, err_msg=str(path))


@pytest.mark.parametrize('name', MODEL_NAMES)
@pytest.mark.parametrize('seed', [0, 7])
def test_state_has_the_same_paths_types_and_values(name, seed):
  ours, theirs = both(name, seed)
  assert_same_state(nnx.state(ours), fnnx.state(theirs))


@pytest.mark.parametrize('name', MODEL_NAMES)
def test_state_repr_is_the_same_text(name):
  ours, theirs = both(name)
  assert repr(nnx.state(ours)) == repr(fnnx.state(theirs))


@pytest.mark.parametrize('name', MODEL_NAMES)
def test_module_repr_is_the_same_text(name):
  ours, theirs = both(name)
  assert normalize_repr(repr(ours)) == normalize_repr(repr(theirs))


@pytest.mark.parametrize('name', MODEL_NAMES)
def test_tree_map_of_shapes_prints_the_same(name):
  ours, theirs = both(name)
  assert repr(jax.tree.map(jnp.shape, nnx.state(ours))) == repr(
      jax.tree.map(jnp.shape, fnnx.state(theirs)))


@pytest.mark.parametrize('name', MODEL_NAMES)
def test_flat_state_repr_is_the_same_text(name):
  ours, theirs = both(name)
  assert repr(nnx.state(ours).flat_state()) == repr(fnnx.state(theirs).flat_state())


FILTERS = {
    'Param': lambda lib: (lib.Param,),
    'BatchStat': lambda lib: (lib.BatchStat,),
    'Param, ...': lambda lib: (lib.Param, ...),
    'tuple': lambda lib: ((lib.Param, lib.BatchStat),),
    'Not(Param)': lambda lib: (lib.Not(lib.Param),),
    'All': lambda lib: (lib.All(lib.Param, lib.PathContains('w')),),
    'Any': lambda lib: (lib.Any(lib.BatchStat, lib.PathContains('b')),),
    'PathContains': lambda lib: (lib.PathContains('first'),),
    'PathContains inexact': lambda lib: (lib.PathContains('bl', exact=False),),
    'OfType': lambda lib: (lib.OfType(lib.Variable),),
    'tag string': lambda lib: ('dropout',),
    'callable': lambda lib: (lambda path, x: path[-1] == 'b',),
    'Everything': lambda lib: (lib.Everything(),),
    'Nothing': lambda lib: (lib.Nothing(),),
    'True': lambda lib: (True,),
    'False': lambda lib: (False,),
    'None': lambda lib: (None,),
    'Ellipsis': lambda lib: (...,),
    'RngState, Param': lambda lib: (lib.RngState, lib.Param),
}


@pytest.mark.parametrize('name', MODEL_NAMES)
@pytest.mark.parametrize('filter_name', list(FILTERS))
def test_state_with_filters_selects_the_same_leaves(name, filter_name):
  ours, theirs = both(name)
  a = nnx.state(ours, *FILTERS[filter_name](nnx))
  b = fnnx.state(theirs, *FILTERS[filter_name](fnnx))
  a, b = (a, b) if isinstance(a, tuple) else ((a,), (b,))
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert_same_state(x, y)


@pytest.mark.parametrize('name', MODEL_NAMES)
@pytest.mark.parametrize('filters', [('Param', '...'), ('BatchStat', '...'), ('Param', 'BatchStat', '...')])
def test_split_then_merge_round_trips_and_keeps_the_state(name, filters):
  def resolve(lib):
    return tuple(... if f == '...' else getattr(lib, f) for f in filters)

  ours, theirs = both(name)
  graphdef, *states = nnx.split(ours, *resolve(nnx))
  their_graphdef, *their_states = fnnx.split(theirs, *resolve(fnnx))
  for a, b in zip(states, their_states):
    assert_same_state(a, b)
  rebuilt = nnx.merge(graphdef, *states)
  assert_same_state(nnx.state(rebuilt), nnx.state(ours))
  # merged nodes list their attributes sorted by name, in both libraries
  their_rebuilt = fnnx.merge(their_graphdef, *their_states)
  assert normalize_repr(repr(rebuilt)) == normalize_repr(repr(their_rebuilt))


@pytest.mark.parametrize('name', MODEL_NAMES)
def test_graphdefs_of_equal_structures_are_equal_and_hash_alike(name):
  a = MODELS[name](nnx, 0)
  b = nnx.clone(a)
  nnx.update(b, jax.tree.map(lambda x: x + 1, nnx.state(b, nnx.Param)))
  assert nnx.graphdef(a) == nnx.graphdef(b)
  assert hash(nnx.graphdef(a)) == hash(nnx.graphdef(b))
  b.din = 99  # a static attribute is part of the structure
  assert nnx.graphdef(a) != nnx.graphdef(b)


@pytest.mark.parametrize('name', MODEL_NAMES)
def test_clone_matches_flax_and_shares_nothing(name):
  ours, theirs = both(name)
  copy, their_copy = nnx.clone(ours), fnnx.clone(theirs)
  assert_same_state(nnx.state(copy), fnnx.state(their_copy))
  assert normalize_repr(repr(copy)) == normalize_repr(repr(their_copy))
  def variable_ids(model):
    return {id(v) for v in nnx.state(model).flat_state().leaves if isinstance(v, nnx.Variable)}

  assert not variable_ids(ours) & variable_ids(copy)


@pytest.mark.parametrize('name', MODEL_NAMES)
def test_iter_modules_yields_the_same_paths(name):
  ours, theirs = both(name)
  assert [p for p, _ in nnx.iter_modules(ours)] == [p for p, _ in fnnx.iter_modules(theirs)]
  assert [type(m).__name__ for _, m in nnx.iter_modules(ours)] == [
      type(m).__name__ for _, m in fnnx.iter_modules(theirs)]


@pytest.mark.parametrize('name', MODEL_NAMES)
def test_iter_graph_yields_flax_paths_minus_flax_internals(name):
  ours, theirs = both(name)
  internal = ('_pytree__nodes', '_pytree__state', '_length')
  theirs_paths = [p for p, _ in fnnx.iter_graph(theirs) if not set(p) & set(internal)]
  assert [p for p, _ in nnx.iter_graph(ours)] == theirs_paths


@pytest.mark.parametrize('name', MODEL_NAMES)
def test_update_with_a_modified_state_matches_flax(name):
  ours, theirs = both(name)
  for lib, model in ((nnx, ours), (fnnx, theirs)):
    params = lib.state(model, lib.Param)
    params = jax.tree.map(lambda x: x * 2 + 1, params)
    lib.update(model, params)
  assert_same_state(nnx.state(ours), fnnx.state(theirs))


def test_pop_matches_flax():
  ours, theirs = both('nested')
  x = jnp.ones((1, 2))
  for lib, model in ((nnx, ours), (fnnx, theirs)):
    model.sow(lib.Intermediate, 'seen', x)
    model.sow(lib.Intermediate, 'seen', x + 1)
  a, b = nnx.pop(ours, nnx.Intermediate), fnnx.pop(theirs, fnnx.Intermediate)
  assert repr(a) == repr(b)
  assert_same_state(nnx.state(ours), fnnx.state(theirs))


@pytest.mark.parametrize('seed', [0, 1, 42])
@pytest.mark.parametrize('streams', [{}, {'params': 3}, {'dropout': 5, 'params': 6}])
def test_rngs_give_the_same_key_sequences_as_flax(seed, streams):
  ours, theirs = nnx.Rngs(seed, **streams), fnnx.Rngs(seed, **streams)
  for name in ['params', 'dropout', 'default', 'params', 'other', 'dropout']:
    a, b = getattr(ours, name)(), getattr(theirs, name)()
    np.testing.assert_array_equal(jax.random.key_data(a), jax.random.key_data(b))
  np.testing.assert_array_equal(jax.random.key_data(ours()), jax.random.key_data(theirs()))
  assert repr(ours) == repr(theirs)


@pytest.mark.parametrize('split', [None, 2, (2, 3), {'params': 2}])
def test_rngs_fork_and_split_match_flax(split):
  ours, theirs = nnx.Rngs(0, params=1), fnnx.Rngs(0, params=1)
  if split is None:
    a, b = ours.fork(), theirs.fork()
  else:
    a, b = ours.split(split), theirs.split(split)
  assert_same_state(nnx.state(a), fnnx.state(b))
  if split is None:  # split streams hold a batch of keys, for nnx.vmap
    np.testing.assert_array_equal(jax.random.key_data(a.params()), jax.random.key_data(b.params()))


@pytest.mark.parametrize('seed', [0, 12345, jax.random.key(4), jax.random.PRNGKey(5)])
def test_rngs_accept_the_seed_forms_flax_accepts(seed):
  a, b = nnx.Rngs(seed), fnnx.Rngs(seed)
  np.testing.assert_array_equal(jax.random.key_data(a()), jax.random.key_data(b()))


@pytest.mark.parametrize('sampler, args', [('normal', ((3,),)), ('uniform', ((2, 2),)),
                                           ('bernoulli', (0.5, (4,))), ('randint', ((3,), 0, 9))])
def test_stream_samplers_draw_the_same_numbers(sampler, args):
  a = getattr(nnx.Rngs(0).params, sampler)(*args)
  b = getattr(fnnx.Rngs(0).params, sampler)(*args)
  np.testing.assert_array_equal(a, b)
