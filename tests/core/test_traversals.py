"""Core -- traversals: flatten_mapping, flatten_to_sequence, unflatten_mapping, empty_node.

Parity with Flax 0.12.8's ``nnx.traversals`` over a grid of nested mappings and options,
round trips, and the teaching errors for bad input.
"""

import jax
import jax.numpy as jnp
import pytest

import nnx_edu as nnx
from nnx_edu.nn.common import FrozenDict

NESTED = [
    {},
    {'foo': 1},
    {'foo': 1, 'bar': {'a': 2, 'b': {}}},
    {'a': {}},
    {'z': {'y': {'x': {'w': 1}}}, 'a': [1, 2]},
    {0: {'w': 1.0}, 1: {'w': 2.0}, 'name': 'x'},
    {'b': {'d': 3, 'c': 4}, 'a': {'e': {}, 'f': None}},
]
STR_KEYED = [xs for xs in NESTED  # sep joins keys into strings: only str keys can be joined
             if all(isinstance(key, str) for path in nnx.traversals.flatten_mapping(xs)
                    for key in path)]
IS_LEAF = [None, lambda path, x: len(path) == 1 and len(x) == 2, lambda path, x: path == ('bar',),
           lambda path, x: not x]


def test_nnx_traversals_is_this_chapter():
  from nnx_edu.core import traversals

  assert nnx.traversals is traversals
  assert callable(nnx.traversals.flatten_mapping)


# -- parity ----------------------------------------------------------------------------------
@pytest.mark.parametrize('xs', NESTED)
@pytest.mark.parametrize('keep_empty_nodes', [False, True])
@pytest.mark.parametrize('is_leaf', range(len(IS_LEAF)))
def test_flatten_mapping_matches_flax(xs, keep_empty_nodes, is_leaf, fnnx):
  kwargs = dict(keep_empty_nodes=keep_empty_nodes, is_leaf=IS_LEAF[is_leaf])
  ours = nnx.traversals.flatten_mapping(xs, **kwargs)
  theirs = fnnx.traversals.flatten_mapping(xs, **kwargs)
  assert repr(ours) == repr(theirs)  # the same keys, in the same order, the same leaves
  assert list(ours) == list(theirs)


@pytest.mark.parametrize('xs', STR_KEYED)
@pytest.mark.parametrize('sep', ['/', '.', '::'])
def test_flatten_mapping_with_sep_matches_flax(xs, sep, fnnx):
  ours = nnx.traversals.flatten_mapping(xs, sep=sep)
  assert repr(ours) == repr(fnnx.traversals.flatten_mapping(xs, sep=sep))
  assert nnx.traversals.unflatten_mapping(ours, sep=sep) == fnnx.traversals.unflatten_mapping(
      ours, sep=sep)


@pytest.mark.parametrize('xs', NESTED)
@pytest.mark.parametrize('is_leaf', range(len(IS_LEAF)))
def test_flatten_to_sequence_matches_flax(xs, is_leaf, fnnx):
  ours = nnx.traversals.flatten_to_sequence(xs, is_leaf=IS_LEAF[is_leaf])
  assert repr(ours) == repr(fnnx.traversals.flatten_to_sequence(xs, is_leaf=IS_LEAF[is_leaf]))


@pytest.mark.parametrize('xs', NESTED)
@pytest.mark.parametrize('keep_empty_nodes', [False, True])
def test_unflatten_mapping_inverts_flatten_as_in_flax(xs, keep_empty_nodes, fnnx):
  flat = nnx.traversals.flatten_mapping(xs, keep_empty_nodes=keep_empty_nodes)
  ours = nnx.traversals.unflatten_mapping(flat)
  theirs = fnnx.traversals.unflatten_mapping(
      fnnx.traversals.flatten_mapping(xs, keep_empty_nodes=keep_empty_nodes))
  assert repr(ours) == repr(theirs)
  if keep_empty_nodes:  # nothing is lost: even empty dicts come back
    assert ours == xs
  # pairs work as well as a mapping
  assert nnx.traversals.unflatten_mapping(list(flat.items())) == ours


