"""Core -- Variables: values, metadata, hooks, pytrees, copies and reprs."""

import copy
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx_edu as nnx


# -- the value ------------------------------------------------------------------
def test_value_is_reached_by_value_item_and_get_value():
  v = nnx.Param(jnp.arange(3.0))
  assert v.value is v[...] is v.get_value()
  v[...] = jnp.zeros(3)
  np.testing.assert_array_equal(v.value, jnp.zeros(3))
  v.set_value(jnp.ones(3))
  np.testing.assert_array_equal(v.get_value(), jnp.ones(3))
  v.value = jnp.full(3, 2.0)
  np.testing.assert_array_equal(v[...], jnp.full(3, 2.0))


def test_value_access_gives_no_deprecation_warning():
  v = nnx.Param(jnp.ones(2))
  with warnings.catch_warnings():
    warnings.simplefilter('error')
    v.value = v.value + 1


def test_a_variable_cannot_hold_another_variable():
  with pytest.raises(TypeError, match='cannot hold another Variable'):
    nnx.Param(nnx.Param(jnp.ones(1)))


# -- metadata -------------------------------------------------------------------
def test_set_metadata_has_three_call_forms():
  p = nnx.Param(1.0, a=1)
  p.set_metadata('b', 2)
  assert p.get_metadata() == {'a': 1, 'b': 2}
  p.set_metadata(c=3)
  assert p.get_metadata() == {'a': 1, 'b': 2, 'c': 3}
  p.set_metadata({'z': 0})
  assert p.get_metadata() == {'z': 0}


def test_set_metadata_explains_its_call_forms_when_misused():
  with pytest.raises(TypeError, match='takes a dict, a \\(name, value\\) pair, or keyword'):
    nnx.Param(1.0).set_metadata('a', 1, 2)


def test_metadata_reads_as_attributes_and_can_be_deleted():
  p = nnx.Param(1.0, sharding=('x',))
  assert p.sharding == ('x',) and p.has_metadata('sharding')
  p.del_metadata('sharding')
  assert not p.has_metadata('sharding')
  p.color = 'red'  # attribute assignment sets metadata
  assert p.get_metadata('color') == 'red'


def test_get_metadata_of_a_missing_name_names_what_exists():
  with pytest.raises(KeyError, match="no metadata 'x'.*\\['y'\\]"):
    nnx.Param(1.0, y=1).get_metadata('x')
  assert nnx.Param(1.0).get_metadata('x', None) is None


def test_type_is_the_variable_class():
  assert nnx.Param(1.0).type is nnx.Param
  assert nnx.BatchStat(1.0).type is nnx.BatchStat


# -- hooks ------------------------------------------------------------------------
def test_the_five_hook_kinds_run_when_documented():
  calls = []
  v = nnx.Variable(
      1.0,
      create_value_hooks=lambda var, x: x * 10,
      get_value_hooks=lambda var, x: x + 1,
      set_value_hooks=[lambda var, x: x * 2],
      add_axis_hooks=lambda var, i, name: calls.append(('add', i, name)),
      remove_axis_hooks=lambda var, i, name: calls.append(('remove', i, name)),
  )
  assert v.value == 11.0          # created as 10, read with +1
  v.value = 3.0
  assert v.value == 7.0           # stored as 6, read with +1
  v.add_axis(0, 'batch')
  v.remove_axis(0, 'batch')
  assert calls == [('add', 0, 'batch'), ('remove', 0, 'batch')]


# -- pytree, copies -------------------------------------------------------------------
def test_a_variable_is_a_pytree_whose_leaf_is_its_value():
  p = nnx.Param(jnp.ones(3), tag='w')
  leaves, treedef = jax.tree.flatten(p)
  assert len(leaves) == 1 and leaves[0] is p.value
  shapes = jax.tree.map(jnp.shape, p)
  assert type(shapes) is nnx.Param and shapes.value == (3,) and shapes.tag == 'w'
  (path, _), = jax.tree_util.tree_flatten_with_path(p)[0]
  assert path == (jax.tree_util.GetAttrKey('value'),)


def test_variables_pass_through_jit_and_grad():
  p = nnx.Param(jnp.array([1.0, 2.0]))
  doubled = jax.jit(lambda v: jax.tree.map(lambda x: 2 * x, v))(p)
  assert type(doubled) is nnx.Param
  grads = jax.grad(lambda v: jnp.sum(v.value ** 2))(p)
  np.testing.assert_array_equal(grads.value, jnp.array([2.0, 4.0]))


def test_copy_and_deepcopy_make_new_boxes():
  p = nnx.Param(jnp.ones(2), tag='w')
  for c in (copy.copy(p), copy.deepcopy(p), p.replace()):
    assert c is not p and type(c) is nnx.Param and c.tag == 'w'
    c.value = jnp.zeros(2)
    np.testing.assert_array_equal(p.value, jnp.ones(2))


def test_variable_state_is_a_deprecated_alias_of_variable():
  with pytest.warns(DeprecationWarning, match="'VariableState' was removed"):
    assert nnx.VariableState is nnx.Variable


# -- reprs, against Flax ----------------------------------------------------------------
REPR_VALUES = {
    'vector': lambda: jnp.ones(3),
    'matrix': lambda: jnp.arange(6.0).reshape(2, 3),
    'int8': lambda: jnp.zeros((2, 3), jnp.int8),
    'scalar': lambda: jnp.ones(()),
    'weak int': lambda: jnp.array(0),
    'python float': lambda: 1.5,
    'none': lambda: None,
    'dict': lambda: {'a': jnp.ones(2)},
    'tuple': lambda: (jnp.ones(2), 3),
    'numpy': lambda: np.ones((2, 2)),
    'large': lambda: np.zeros((1024, 1100), np.float32),
    'bfloat16': lambda: jnp.ones(4, jnp.bfloat16),
    'key': lambda: jax.random.key(3),
}


@pytest.mark.parametrize('kind', ['Variable', 'Param', 'BatchStat', 'Cache', 'Intermediate'])
@pytest.mark.parametrize('value_name', list(REPR_VALUES))
def test_variable_repr_matches_flax(kind, value_name, fnnx):
  value = REPR_VALUES[value_name]()
  ours = repr(getattr(nnx, kind)(value))
  theirs = repr(getattr(fnnx, kind)(value))
  assert ours == theirs


@pytest.mark.parametrize('metadata', [{}, {'tag': 'x'}, {'names': ('a', None), 'n': 3},
                                      {'dtype': jnp.float32, 'f': 0.5}])
def test_variable_repr_with_metadata_matches_flax(metadata, fnnx):
  assert repr(nnx.Param(jnp.ones(2), **metadata)) == repr(fnnx.Param(jnp.ones(2), **metadata))


def test_tree_map_of_shapes_prints_as_on_the_variables_page():
  assert repr(jax.tree.map(jnp.shape, nnx.Param(jnp.ones((2, 3))))) == 'Param(\n  value=(2, 3)\n)'
