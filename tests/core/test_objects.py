"""Core -- objects: graph nodes, which attributes are data and which static, and their repr."""

import jax.numpy as jnp
import pytest

import nnx_edu as nnx
from nnx_edu.core import pytrees
from tests.models import MODELS, block_class, both, probe
from tests.parity import normalize_repr

MODEL_NAMES = list(MODELS)


# -- data and statics ---------------------------------------------------------------------
def test_a_plain_list_of_modules_is_refused_with_the_fix():
  Block = block_class(nnx)

  class Model(nnx.Module):
    def __init__(self, rngs):
      self.layers = [Block(1, 1, rngs)]

  with pytest.raises(ValueError,
                     match=r'plain list holding Modules.*nnx.List\(...\).*nnx.data\(...\)'):
    Model(nnx.Rngs(0))


def test_a_plain_dict_of_variables_is_refused_with_the_fix():
  class Model(nnx.Module):
    def __init__(self):
      self.table = {'w': nnx.Param(jnp.ones(1))}

  with pytest.raises(ValueError, match=r'nnx.Dict\(...\)'):
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

  with pytest.raises(ValueError, match='marked nnx.static but holds'):
    Model()


def test_replacing_a_variable_by_a_bare_array_is_refused():
  model = MODELS['single_block'](nnx)
  with pytest.raises(TypeError, match=r'holds a Param; assigning a bare array would replace it'
                                      r'.*\.b\.value = \.\.\.'):
    model.b = jnp.zeros(3)
  model.b = nnx.Param(jnp.zeros(3))   # replacing by a Variable is fine
  model.b.value = jnp.ones(3)


def test_bare_arrays_are_data_and_statics_are_not():
  class Model(nnx.Module):
    def __init__(self):
      self.table = jnp.arange(3)
      self.name = 'm'

  assert list(nnx.state(Model())) == ['table']


def test_structure_changes_move_the_structure_version():
  model = probe(nnx)
  before = pytrees.structure_version
  model.w.value = model.w.value + 1  # a new value: not structural
  assert pytrees.structure_version == before
  model.flag = True
  assert pytrees.structure_version > before


# -- reprs, against Flax -------------------------------------------------------------------
@pytest.mark.parametrize('name', MODEL_NAMES)
def test_module_repr_is_the_same_text(name):
  ours, theirs = both(name)
  assert normalize_repr(repr(ours)) == normalize_repr(repr(theirs))