@pytest.mark.parametrize('flat', [
    {('a',): 1, ('a',): 2},  # noqa: F601 -- the later of two equal keys wins
    [(('a',), 1), (('a',), 2)],
    [(('a', 'b'), 1), (('a',), 2)],  # a leaf replacing a subtree: allowed, as in Flax
    [((0, 'w'), 1), ((1, 'w'), 2), (('x',), 3)],
])
def test_unflatten_mapping_edge_cases_match_flax(flat, fnnx):
  assert nnx.traversals.unflatten_mapping(flat) == fnnx.traversals.unflatten_mapping(flat)


def test_mappings_other_than_dicts_flatten_too(fnnx):
  for xs in (FrozenDict({'a': {'b': 1}}), nnx.State({'a': {'b': 1}, 'c': 2})):
    assert nnx.traversals.flatten_mapping(xs) == dict(nnx.traversals.flatten_to_sequence(xs))
  flax_frozen = pytest.importorskip('flax.core').freeze({'foo': 1, 'bar': {'a': 2, 'b': {}}})
  assert nnx.traversals.flatten_mapping(flax_frozen) == {('foo',): 1, ('bar', 'a'): 2}


def test_empty_node_prints_compares_and_is_a_pytree_like_flax(fnnx):
  ours, theirs = nnx.traversals.empty_node, fnnx.traversals.empty_node
  assert repr(ours) == repr(theirs) == '_EmptyNode()'
  assert ours == type(ours)() and hash(ours) == hash(type(ours)())
  assert jax.tree.leaves({'a': ours, 'b': jnp.ones(1)})[0].shape == (1,)
  assert len(jax.tree.leaves([ours])) == len(jax.tree.leaves([theirs])) == 0


def test_flatten_mapping_keeps_insertion_order_and_does_not_sort():
  assert list(nnx.traversals.flatten_mapping({'b': 1, 'a': {'d': 2, 'c': 3}})) == [
      ('b',), ('a', 'd'), ('a', 'c')]


# -- errors that teach --------------------------------------------------------------------
@pytest.mark.parametrize('function', ['flatten_mapping', 'flatten_to_sequence'])
@pytest.mark.parametrize('bad', [[('a', 1)], 3, None])
def test_flattening_a_non_mapping_says_what_to_pass(function, bad):
  with pytest.raises(TypeError, match=rf'{function} expects a mapping .*got {type(bad).__name__}'):
    getattr(nnx.traversals, function)(bad)


def test_sep_with_a_non_string_key_names_the_path():
  with pytest.raises(TypeError, match=r"sep='/'.*the path \('layers', 0\) has the key 0 \(int\)"
                                      r".*Leave sep=None"):
    nnx.traversals.flatten_mapping({'layers': {0: 1}}, sep='/')


def test_unflatten_a_string_path_without_sep_suggests_sep():
  with pytest.raises(TypeError, match=r"non-empty tuple of keys.*got 'bar/a' \(str\)\. "
                                      r"For string paths like 'bar/a', pass sep="):
    nnx.traversals.unflatten_mapping({'bar/a': 1})


@pytest.mark.parametrize('path', [(), ['a', 'b'], 3])
def test_unflatten_a_path_that_is_not_a_tuple_or_empty_is_refused(path):
  with pytest.raises(TypeError, match=r'expects each path to be a non-empty tuple'):
    nnx.traversals.unflatten_mapping([(path, 1)])


def test_unflatten_with_sep_refuses_tuple_paths():
  with pytest.raises(TypeError, match=r"sep='/'\) splits string paths, got the path \('a',\)"):
    nnx.traversals.unflatten_mapping({('a',): 1}, sep='/')


def test_unflatten_through_a_leaf_names_both_paths():
  with pytest.raises(TypeError, match=r"the path \('a', 'b'\) goes through \('a',\), which holds "
                                      r"the leaf 1"):
    nnx.traversals.unflatten_mapping([(('a',), 1), (('a', 'b'), 2)])


def test_unflatten_something_not_iterable_says_what_it_expects():
  with pytest.raises(TypeError, match=r'expects a mapping \{path: leaf\} or \(path, leaf\) '
                                      r'pairs, got int'):
    nnx.traversals.unflatten_mapping(3)
