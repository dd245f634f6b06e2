"""State: access, flat views, filter/split/merge, pure dicts, and their errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx_edu as nnx


def make_state():
  return nnx.State({
      'linear': {'kernel': nnx.Param(jnp.ones((2, 3))), 'bias': nnx.Param(jnp.zeros(3))},
      'bn': {'mean': nnx.BatchStat(jnp.zeros(3)), 'var': nnx.BatchStat(jnp.ones(3))},
      'layers': {0: {'w': nnx.Param(jnp.ones(1))}, 1: {'w': nnx.Param(jnp.ones(1))}},
      'raw': jnp.arange(2.0),
  })


def test_nested_plain_dicts_become_states_with_attribute_and_item_access():
  state = make_state()
  assert isinstance(state.linear, nnx.State)
  assert state.linear.kernel is state['linear']['kernel']
  assert state['layers'][0]['w'].value.shape == (1,)


def test_missing_attribute_names_the_keys_that_exist():
  with pytest.raises(AttributeError, match=r"no key 'lin'.*\['linear', 'bn', 'layers', 'raw'\]"):
    make_state().lin


def test_setting_an_attribute_sets_a_key():
  state = make_state()
  state.extra = nnx.Param(jnp.ones(1))
  assert 'extra' in state


def test_flat_state_is_sorted_with_ints_before_strings_and_round_trips():
  state = make_state()
  flat = state.flat_state()
  assert flat.paths == (('bn', 'mean'), ('bn', 'var'), ('layers', 0, 'w'), ('layers', 1, 'w'),
                        ('linear', 'bias'), ('linear', 'kernel'), ('raw',))
  assert nnx.from_flat_state(flat) == nnx.State.from_flat_path(nnx.to_flat_state(state))


def test_filter_is_not_exhaustive_and_split_is():
  state = make_state()
  params = state.filter(nnx.Param)
  assert [p for p, _ in params.flat_state()][:1] == [('layers', 0, 'w')]
  with pytest.raises(ValueError, match=r"left over:\n  \('bn', 'mean'\): BatchStat\n"
                                       r"  \('bn', 'var'\): BatchStat\n  \('raw',\): ArrayImpl"):
    state.split(nnx.Param)


def test_split_with_ellipsis_collects_the_rest_and_merge_inverts_it():
  state = make_state()
  params, stats, rest = state.split(nnx.Param, nnx.BatchStat, ...)
  assert list(rest.flat_state().paths) == [('raw',)]
  assert nnx.State.merge(params, stats, rest) == state


def test_a_leaf_goes_to_the_first_filter_that_selects_it():
  params, everything_else = make_state().split(nnx.Param, ...)
  assert not any(isinstance(v, nnx.Param) for v in everything_else.flat_state().leaves)


def test_ellipsis_may_only_come_last():
  with pytest.raises(ValueError, match='can only be the last filter'):
    make_state().split(..., nnx.Param)


def test_an_unknown_filter_is_named_with_the_kinds_that_exist():
  with pytest.raises(TypeError,
                     match=r"3.5 \(a float\) is not a filter\. A filter is a Variable type"):
    make_state().filter(3.5)


def test_merge_refuses_two_values_for_one_path():
  a = nnx.State({'w': nnx.Param(jnp.ones(1))})
  b = nnx.State({'w': nnx.Param(jnp.zeros(1))})
  with pytest.raises(ValueError, match=r"both have the path \('w',\)"):
    nnx.State.merge(a, b)
  assert nnx.State.merge(a, a) == a   # the same object twice is fine


def test_to_pure_dict_and_back_restores_values_in_place():
  state = make_state()
  pure = state.to_pure_dict()
  assert isinstance(pure['linear']['kernel'], jax.Array)
  pure = jax.tree.map(lambda x: x + 1, pure)
  kernel = state.linear.kernel
  nnx.replace_by_pure_dict(state, pure)
  assert state.linear.kernel is kernel
  np.testing.assert_array_equal(kernel.value, jnp.full((2, 3), 2.0))


def test_replace_by_pure_dict_accepts_string_keys_for_int_indices():
  state = make_state()
  state.replace_by_pure_dict({'layers': {'0': {'w': jnp.zeros(1)}}})
  np.testing.assert_array_equal(state.layers[0].w.value, jnp.zeros(1))


def test_replace_by_pure_dict_names_an_unknown_path():
  with pytest.raises(KeyError, match=r"\('linear', 'weights'\) is not in the State"):
    make_state().replace_by_pure_dict({'linear': {'weights': jnp.ones(1)}})


def test_a_state_is_a_pytree_sorted_by_key():
  state = make_state()
  leaves = jax.tree.leaves(state)
  assert len(leaves) == 7
  doubled = jax.tree.map(lambda x: x * 2, state)
  assert isinstance(doubled.linear.kernel, nnx.Param)
  np.testing.assert_array_equal(doubled.linear.kernel.value, jnp.full((2, 3), 2.0))
  paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(state)[0]]
  assert paths[0] == "['bn']['mean'].value"


def test_a_state_goes_through_jit():
  out = jax.jit(lambda s: jax.tree.map(jnp.sum, s))(make_state())
  assert float(out.linear.kernel.value) == 6.0
