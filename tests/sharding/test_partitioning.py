"""Sharding -- partitioning: with_partitioning, get_partition_spec and get_named_sharding,
against Flax 0.12.8, on a one-device mesh."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx as fnnx

import nnx_edu as nnx
from tests.parity import normalize_repr, user_metadata


def mesh_1d():
  return jax.make_mesh((1,), ('data',))


LAYERS = {
    'linear': (lambda lib, init: lib.Linear(4, 6, kernel_init=init, rngs=lib.Rngs(0)), 'kernel'),
    'conv': (lambda lib, init: lib.Conv(2, 3, (3, 3), kernel_init=init, rngs=lib.Rngs(1)),
             'kernel'),
    'embed': (lambda lib, init: lib.Embed(5, 4, embedding_init=init, rngs=lib.Rngs(2)),
              'embedding'),
}


NAMES = {'linear': [('data', None), (None, 'data'), ('data',)],
         'conv': [(None, None, None, 'data'), ('data', None)],
         'embed': [('data', None)]}


GRID = [(layer, names) for layer in LAYERS for names in NAMES[layer]]


def build(lib, layer, names, how):
  make, attr = LAYERS[layer]
  if how == 'names only':
    with lib.use_eager_sharding(False):
      return make(lib, lib.with_partitioning(lib.initializers.lecun_normal(), names)), attr
  if how == 'mesh argument':
    init = lib.with_partitioning(lib.initializers.lecun_normal(), names, mesh=mesh_1d())
    return make(lib, init), attr
  with jax.set_mesh(mesh_1d()):  # 'set_mesh'
    return make(lib, lib.with_partitioning(lib.initializers.lecun_normal(), names)), attr


@pytest.mark.parametrize('how', ['names only', 'mesh argument', 'set_mesh'])
@pytest.mark.parametrize('layer, names', GRID)
def test_with_partitioning_gives_the_param_flax_gives(layer, names, how):
  (ours, attr), (theirs, _) = build(nnx, layer, names, how), build(fnnx, layer, names, how)
  mine, flax_param = getattr(ours, attr), getattr(theirs, attr)
  np.testing.assert_array_equal(mine[...], flax_param[...])
  assert user_metadata(mine) == user_metadata(flax_param)
  assert normalize_repr(repr(mine)) == normalize_repr(repr(flax_param))
  assert mine[...].sharding == flax_param[...].sharding  # placed on the mesh, or not, alike


@pytest.mark.parametrize('how', ['names only', 'set_mesh'])
@pytest.mark.parametrize('layer, names', GRID)
def test_get_partition_spec_and_named_sharding_read_the_names_like_flax(layer, names, how):
  (ours, _), (theirs, _) = build(nnx, layer, names, how), build(fnnx, layer, names, how)
  specs = [lib.to_flat_state(lib.get_partition_spec(lib.state(m)))
           for lib, m in ((nnx, ours), (fnnx, theirs))]
  assert [(p, v.get_value()) for p, v in specs[0]] == [(p, v.get_value()) for p, v in specs[1]]
  named = [lib.to_flat_state(lib.get_named_sharding(lib.state(m), mesh_1d()))
           for lib, m in ((nnx, ours), (fnnx, theirs))]
  assert [(p, v.get_value()) for p, v in named[0]] == [(p, v.get_value()) for p, v in named[1]]


def test_get_partition_spec_of_a_module_and_of_a_plain_pytree():
  with nnx.use_eager_sharding(False):
    model = nnx.Linear(2, 3, rngs=nnx.Rngs(0), kernel_metadata={'out_sharding': ('a', 'b')})
  specs = nnx.get_partition_spec(model)
  assert isinstance(specs, nnx.Linear)
  assert specs.kernel.get_value() == jax.P('a', 'b') and specs.bias.get_value() == jax.P()
  tree = {'w': jnp.ones(3), 'n': 3}
  assert nnx.get_partition_spec(tree) == fnnx.get_partition_spec(tree) == {'w': jax.P(), 'n': None}


def test_sharding_metadata_survives_split_merge_clone_and_jit():
  with jax.set_mesh(mesh_1d()):
    model = nnx.Linear(2, 3, kernel_init=nnx.with_partitioning(nnx.initializers.lecun_normal(),
                                                               ('data', None)), rngs=nnx.Rngs(0))
  expected = {'out_sharding': ('data', None), 'mesh': None}
  assert nnx.merge(*nnx.split(model)).kernel.get_metadata() == expected
  assert nnx.clone(model).kernel.get_metadata() == expected

  seen_inside = []

  @nnx.jit
  def step(m):
    seen_inside.append(m.kernel.get_metadata())
    m.kernel[...] = m.kernel[...] * 2

  step(model)
  assert seen_inside == [expected]
  assert model.kernel.get_metadata() == expected
  assert model.kernel[...].sharding.spec == jax.P('data', None)


def test_an_optimizer_of_a_model_with_names_only_keeps_them_without_a_mesh():
  with nnx.use_eager_sharding(False):
    model = nnx.Linear(2, 3, kernel_init=nnx.with_partitioning(nnx.initializers.lecun_normal(),
                                                               ('data', None)), rngs=nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
  mu = optimizer.opt_state[0].mu['kernel']
  assert mu.get_metadata() == {'out_sharding': ('data', None), 'mesh': None,
                               'eager_sharding': False}


# -- errors that teach -------------------------------------------------------------------
def test_with_partitioning_raises_when_there_are_more_names_than_axes():
  init = nnx.with_partitioning(nnx.initializers.lecun_normal(), ('data', None, None))
  expected = re.escape(
      "with_partitioning(init, ('data', None, None)): 3 sharding names ('data', None, None) "
      'for an array of shape (4, 6), which has 2 axes. Give one name (or None) per axis')
  with pytest.raises(ValueError, match=expected), nnx.use_eager_sharding(False):
    nnx.Linear(4, 6, kernel_init=init, rngs=nnx.Rngs(0))


def test_a_sharded_variable_without_a_mesh_raises_and_says_how_to_give_one():
  init = nnx.with_partitioning(nnx.initializers.lecun_normal(), ('data', None))
  with pytest.raises(ValueError, match='no mesh is set. Make the model inside `with jax.set_mesh'):
    nnx.Linear(4, 6, kernel_init=init, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError):  # Flax refuses too
    fnnx.Linear(4, 6, kernel_init=fnnx.with_partitioning(fnnx.initializers.lecun_normal(),
                                                          ('data', None)), rngs=fnnx.Rngs(0))
