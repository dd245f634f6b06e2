"""Core -- the Variable types: what a Param may hold, with_metadata, and the Linen names."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx_edu as nnx


def test_param_refuses_a_non_numeric_value_with_a_hint():
  with pytest.raises(TypeError, match=r'Param holds learnable numbers, but got str .*jnp.asarray'):
    nnx.Param('hello')
  p = nnx.Param(jnp.ones(2))
  with pytest.raises(TypeError, match='nnx.Variable'):
    p.value = 'oops'


def test_other_variables_may_hold_any_value():
  assert nnx.Variable('a note').value == 'a note'
  assert nnx.BatchStat(None).value is None


def test_with_metadata_attaches_metadata_through_the_initializer():
  init = nnx.with_metadata(nnx.initializers.ones, sharding=('in', 'out'))
  p = nnx.Param(init(jax.random.key(0), (2, 2)))
  assert p.sharding == ('in', 'out')
  np.testing.assert_array_equal(p.value, jnp.ones((2, 2)))


# -- Linen names ----------------------------------------------------------------------
@pytest.mark.parametrize('name, typ', [('params', 'Param'), ('batch_stats', 'BatchStat'),
                                       ('cache', 'Cache'), ('intermediates', 'Intermediate'),
                                       ('perturbations', 'Perturbation')])
def test_linen_collection_names_map_both_ways_as_in_flax(name, typ, fnnx):
  assert (nnx.variable_type_from_name(name).__name__ == typ
          == fnnx.variable_type_from_name(name).__name__)
  assert nnx.variable_name_from_type(getattr(nnx, typ)) == name


def test_unknown_collection_names_raise_unless_registration_is_allowed():
  with pytest.raises(ValueError, match='register_variable_name'):
    nnx.variable_type_from_name('never_seen')
  made = nnx.variable_type_from_name('seen_once', allow_register=True)
  assert issubclass(made, nnx.Variable) and made.__name__ == 'seen_once'
  assert nnx.variable_type_from_name('seen_once') is made

  class Fresh(nnx.Variable):
    pass

  with pytest.raises(ValueError, match='allow_register=True'):
    nnx.variable_name_from_type(Fresh)
  assert nnx.variable_name_from_type(Fresh, allow_register=True) == 'Fresh'
  with pytest.raises(ValueError, match='overwrite=True'):
    nnx.register_variable_name('Fresh', nnx.Param)
