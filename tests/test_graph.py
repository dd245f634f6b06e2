"""The graph: split/merge/update/clone/pop, sharing, containers, and errors that teach."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx_edu as nnx
from models import MODELS, block_class


def test_state_holds_the_models_own_variables():
  model = MODELS['nested'](nnx)
  state = nnx.state(model)
  assert state.first.w is model.first.w
  state.first.w.value = jnp.zeros_like(state.first.w.value)
  np.testing.assert_array_equal(model.first.w.value, 0.0)


def test_shared_variables_and_modules_stay_shared_after_a_round_trip():
  model = MODELS['with_sharing'](nnx)
  graphdef, state = nnx.split(model)
  assert ('tied_again',) not in state.flat_state().paths    # stored once
  assert ('alpha', 'w') in state.flat_state().paths          # at its first path, sorted
  copy = nnx.merge(graphdef, state)
  assert copy.alpha is copy.zeta and copy.tied is copy.tied_again


def test_clone_keeps_sharing_inside_the_copy():
  copy = nnx.clone(MODELS['with_sharing'](nnx))
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
  with pytest.raises(ValueError, match=r"\('stat',\): BatchStat\nAdd a filter for them, or pass `...`"):
    nnx.split(MODELS['single_block'](nnx), nnx.Param)


def test_split_of_something_that_is_not_a_module_says_so():
  with pytest.raises(TypeError, match='Expected a Module'):
    nnx.split({'w': jnp.ones(1)})


def test_update_refuses_a_path_the_model_does_not_have():
  model = MODELS['single_block'](nnx)
  with pytest.raises(ValueError, match=r"no attribute at \('decoder',\)"):
    nnx.update(model, {'decoder': {'w': jnp.ones(1)}})


def test_update_refuses_a_value_of_another_shape():
  model = MODELS['single_block'](nnx)
  with pytest.raises(ValueError, match=r"has shape \(5,\) but the model's Param there has shape \(3,\)"):
    nnx.update(model, {'b': jnp.ones(5)})


def test_update_refuses_a_variable_of_another_type():
  model = MODELS['single_block'](nnx)
  with pytest.raises(ValueError, match="has a BatchStat at \\('b',\\) but the model has a Param"):
    nnx.update(model, {'b': nnx.BatchStat(jnp.ones(3))})


def test_update_adds_a_new_leaf_to_an_existing_node_as_sow_needs():
  model = MODELS['single_block'](nnx)
  nnx.update(model, {'seen': nnx.Intermediate((jnp.ones(2),))})
  assert isinstance(model.seen, nnx.Intermediate)


def test_pop_removes_and_returns_the_selected_variables():
  model = MODELS['nested'](nnx)
  stats = nnx.pop(model, nnx.BatchStat)
  assert sorted(stats.flat_state().paths) == [('first', 'stat'), ('second', 'stat')]
  assert not hasattr(model.first, 'stat')


def test_pop_without_filters_asks_for_one():
  with pytest.raises(TypeError, match='at least one filter'):
    nnx.pop(MODELS['nested'](nnx))


# -- attribute rules ----------------------------------------------------------------
def test_a_plain_list_of_modules_is_refused_with_the_fix():
  Block = block_class(nnx)

  class Model(nnx.Module):
    def __init__(self, rngs):
      self.layers = [Block(1, 1, rngs)]

  with pytest.raises(TypeError, match=r'plain list holding Modules.*nnx.List\(...\).*nnx.data\(...\)'):
    Model(nnx.Rngs(0))


def test_a_plain_dict_of_variables_is_refused_with_the_fix():
  class Model(nnx.Module):
    def __init__(self):
      self.table = {'w': nnx.Param(jnp.ones(1))}

  with pytest.raises(TypeError, match=r'nnx.Dict\(...\)'):
    Model()


def test_nnx_data_tracks_a_plain_list_and_merge_rebuilds_it():
  Block = block_class(nnx)

  class Model(nnx.Module):
    def __init__(self, rngs):
      self.layers = nnx.data([Block(1, 2, rngs), Block(2, 1, rngs)])
      self.pair = nnx.data((nnx.Param(jnp.ones(1)), 3))

  model = Model(nnx.Rngs(0))
  graphdef, state = nnx.split(model)
  assert ('layers', 1, 'w') in state.flat_state().paths
  copy = nnx.merge(graphdef, state)
  assert type(copy.layers) is list and type(copy.pair) is tuple and copy.pair[1] == 3


def test_static_data_is_refused():
  class Model(nnx.Module):
    def __init__(self):
      self.layers = nnx.static([nnx.Param(jnp.ones(1))])

  with pytest.raises(TypeError, match='marked nnx.static but holds'):
    Model()


def test_replacing_a_variable_by_a_bare_array_is_refused():
  model = MODELS['single_block'](nnx)
  with pytest.raises(TypeError, match=r'holds a Param; assigning a bare array would replace it.*\.b\.value = \.\.\.'):
    model.b = jnp.zeros(3)
  model.b = nnx.Param(jnp.zeros(3))   # replacing by a Variable is fine
  model.b.value = jnp.ones(3)


def test_bare_arrays_are_data_and_statics_are_not():
  class Model(nnx.Module):
    def __init__(self):
      self.table = jnp.arange(3)
      self.name = 'm'

  assert list(nnx.state(Model())) == ['table']


# -- modules ---------------------------------------------------------------------------
def test_sow_appends_and_refuses_a_different_type():
  model = MODELS['single_block'](nnx)
  model.sow(nnx.Intermediate, 'h', 1)
  model.sow(nnx.Intermediate, 'h', 2)
  assert model.h.value == (1, 2)
  model.sow('intermediates', 'g', 3)
  assert isinstance(model.g, nnx.Intermediate)
  with pytest.raises(TypeError, match='already holds a Intermediate, not a BatchStat'):
    model.sow(nnx.BatchStat, 'h', 3)


def test_sow_with_a_custom_reduction():
  model = MODELS['single_block'](nnx)
  for x in (1.0, 2.0, 3.0):
    model.sow(nnx.Intermediate, 'total', x, reduce_fn=lambda a, b: a + b, init_fn=lambda: 0.0)
  assert model.total.value == 6.0


def test_set_attributes_with_a_filter_touches_only_selected_modules():
  model = MODELS['nested'](nnx)
  model.set_attributes(nnx.PathContains('first'), din=99)
  assert model.first.din == 99 and model.second.din == 4


def test_list_and_dict_behave_like_python_containers():
  Block = block_class(nnx)
  layers = nnx.List([Block(1, 1, nnx.Rngs(0))])
  layers.append(Block(1, 1, nnx.Rngs(1)))
  layers.insert(0, 'static label')
  assert len(layers) == 3 and isinstance(layers[1:], nnx.List)
  del layers[0]
  heads = nnx.Dict(a=Block(1, 1, nnx.Rngs(0)))
  heads['b'] = Block(1, 1, nnx.Rngs(1))
  assert heads.a is heads['a'] and sorted(heads) == ['a', 'b']
  graphdef, state = nnx.split(heads)
  assert sorted(nnx.merge(graphdef, state)) == ['a', 'b']


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
