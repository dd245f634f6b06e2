"""core/pytrees.py and the Pytree class (core/objects.py): a Module is a JAX pytree, as in Flax.

Parity with Flax 0.12.8: the same leaves under the same key paths, for models and layers of every
family; ``jax.jit``, ``jax.grad``, ``jax.vmap`` and ``jax.tree.map`` taking Modules directly with
the same results; the same rules for which attributes are data.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import nnx_edu as nnx
from tests.models import MODELS, PROBE_X, probe
from tests.parity import assert_close, assert_same_state, normalize_repr


def keyed_leaves(tree) -> list[tuple[str, tuple, str]]:
  """``(key path, shape, dtype)`` for each leaf, as ``jax.tree_util`` sees ``tree``."""
  return [(jax.tree_util.keystr(path), np.shape(leaf), str(getattr(leaf, 'dtype', type(leaf))))
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)]


def layers(lib):
  """One layer of each family, built with ``lib`` from the same seed."""
  rngs = lib.Rngs(0, dropout=1)
  return {
      'Linear': lib.Linear(2, 3, rngs=rngs),
      'Conv': lib.Conv(1, 2, kernel_size=(3, 3), rngs=rngs),
      'Embed': lib.Embed(5, 3, rngs=rngs),
      'BatchNorm': lib.BatchNorm(3, rngs=rngs),
      'LayerNorm': lib.LayerNorm(3, rngs=rngs),
      'GroupNorm': lib.GroupNorm(4, num_groups=2, rngs=rngs),
      'Dropout': lib.Dropout(0.5, rngs=rngs),
      'MultiHeadAttention': lib.MultiHeadAttention(2, 4, qkv_features=4, decode=False, rngs=rngs),
      'LSTMCell': lib.LSTMCell(2, 3, rngs=rngs),
      'RNN': lib.RNN(lib.GRUCell(2, 3, rngs=rngs)),
      'LoRALinear': lib.LoRALinear(2, 3, lora_rank=1, rngs=rngs),
      'Sequential': lib.Sequential(lib.Linear(2, 2, rngs=rngs), lib.relu),
      'List': lib.List([lib.Linear(1, 1, rngs=rngs), 3, jnp.ones(1)]),
      'Dict': lib.Dict(b=lib.Param(jnp.ones(1)), a=2),
      'Rngs': lib.Rngs(3, params=4),
  }


LAYER_NAMES = list(layers(nnx))


# -- flattening, parity with Flax -------------------------------------------------------------
@pytest.mark.parametrize('name', MODELS)
def test_models_flatten_to_flaxs_leaves_and_key_paths(name, fnnx):
  ours, theirs = MODELS[name](nnx), MODELS[name](fnnx)
  assert keyed_leaves(ours) == keyed_leaves(theirs)
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
    np.testing.assert_array_equal(raw_numbers(a), raw_numbers(b))


def raw_numbers(leaf):
  """A leaf's numbers: a random key's data, or the array itself."""
  is_key = jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)
  return jax.random.key_data(leaf) if is_key else leaf


@pytest.mark.parametrize('name', LAYER_NAMES)
def test_layers_flatten_to_flaxs_leaves_and_key_paths(name, fnnx):
  assert keyed_leaves(layers(nnx)[name]) == keyed_leaves(layers(fnnx)[name])


@pytest.mark.parametrize('name', LAYER_NAMES)
def test_a_rebuilt_node_prints_as_flaxs_does(name, fnnx):
  ours = jax.tree.map(lambda x: x, layers(nnx)[name])
  theirs = jax.tree.map(lambda x: x, layers(fnnx)[name])
  # RNN's state_axes shows the class nnx.Carry by its module (the README's table)
  assert normalize_repr(repr(ours)) == normalize_repr(repr(theirs)).replace(
      'flax.nnx.transforms', 'nnx_edu.transforms')


def test_the_optimizer_flattens_like_flaxs(fnnx):
  def make(lib):
    model = lib.Linear(2, 3, rngs=lib.Rngs(0))
    return lib.Optimizer(model, optax.adam(1e-3), wrt=lib.Param)

  assert keyed_leaves(make(nnx)) == keyed_leaves(make(fnnx))


def test_equal_configurations_give_equal_treedefs_and_others_do_not():
  def structure(**kwargs):
    return jax.tree.structure(nnx.Linear(2, 3, rngs=nnx.Rngs(0), **kwargs))

  assert structure() == structure()
  assert structure(use_bias=False) != structure()
  assert structure() == jax.tree.structure(nnx.Linear(2, 3, rngs=nnx.Rngs(7)))


def test_unflatten_builds_a_new_node_with_new_variables():
  layer = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
  copy = jax.tree.map(lambda x: x + 1, layer)
  assert type(copy) is nnx.Linear and copy is not layer and copy.kernel is not layer.kernel
  np.testing.assert_array_equal(copy.kernel[...], layer.kernel[...] + 1)
  assert copy.in_features == 2 and copy(jnp.ones(2)).shape == (3,)


# -- JAX's own transforms take Modules ---------------------------------------------------------
@pytest.mark.parametrize('name', ['Linear', 'Conv', 'LayerNorm', 'MultiHeadAttention',
                                  'LoRALinear'])
def test_jax_jit_calls_a_module_and_matches_flax(name, fnnx):
  ours, theirs = layers(nnx)[name], layers(fnnx)[name]
  x = {'Conv': jnp.ones((1, 4, 4, 1)), 'LayerNorm': jnp.arange(6.0).reshape(2, 3),
       'MultiHeadAttention': jnp.ones((1, 3, 4))}.get(name, jnp.arange(2.0))
  call = jax.jit(lambda module, x: module(x))
  assert_close(call(ours, x), call(theirs, x))
  assert_close(call(ours, x), ours(x))


def test_jax_grad_of_a_module_returns_gradients_in_a_module_like_flaxs(fnnx):
  def loss(model):
    return jnp.sum(model(PROBE_X[:, :2]) ** 2)

  ours, theirs = MODELS['single_block'](nnx), MODELS['single_block'](fnnx)
  grads_ours, grads_theirs = jax.grad(loss)(ours), jax.grad(loss)(theirs)
  assert type(grads_ours).__name__ == type(grads_theirs).__name__
  assert_same_state(nnx.state(grads_ours), fnnx.state(grads_theirs), exact=False)


def test_jax_vmap_maps_a_module_over_an_axis():
  layer = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
  out = jax.vmap(lambda layer, x: layer(x), in_axes=(None, 0))(layer, jnp.ones((5, 2)))
  np.testing.assert_allclose(out, layer(jnp.ones((5, 2))), rtol=1e-6)


def test_changes_inside_jax_jit_stay_inside_unlike_nnx_jit():
  model, x = probe(nnx), PROBE_X
  jax.jit(lambda model, x: model(x))(model, x)
  assert float(jnp.abs(model.stat[...]).sum()) == 0.0  # the pytree was a copy
  nnx.jit(lambda model, x: model(x))(model, x)
  assert float(jnp.abs(model.stat[...]).sum()) > 0.0   # nnx.jit writes back


# -- which attributes are data ------------------------------------------------------------------
@pytest.mark.parametrize('make', [
    lambda lib: jnp.ones(1), lambda lib: np.ones(1), lambda lib: lib.Param(1.0),
    lambda lib: lib.Rngs(0), lambda lib: lib.Linear(1, 1, rngs=lib.Rngs(0)), lambda lib: 1.0,
    lambda lib: 'text', lambda lib: None, lambda lib: [jnp.ones(1)], lambda lib: (1, 2),
    lambda lib: lib.List([1]), lambda lib: {'a': lib.Param(1.0)},
], ids=['jax', 'numpy', 'param', 'rngs', 'module', 'float', 'str', 'none', 'list', 'tuple',
        'nnx_list', 'dict'])
def test_is_data_and_has_data_agree_with_flax(make, fnnx):
  assert nnx.is_data(make(nnx)) == fnnx.is_data(make(fnnx))
  assert len(nnx.has_data(make(nnx))) == len(fnnx.has_data(make(fnnx)))


def test_marked_attributes_are_data_or_static_as_in_flax(fnnx):
  def make(lib):
    class Marks(lib.Module):
      def __init__(self):
        self.count = lib.data(0)
        self.label = lib.data('s')
        self.sizes = lib.data([1, 2.0])
        self.scale = lib.static(2.0)
        self.empty = lib.data(None)
    return Marks()

  assert keyed_leaves(make(nnx)) == keyed_leaves(make(fnnx))
  assert normalize_repr(repr(nnx.state(make(nnx)))) == normalize_repr(repr(fnnx.state(make(fnnx))))


@pytest.mark.parametrize('value', [[jnp.ones(1)], (jnp.ones(1), 2), {'w': jnp.ones(1)}])
def test_a_static_container_holding_arrays_is_refused_as_in_flax(value, fnnx):
  for lib in (nnx, fnnx):
    class Holder(lib.Module):
      def __init__(self):
        self.held = value

    with pytest.raises(ValueError, match='held'):
      Holder()


def test_a_static_mark_on_data_is_refused_with_the_fix():
  class Model(nnx.Module):
    def __init__(self):
      self.weights = nnx.static([nnx.Param(jnp.ones(1))])

  with pytest.raises(ValueError, match=r'Found data in value.*marked nnx.static but holds '
                                       r'Variables.*nnx.data\(...\)'):
    Model()


def test_a_class_with_pytree_false_holds_anything_and_is_one_leaf():
  class Bag(nnx.Pytree, pytree=False):
    def __init__(self):
      self.arrays = [jnp.ones(1)]

  class SubBag(Bag):
    pass

  assert jax.tree.leaves(Bag())[0].__class__ is Bag
  assert jax.tree.leaves(SubBag())[0].__class__ is SubBag  # the choice is inherited
  assert nnx.is_data(Bag())


def test_object_is_a_graph_node_but_not_a_pytree_as_in_flax(fnnx):
  for lib in (nnx, fnnx):
    class Counter(lib.Object):
      def __init__(self):
        self.count = lib.BatchStat(jnp.array(0))

    counter = Counter()
    assert jax.tree.leaves(counter) == [counter]
    assert list(lib.state(counter)) == ['count']
  assert not issubclass(nnx.Module, nnx.Object) and issubclass(nnx.Module, nnx.Pytree)


def test_register_data_type_makes_its_values_data(fnnx):
  for lib in (nnx, fnnx):
    @lib.register_data_type
    class Scale:
      def __init__(self, value):
        self.value = value

    class Model(lib.Module):
      def __init__(self):
        self.scale = Scale(2.0)

    assert [type(leaf).__name__ for leaf in jax.tree.leaves(Model())] == ['Scale']


def test_register_data_type_refuses_a_non_class():
  with pytest.raises(TypeError, match='register_data_type takes a class.*@nnx.register_data_type'):
    nnx.register_data_type(3)


def test_a_field_option_with_a_value_is_refused_with_the_fix():
  with pytest.raises(TypeError, match=r'nnx.data\(value, default=...\).*x: int = nnx.data'):
    nnx.data(3, default=4)


def test_data_and_static_declared_in_the_class_body_as_in_flax(fnnx):
  for lib in (nnx, fnnx):
    class Model(lib.Module):
      count: int = lib.data()
      name: str = lib.static()

      def __init__(self):
        self.count, self.name = 3, 'm'

    assert jax.tree.leaves(Model()) == [3]


@pytest.mark.parametrize('kind', ['Data', 'Static'])
def test_deprecated_annotations_warn_as_flaxs_do_and_mark(kind, fnnx):
  messages, leaves = [], []
  for lib in (nnx, fnnx):
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter('always')

      class Model(lib.Module):
        count: getattr(lib, kind)[int]

        def __init__(self):
          self.count = 3

    messages.append([str(w.message) for w in caught if w.category is DeprecationWarning])
    leaves.append(jax.tree.leaves(Model()))
  assert messages[0] == messages[1] and messages[0]
  assert leaves[0] == leaves[1]


def test_nnx_dataclass_gives_flaxs_leaves_and_repr(fnnx):
  def make(lib):
    @lib.dataclass
    class Point(lib.Pytree):
      xy: jax.Array
      label: str = lib.static(default='origin')
      weight: float = lib.data(default=1.0)
    return Point(jnp.zeros(2))

  assert keyed_leaves(make(nnx)) == keyed_leaves(make(fnnx))
  assert repr(make(nnx)) == repr(make(fnnx))


def test_check_pytree_finds_data_set_behind_the_rules_back():
  model = nnx.Linear(1, 1, rngs=nnx.Rngs(0))
  nnx.check_pytree({'model': model})
  vars(model)['hidden'] = {'w': jnp.ones(1)}
  with pytest.raises(ValueError, match='Linear.hidden is a plain dict'):
    nnx.check_pytree({'model': model})
