"""Core -- State tools: map_state, filter_state, split_state, merge_state, restore_int_paths.

Parity with Flax 0.12.8 over the States of every model of tests/models.py and a hand-made
State, crossed with functions, filters and merge orders; ``State.from_flat_path`` with a
dict and a FlatState; and the teaching errors.
"""

import jax.numpy as jnp
import numpy as np
import pytest

import nnx_edu as nnx
from tests.models import MODELS, both
from tests.parity import assert_same_state

MODEL_NAMES = list(MODELS)


def hand_made(lib):
  """A State with Variables of three types, a tag, int keys, a bare array and an empty dict."""
  return lib.State({
      'linear': {'kernel': lib.Param(jnp.ones((2, 3))), 'bias': lib.Param(jnp.zeros(3))},
      'bn': {'mean': lib.BatchStat(jnp.zeros(3)), 'var': lib.BatchStat(jnp.ones(3))},
      'layers': {0: {'w': lib.Param(jnp.ones(1))}, 1: {'w': lib.Param(jnp.ones(1), tag='t')}},
      'raw': jnp.arange(2.0),
      'empty': {},
  })


def states(name, fnnx):
  """The State named ``name`` (a model of tests/models.py, or 'hand_made'), ours first."""
  if name == 'hand_made':
    return hand_made(nnx), hand_made(fnnx)
  ours, theirs = both(name)
  return nnx.state(ours), fnnx.state(theirs)


STATE_NAMES = [*MODEL_NAMES, 'hand_made']


def same_leaves(a, b) -> bool:
  """The same paths holding the very same objects (``==`` on States compares arrays)."""
  return [(path, id(leaf)) for path, leaf in a.flat_state()] == [
      (path, id(leaf)) for path, leaf in b.flat_state()]


# -- map_state ---------------------------------------------------------------------------
def double(path, v):
  """Float values doubled (a new Variable for a Variable); random keys and counts kept."""
  value = v.get_value() if hasattr(v, 'get_value') else v
  if not jnp.issubdtype(value.dtype, jnp.floating):
    return v
  return v.replace(value * 2) if hasattr(v, 'get_value') else value * 2


MAPS = {
    'identity': lambda path, v: v,
    'double': double,
    'shape': lambda path, v: tuple(jnp.shape(v.get_value() if hasattr(v, 'get_value') else v)),
    'path': lambda path, v: '/'.join(map(str, path)),
    'none': lambda path, v: None,
}


@pytest.mark.parametrize('name', STATE_NAMES)
@pytest.mark.parametrize('f', list(MAPS))
def test_map_state_matches_flax(name, f, fnnx):
  ours, theirs = states(name, fnnx)
  calls = {'ours': [], 'theirs': []}

  def recording(who):
    def g(path, v):
      calls[who].append(path)
      return MAPS[f](path, v)
    return g

  mine, flax = nnx.map_state(recording('ours'), ours), fnnx.map_state(recording('theirs'), theirs)
  assert calls['ours'] == calls['theirs']  # one call per leaf, in sorted path order
  assert isinstance(mine, nnx.State)
  if f in ('identity', 'double'):
    assert_same_state(mine, flax)
  else:
    assert repr(mine) == repr(flax)


def test_map_state_leaves_the_input_alone_and_shares_what_f_returns():
  state = hand_made(nnx)
  doubled = nnx.map_state(lambda path, v: v.replace(v.value * 2) if isinstance(v, nnx.Variable)
                          else v, state)
  np.testing.assert_array_equal(state['linear']['kernel'].value, 1.0)
  np.testing.assert_array_equal(doubled['linear']['kernel'].value, 2.0)
  same = nnx.map_state(lambda path, v: v, state)
  assert same['bn']['mean'] is state['bn']['mean'] and same is not state


def test_map_state_accepts_a_plain_nested_dict():
  assert nnx.map_state(lambda path, v: v + 1, {'a': {'b': 1}}).to_pure_dict() == {'a': {'b': 2}}


# -- filter_state and split_state ----------------------------------------------------------
FILTERS = {
    'Param': lambda lib: (lib.Param,),
    'Param, BatchStat': lambda lib: (lib.Param, lib.BatchStat),
    'BatchStat, ...': lambda lib: (lib.BatchStat, ...),
    'tag': lambda lib: ('t',),
    'PathContains': lambda lib: (lib.PathContains('b'),),
    'Not(Param), Param': lambda lib: (lib.Not(lib.Param), lib.Param),
    'function, ...': lambda lib: (lambda path, v: 0 in path, ...),
    'tuple, Variable': lambda lib: ((lib.BatchStat, 't'), lib.Variable),
    'Everything': lambda lib: (lib.Everything(),),
    'Nothing, ...': lambda lib: (lib.Nothing(), ...),
}


