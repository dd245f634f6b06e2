"""Core -- the graph: state, split/merge, update, clone, pop, set_metadata, and walking it.

Unit tests, and parity with Flax 0.12.8 over every model of tests/models.py: a single
block, nested blocks, List/Dict containers, shared references, and a model holding Rngs.
The walk itself (GraphDef, flatten, unflatten) is the chapter graphwalk.py; its tests are
here too.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx_edu as nnx
from tests.models import MODELS, both
from tests.parity import assert_same_state, normalize_repr, user_metadata

MODEL_NAMES = list(MODELS)


# -- a model's State ----------------------------------------------------------------------
def test_state_holds_the_models_own_variables():
  model = MODELS['nested'](nnx)
  state = nnx.state(model)
  assert state.first.w is model.first.w
  state.first.w.value = jnp.zeros_like(state.first.w.value)
  np.testing.assert_array_equal(model.first.w.value, 0.0)


@pytest.mark.parametrize('name', MODEL_NAMES)
@pytest.mark.parametrize('seed', [0, 7])
def test_state_has_the_same_paths_types_and_values(name, seed, fnnx):
  ours, theirs = both(name, seed)
  assert_same_state(nnx.state(ours), fnnx.state(theirs))


@pytest.mark.parametrize('name', MODEL_NAMES)
def test_state_repr_is_the_same_text(name, fnnx):
  ours, theirs = both(name)
  assert repr(nnx.state(ours)) == repr(fnnx.state(theirs))


@pytest.mark.parametrize('name', MODEL_NAMES)
def test_tree_map_of_shapes_prints_the_same(name, fnnx):
  ours, theirs = both(name)
  assert repr(jax.tree.map(jnp.shape, nnx.state(ours))) == repr(
      jax.tree.map(jnp.shape, fnnx.state(theirs)))


@pytest.mark.parametrize('name', MODEL_NAMES)
def test_flat_state_repr_is_the_same_text(name, fnnx):
  ours, theirs = both(name)
  assert repr(nnx.state(ours).flat_state()) == repr(fnnx.state(theirs).flat_state())


# -- split and merge ---------------------------------------------------------------------
def test_shared_variables_and_modules_stay_shared_after_a_round_trip():
  model = MODELS['with_sharing'](nnx)
  graphdef, state = nnx.split(model)
  assert ('tied_again',) not in state.flat_state().paths    # stored once
  assert ('alpha', 'w') in state.flat_state().paths          # at its first path, sorted
  copy = nnx.merge(graphdef, state)
  assert copy.alpha is copy.zeta and copy.tied is copy.tied_again


def test_merge_needs_every_state_split_returned():
  graphdef, params, stats = nnx.split(MODELS['single_block'](nnx), nnx.Param, nnx.BatchStat)
  with pytest.raises(ValueError, match=r"a leaf at \('stat',\) but no State given has a value"):
    nnx.merge(graphdef, params)


def test_merge_refuses_a_state_from_another_model():
  graphdef, _ = nnx.split(MODELS['single_block'](nnx))
  other = nnx.state(MODELS['nested'](nnx))
  with pytest.raises(ValueError, match='GraphDef'):
    nnx.merge(graphdef, other)


def test_merge_explains_its_argument_order():
  _, state = nnx.split(MODELS['single_block'](nnx))
  with pytest.raises(TypeError, match=r'merge expects a GraphDef first'):
    nnx.merge(state, state)


def test_split_refuses_filters_that_miss_a_variable_and_names_it():
  with pytest.raises(ValueError,
                     match=r"\('stat',\): BatchStat\nAdd a filter for them, or pass `...`"):
    nnx.split(MODELS['single_block'](nnx), nnx.Param)


def test_split_of_a_plain_dict_takes_its_arrays_as_flax_does(fnnx):
  ours = nnx.split({'w': jnp.ones(1)})[1]
  theirs = fnnx.split({'w': jnp.ones(1)})[1]
  assert nnx.to_pure_dict(ours) == fnnx.to_pure_dict(theirs) == {'w': jnp.ones(1)}


@pytest.mark.parametrize('name', MODEL_NAMES)
@pytest.mark.parametrize('filters', [('Param', '...'), ('BatchStat', '...'),
                                     ('Param', 'BatchStat', '...')])
def test_split_then_merge_round_trips_and_keeps_the_state(name, filters, fnnx):
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


# -- update ------------------------------------------------------------------------------
def test_update_refuses_a_path_the_model_does_not_have():
  model = MODELS['single_block'](nnx)
  with pytest.raises(ValueError, match=r"no attribute at \('decoder',\)"):
    nnx.update(model, {'decoder': {'w': jnp.ones(1)}})


def test_update_refuses_a_value_of_another_shape():
  model = MODELS['single_block'](nnx)
  with pytest.raises(ValueError,
                     match=r"has shape \(5,\) but the model's Param there has shape \(3,\)"):
    nnx.update(model, {'b': jnp.ones(5)})


def test_update_refuses_a_variable_of_another_type():
  model = MODELS['single_block'](nnx)
  with pytest.raises(ValueError, match="has a BatchStat at \\('b',\\) but the model has a Param"):
    nnx.update(model, {'b': nnx.BatchStat(jnp.ones(3))})


def test_update_adds_a_new_leaf_to_an_existing_node_as_sow_needs():
  model = MODELS['single_block'](nnx)
  nnx.update(model, {'seen': nnx.Intermediate((jnp.ones(2),))})
  assert isinstance(model.seen, nnx.Intermediate)


@pytest.mark.parametrize('name', MODEL_NAMES)
def test_update_with_a_modified_state_matches_flax(name, fnnx):
  ours, theirs = both(name)
  for lib, model in ((nnx, ours), (fnnx, theirs)):
    params = lib.state(model, lib.Param)
    params = jax.tree.map(lambda x: x * 2 + 1, params)
    lib.update(model, params)
  assert_same_state(nnx.state(ours), fnnx.state(theirs))


# -- clone and pop -----------------------------------------------------------------------
def test_clone_keeps_sharing_inside_the_copy():
  copy = nnx.clone(MODELS['with_sharing'](nnx))
  assert copy.alpha is copy.zeta and copy.tied is copy.tied_again


@pytest.mark.parametrize('name', MODEL_NAMES)
def test_clone_matches_flax_and_shares_nothing(name, fnnx):
  ours, theirs = both(name)
  copy, their_copy = nnx.clone(ours), fnnx.clone(theirs)
  assert_same_state(nnx.state(copy), fnnx.state(their_copy))
  assert normalize_repr(repr(copy)) == normalize_repr(repr(their_copy))
  def variable_ids(model):
    return {id(v) for v in nnx.state(model).flat_state().leaves if isinstance(v, nnx.Variable)}

  assert not variable_ids(ours) & variable_ids(copy)


def test_pop_removes_and_returns_the_selected_variables():
  model = MODELS['nested'](nnx)
  stats = nnx.pop(model, nnx.BatchStat)
  assert sorted(stats.flat_state().paths) == [('first', 'stat'), ('second', 'stat')]
  assert not hasattr(model.first, 'stat')


def test_pop_without_filters_asks_for_one():
  with pytest.raises(TypeError, match='at least one filter'):
    nnx.pop(MODELS['nested'](nnx))


def test_pop_matches_flax(fnnx):
  ours, theirs = both('nested')
  x = jnp.ones((1, 2))
  for lib, model in ((nnx, ours), (fnnx, theirs)):
    model.sow(lib.Intermediate, 'seen', x)
    model.sow(lib.Intermediate, 'seen', x + 1)
  a, b = nnx.pop(ours, nnx.Intermediate), fnnx.pop(theirs, fnnx.Intermediate)
  assert repr(a) == repr(b)
  assert_same_state(nnx.state(ours), fnnx.state(theirs))


# -- set_metadata -------------------------------------------------------------------------
@pytest.mark.parametrize('only', ['Variable', 'Param', 'BatchStat', 'Cache', 'Everything',
                                  'kernel_or_mean', 'not_param'])
def test_set_metadata_sets_the_selected_variables_like_flax(only, fnnx):
  def run(lib):
    filters = {'Variable': lib.Variable, 'Param': lib.Param, 'BatchStat': lib.BatchStat,
               'Cache': lib.Cache, 'Everything': ..., 'not_param': lib.Not(lib.Param),
               'kernel_or_mean': lib.Any(lib.PathContains('kernel'), lib.PathContains('mean'))}
    model = lib.Sequential(lib.Linear(2, 3, rngs=lib.Rngs(0)), lib.BatchNorm(3, rngs=lib.Rngs(0)))
    lib.set_metadata(model, only=filters[only], frozen=True, note='x')
    return {path: user_metadata(v) for path, v in lib.to_flat_state(lib.state(model))}

  assert run(nnx) == run(fnnx)


def test_set_metadata_is_seen_by_a_jitted_function_called_before():
  model = nnx.Linear(2, 2, rngs=nnx.Rngs(0))
  scaled = nnx.jit(lambda m: m.kernel.get_metadata().get('scale', 1) * m.kernel[...])
  before = scaled(model)
  nnx.set_metadata(model, only=nnx.Param, scale=3)
  np.testing.assert_allclose(scaled(model), 3 * before)


# -- walking the graph (graphwalk) -----------------------------------------------------------
@pytest.mark.parametrize('name', MODEL_NAMES)
def test_iter_graph_yields_flax_paths_minus_flax_internals(name, fnnx):
  ours, theirs = both(name)
  internal = ('_pytree__nodes', '_pytree__state', '_length')
  theirs_paths = [p for p, _ in fnnx.iter_graph(theirs) if not set(p) & set(internal)]
  assert [p for p, _ in nnx.iter_graph(ours)] == theirs_paths


def test_tuples_stay_containers_after_an_empty_tuple_was_seen_first():
  from nnx_edu.core import graphwalk

  graphwalk._KINDS.pop(tuple, None)  # forget what tuples are, then meet () first

  class Holder(nnx.Module):
    def __init__(self):
      self.nothing = ()
      self.pair = nnx.data((nnx.Param(jnp.ones(1)), 2))

  assert list(nnx.state(Holder()).flat_state().paths) == [('pair', 0)]
