"""Graph mode and tree mode (graph_mode.py, treewalk.py): the switches, and split,
merge, state, graphdef, clone and iter_graph with ``graph=``, against Flax 0.12.8."""

import jax
import jax.numpy as jnp
import pytest

import nnx_edu as nnx
from tests.models import MODELS
from tests.parity import assert_same_state

TREE_MODELS = [name for name in MODELS if name != 'with_sharing']


# -- the switches ------------------------------------------------------------------------
@pytest.mark.parametrize('switch', ['set_graph_mode', 'set_graph_updates'])
def test_a_switch_works_in_a_with_block_as_a_call_and_as_a_decorator(switch):
  setting = getattr(nnx, switch)
  assert setting.current_value() is True
  with setting(False):
    assert setting.current_value() is False
  assert setting.current_value() is True

  @setting(False)
  def inside():
    return setting.current_value()

  assert (inside(), setting.current_value()) == (False, True)
  setting(False)
  try:
    assert setting.current_value() is False
  finally:
    setting(True)


@pytest.mark.parametrize('switch', ['set_graph_mode', 'set_graph_updates'])
@pytest.mark.parametrize('value', ['yes', 1, None])
def test_a_switch_refuses_what_is_not_a_bool_and_shows_the_fix(switch, value):
  with pytest.raises(TypeError, match=rf'nnx.{switch} takes True or False, got .* '
                                      rf'For example nnx.{switch}\(False\)'):
    getattr(nnx, switch)(value)
  assert getattr(nnx, switch).current_value() is True


def test_the_environment_sets_the_default_and_a_bad_value_is_named(monkeypatch):
  from nnx_edu.core.graph_mode import bool_from_environment
  monkeypatch.setenv('NNX_GRAPH_MODE', 'off')
  assert bool_from_environment('NNX_GRAPH_MODE', True) is False
  monkeypatch.setenv('NNX_GRAPH_MODE', 'maybe')
  with pytest.raises(ValueError, match=r"NNX_GRAPH_MODE='maybe' is not a truth value"):
    bool_from_environment('NNX_GRAPH_MODE', True)


def test_graph_must_be_a_bool_or_none():
  with pytest.raises(TypeError, match="split: graph must be True, False or None"):
    nnx.split(nnx.Linear(1, 1, rngs=nnx.Rngs(0)), graph='no')


# -- tree mode against Flax --------------------------------------------------------------
@pytest.mark.parametrize('name', TREE_MODELS)
@pytest.mark.parametrize('graph', [True, False])
def test_split_gives_flax_states_in_both_modes(name, graph, fnnx):
  ours, theirs = MODELS[name](nnx), MODELS[name](fnnx)
  _, our_state = nnx.split(ours, graph=graph)
  _, their_state = fnnx.split(theirs, graph=graph)
  assert_same_state(our_state, their_state)
  assert_same_state(nnx.state(ours, graph=graph), fnnx.state(theirs, graph=graph))


@pytest.mark.parametrize('name', TREE_MODELS)
def test_tree_mode_paths_equal_graph_mode_paths(name):
  model = MODELS[name](nnx)
  tree_paths = [p for p, _ in nnx.split(model, graph=False)[1].flat_state()]
  graph_paths = [p for p, _ in nnx.split(model, graph=True)[1].flat_state()]
  assert tree_paths == graph_paths


@pytest.mark.parametrize('name', TREE_MODELS)
@pytest.mark.parametrize('copy', [False, True])
def test_tree_mode_merge_rebuilds_the_model_sharing_or_copying_variables(name, copy):
  model = MODELS[name](nnx)
  graphdef, state = nnx.split(model, graph=False)
  rebuilt = nnx.merge(graphdef, state, copy=copy)
  assert type(rebuilt) is type(model)
  ours = dict(nnx.state(rebuilt).flat_state())
  for path, variable in state.flat_state():
    if isinstance(variable, nnx.Variable):  # bare arrays are immutable: never copied
      assert (ours[path] is variable) is not copy
  assert_same_state(nnx.state(rebuilt), nnx.state(model))


def test_tree_mode_merge_of_a_pure_dict_recreates_the_variables(fnnx):
  model = nnx.BatchNorm(3, rngs=nnx.Rngs(0))
  graphdef, state = nnx.split(model, graph=False)
  rebuilt = nnx.merge(graphdef, nnx.to_pure_dict(state))
  theirs = fnnx.BatchNorm(3, rngs=fnnx.Rngs(0))
  their_graphdef, their_state = fnnx.split(theirs, graph=False)
  assert_same_state(nnx.state(rebuilt), fnnx.state(fnnx.merge(their_graphdef, their_state)))
  assert type(rebuilt.mean) is nnx.BatchStat


def test_tree_mode_merge_with_missing_leaves_names_them():
  graphdef, params, _ = nnx.split(nnx.BatchNorm(2, rngs=nnx.Rngs(0)), nnx.Param, ...,
                                  graph=False)
  with pytest.raises(ValueError, match='Pass every State that split returned'):
    nnx.merge(graphdef, params)


def test_set_graph_mode_false_makes_split_use_tree_mode():
  model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
  with nnx.set_graph_mode(False):
    graphdef = nnx.graphdef(model)
  assert repr(graphdef) == 'GraphDef(Linear, tree mode, 2 leaves)'
  assert 'tree mode' not in repr(nnx.graphdef(model))


def test_a_tree_mode_graphdef_is_a_static_jit_argument():
  model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
  graphdef, state = nnx.split(model, graph=False)

  @jax.jit
  def forward(graphdef, state, x):
    return nnx.merge(graphdef, state)(x)

  assert jnp.allclose(forward(graphdef, state, jnp.ones((1, 2))), model(jnp.ones((1, 2))))