def as_tuple(result):
  return result if isinstance(result, tuple) else (result,)


@pytest.mark.parametrize('name', STATE_NAMES)
@pytest.mark.parametrize('filters', list(FILTERS))
def test_filter_state_matches_flax(name, filters, fnnx):
  ours, theirs = states(name, fnnx)
  mine = nnx.filter_state(ours, *FILTERS[filters](nnx))
  flax = fnnx.filter_state(theirs, *FILTERS[filters](fnnx))
  assert type(mine) is tuple if type(flax) is tuple else isinstance(mine, nnx.State)
  for a, b in zip(as_tuple(mine), as_tuple(flax), strict=True):
    assert repr(a) == repr(b)
  for a, b in zip(as_tuple(mine), as_tuple(ours.filter(*FILTERS[filters](nnx)))):
    assert same_leaves(a, b)


@pytest.mark.parametrize('name', STATE_NAMES)
@pytest.mark.parametrize('filters', list(FILTERS))
def test_split_state_matches_flax_and_refuses_what_flax_refuses(name, filters, fnnx):
  ours, theirs = states(name, fnnx)
  try:
    flax = fnnx.split_state(theirs, *FILTERS[filters](fnnx))
  except ValueError:
    with pytest.raises(ValueError, match='do not select every leaf'):
      nnx.split_state(ours, *FILTERS[filters](nnx))
    return
  mine = nnx.split_state(ours, *FILTERS[filters](nnx))
  for a, b in zip(as_tuple(mine), as_tuple(flax), strict=True):
    assert repr(a) == repr(b)
  assert same_leaves(nnx.merge_state(*as_tuple(mine)), ours)


# -- merge_state -------------------------------------------------------------------------
@pytest.mark.parametrize('name', STATE_NAMES)
@pytest.mark.parametrize('order', ['forward', 'reversed'])
def test_merge_state_of_split_parts_matches_flax(name, order, fnnx):
  ours, theirs = states(name, fnnx)
  mine = list(nnx.split_state(ours, nnx.Param, nnx.BatchStat, ...))
  flax = list(fnnx.split_state(theirs, fnnx.Param, fnnx.BatchStat, ...))
  if order == 'reversed':
    mine, flax = mine[::-1], flax[::-1]
  merged, flax_merged = nnx.merge_state(*mine), fnnx.merge_state(*flax)
  assert_same_state(merged, flax_merged)
  assert list(merged) == list(flax_merged)  # keys in the order they were met


MERGES = [
    ({'a': 1, 'b': {'c': 2}}, {'b': {'c': 3, 'd': 4}}),
    ({'b': {'c': 3, 'd': 4}}, {'a': 1, 'b': {'c': 2}}),
    ({'a': 1}, {'e': {}}, {'a': 5, 'f': {'g': 6}}),
    ({'x': {'y': 1}}, {'x': 2}),  # a leaf may replace a subtree
    ({0: {'w': 1}}, {1: {'w': 2}}, {0: {'v': 3}}),
]


@pytest.mark.parametrize('dicts', MERGES)
@pytest.mark.parametrize('as_states', [False, True])
def test_merge_state_lets_the_later_leaf_win_as_in_flax(dicts, as_states, fnnx):
  ours = [nnx.State(d) if as_states else d for d in dicts]
  theirs = [fnnx.State(d) if as_states else d for d in dicts]
  mine, flax = nnx.merge_state(*ours), fnnx.merge_state(*theirs)
  assert isinstance(mine, nnx.State)
  assert mine.to_pure_dict() == fnnx.to_pure_dict(flax)
  assert list(mine) == list(flax)


def test_merge_state_of_one_state_is_that_state_and_of_a_dict_a_new_one(fnnx):
  state = hand_made(nnx)
  assert nnx.merge_state(state) is state
  assert type(nnx.merge_state({'a': 1})) is nnx.State
  assert (type(fnnx.merge_state(fnnx.State({'a': 1}))) is fnnx.State)


def test_merge_state_builds_the_class_asked_for():
  class MyState(nnx.State):
    pass

  merged = nnx.merge_state({'a': 1}, {'b': {'c': 2}}, cls=MyState)
  assert type(merged) is MyState and merged.to_pure_dict() == {'a': 1, 'b': {'c': 2}}
  assert type(nnx.merge_state({'a': 1}, cls=MyState)) is MyState