# -- shared references: graph mode keeps them, tree mode refuses them -------------------
class Tied(nnx.Module):
  def __init__(self):
    weight = nnx.Param(jnp.ones(2))
    self.a, self.b = weight, weight


@pytest.mark.parametrize('function', ['split', 'state', 'graphdef', 'clone'])
def test_tree_mode_refuses_a_shared_variable_naming_both_paths(function):
  with pytest.raises(ValueError, match=rf'{function}: the same Param is reached at \.a and '
                                       rf'at \.b\. Tree mode \(graph=False\)'):
    getattr(nnx, function)(Tied(), graph=False)


def test_tree_mode_refusal_matches_flax_in_kind(fnnx):
  class FlaxTied(fnnx.Module):
    def __init__(self):
      weight = fnnx.Param(jnp.ones(2))
      self.a, self.b = weight, weight

  with pytest.raises(ValueError, match='Tree mode'):
    fnnx.split(FlaxTied(), graph=False)
  with pytest.raises(ValueError, match='Tree mode'):
    nnx.split(Tied(), graph=False)


def test_graph_mode_keeps_a_shared_variable_shared():
  rebuilt = nnx.merge(*nnx.split(Tied()))
  assert rebuilt.a is rebuilt.b


def test_iter_graph_in_tree_mode_refuses_sharing():
  with pytest.raises(ValueError, match=r"iter_graph: the same Param is reached at \('a',\)"):
    list(nnx.iter_graph(Tied(), graph=False))
  assert [p for p, _ in nnx.iter_graph(Tied())][-1] == ()


def test_tree_mode_refuses_an_object_that_is_not_a_pytree():
  class Opaque(nnx.Object):
    def __init__(self):
      self.w = nnx.Param(jnp.ones(1))

  class Holder(nnx.Module):
    def __init__(self):
      self.inner = Opaque()

  with pytest.raises(ValueError, match=r'split: the Opaque at \.inner was made with '
                                       r'pytree=False'):
    nnx.split(Holder(), graph=False)


# -- roots that are not Modules, as in Flax ---------------------------------------------
@pytest.mark.parametrize('graph', [True, False])
def test_an_array_splits_into_itself(graph, fnnx):
  x = jnp.array(1.0)
  graphdef, state = nnx.split(x, graph=graph)
  assert state is x and nnx.merge(graphdef, state) is x
  assert fnnx.split(x, graph=graph)[1] is x


@pytest.mark.parametrize('graph', [True, False])
def test_a_list_of_modules_splits_by_index(graph, fnnx):
  def build(lib):
    rngs = lib.Rngs(0)
    return [lib.Linear(2, 2, rngs=rngs), lib.BatchNorm(2, rngs=rngs)]

  ours, theirs = nnx.split(build(nnx), graph=graph), fnnx.split(build(fnnx), graph=graph)
  assert_same_state(ours[1], theirs[1])
  rebuilt = nnx.merge(*ours)
  assert isinstance(rebuilt, list) and type(rebuilt[1]) is nnx.BatchNorm


def test_update_of_a_list_writes_into_its_modules():
  layers = [nnx.Linear(2, 2, rngs=nnx.Rngs(0))]
  _, state = nnx.split(layers)
  nnx.update(layers, jax.tree.map(jnp.zeros_like, state))
  assert float(layers[0].kernel.value.sum()) == 0.0


# -- clone -----------------------------------------------------------------------------
@pytest.mark.parametrize('graph', [True, False])
def test_clone_arrays_gives_new_buffers_as_flax_does(graph, fnnx):
  for lib in (nnx, fnnx):
    model = lib.Linear(2, 3, rngs=lib.Rngs(0))
    copy = lib.clone(model, arrays=True, graph=graph)
    assert copy.kernel is not model.kernel
    assert copy.kernel.get_value() is not model.kernel.get_value()
    assert jnp.array_equal(copy.kernel.get_value(), model.kernel.get_value())


def test_clone_without_new_variables_shares_them(fnnx):
  for lib in (nnx, fnnx):
    model = lib.Linear(2, 3, rngs=lib.Rngs(0))
    assert lib.clone(model, variables=False).kernel is model.kernel


def test_clone_arrays_without_variables_is_refused(fnnx):
  model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='Leave variables=True'):
    nnx.clone(model, variables=False, arrays=True)
  with pytest.raises(ValueError):
    fnnx.clone(fnnx.Linear(2, 3, rngs=fnnx.Rngs(0)), variables=False, arrays=True)


@pytest.mark.parametrize('graph', [True, False])
def test_merge_copy_makes_new_variables(graph, fnnx):
  for lib in (nnx, fnnx):
    model = lib.Linear(2, 3, rngs=lib.Rngs(0))
    graphdef, state = lib.split(model, graph=graph)
    assert lib.merge(graphdef, state, copy=True).kernel is not model.kernel
    assert lib.merge(graphdef, state).kernel is model.kernel


# -- nnx.compat and Flax's module names ---------------------------------------------------
def test_compat_split_stays_in_graph_mode_under_tree_mode():
  with nnx.set_graph_mode(False):
    rebuilt = nnx.merge(*nnx.compat.split(Tied()))
  assert rebuilt.a is rebuilt.b


@pytest.mark.parametrize('name', ['filterlib', 'graphlib', 'module', 'pytreelib', 'reprlib',
                                  'rnglib', 'statelib', 'variablelib', 'compat'])
def test_flax_module_names_are_reachable_through_nnx(name, fnnx):
  assert hasattr(fnnx, name) and hasattr(nnx, name)


def test_graphlib_split_is_nnx_split():
  assert nnx.graphlib.split is nnx.split and nnx.statelib.State is nnx.State