def test_state_merge_still_refuses_conflicts_where_merge_state_overrides():
  a, b = nnx.State({'w': nnx.Param(jnp.ones(1))}), nnx.State({'w': nnx.Param(jnp.zeros(1))})
  with pytest.raises(ValueError, match='both have the path'):
    nnx.State.merge(a, b)
  np.testing.assert_array_equal(nnx.merge_state(a, b)['w'].value, 0.0)


# -- restore_int_paths ---------------------------------------------------------------------
PURE_DICTS = [
    {},
    {'0': 1, '1': {'2': 3, 'a': 4}},
    {'layers': {'0': {'w': 1}, '10': {'w': 2}}, 'name': {'x': 3}},
    {'-1': 1, '01': 2, ' 3': 3, '1.5': 4, 'x1': 5, '': 6, '\u0663': 7},  # int() decides
    {0: 1, 'a': {}, 'b': {'c': {}}},
    {1.0: 2, False: 3, 2.7: 4},  # int() of numbers and bools, as Flax does
    {'0': 'a', 0: 'b'},
]


@pytest.mark.parametrize('pure_dict', PURE_DICTS)
def test_restore_int_paths_matches_flax(pure_dict, fnnx):
  ours, theirs = nnx.restore_int_paths(pure_dict), fnnx.restore_int_paths(pure_dict)
  assert repr(ours) == repr(theirs)
  assert type(ours) is dict


@pytest.mark.parametrize('name', MODEL_NAMES)
def test_restore_int_paths_undoes_a_checkpoint_that_made_keys_strings(name):
  ours, _ = both(name)
  pure = nnx.to_pure_dict(nnx.state(ours))

  def stringify(x):
    return {str(k): stringify(v) for k, v in x.items()} if isinstance(x, dict) else x

  restored = nnx.restore_int_paths(stringify(pure))
  assert nnx.State(restored).flat_state().paths == nnx.State(pure).flat_state().paths


# -- State.from_flat_path ------------------------------------------------------------------
@pytest.mark.parametrize('form', ['dict', 'pairs', 'flat_state'])
@pytest.mark.parametrize('name', STATE_NAMES)
def test_from_flat_path_takes_a_dict_pairs_or_a_flat_state_like_flax(form, name, fnnx):
  ours, theirs = states(name, fnnx)

  def flat(state, lib):
    pairs = lib.to_flat_state(state)
    return {'dict': dict(pairs), 'pairs': list(pairs), 'flat_state': pairs}[form]

  mine = nnx.State.from_flat_path(flat(ours, nnx))
  assert same_leaves(mine, ours)  # (the empty dict of hand_made is gone, as in Flax)
  assert repr(mine) == repr(fnnx.from_flat_state(flat(theirs, fnnx)))  # = State.from_flat_path
  assert same_leaves(nnx.from_flat_state(flat(ours, nnx)), mine)


# -- errors that teach -------------------------------------------------------------------
@pytest.mark.parametrize('function', ['map_state', 'filter_state', 'split_state'])
def test_a_module_instead_of_a_state_is_refused_with_the_fix(function):
  model = nnx.Linear(1, 1, rngs=nnx.Rngs(0))
  args = (lambda p, v: v, model) if function == 'map_state' else (model, nnx.Param)
  with pytest.raises(TypeError, match=rf'{function} expects state to be a State .*got Linear\. '
                                      rf'For a Module, take its State first: '
                                      rf'{function}\(nnx\.state\(model\)'):
    getattr(nnx, function)(*args)


def test_merge_state_names_the_argument_that_is_not_a_state():
  with pytest.raises(TypeError, match=r'merge_state expects states\[2\] to be a State .*got int'):
    nnx.merge_state({'a': 1}, {'b': 2}, 3)
  with pytest.raises(TypeError, match=r'states\[0\].*got list'):
    nnx.merge_state([('a', 1)])


def test_split_state_lists_what_the_filters_left_over():
  with pytest.raises(ValueError, match=r"(?s)left over:\n  \('bn', 'mean'\): BatchStat\n.*"
                                       r"pass `\.\.\.` as the last filter"):
    nnx.split_state(hand_made(nnx), nnx.Param)


def test_ellipsis_before_another_filter_is_refused():
  with pytest.raises(ValueError, match=r'can only be the last filter.*Move it to the end'):
    nnx.filter_state(hand_made(nnx), ..., nnx.Param)


def test_restore_int_paths_refuses_what_is_not_a_dict_and_keys_that_are_not_strings():
  with pytest.raises(TypeError, match=r'restore_int_paths expects pure_dict to be a nested dict'
                                      r'.*got list'):
    nnx.restore_int_paths([('0', 1)])
  with pytest.raises(TypeError, match=r"the key None in the path \('a', None\) is a NoneType"):
    nnx.restore_int_paths({'a': {None: 1}})
