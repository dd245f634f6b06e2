"""Core -- graph tools: find_duplicates, iter_module_children, recursive_map, map.

Parity with Flax 0.12.8 over every model of tests/models.py and a model that shares
Variables, Modules and arrays through attributes, an nnx.List and nnx.data containers;
the surprising corners (recursive_map writing into shared Variables, map's
recreate_variables); and the teaching errors.
"""

import jax.numpy as jnp
import numpy as np
import pytest

import nnx_edu as nnx
from tests.models import MODELS
from tests.parity import assert_same_state, flat_summary, flax_nnx


def tangled(lib, seed=0):
  """Shared Variables, Modules and arrays, reached through attributes, a List and data."""
  class Tangled(lib.Module):
    def __init__(self, rngs):
      self.z = lib.Linear(1, 1, rngs=rngs)
      self.a = lib.Param(jnp.ones(1))
      self.b = self.a
      self.rngs = rngs
      self.y = self.z
      self.lst = lib.List([self.z, lib.BatchStat(jnp.zeros(1)), 3])
      self.d = lib.data([self.a, self.z])
      self.t = lib.data((self.a, 1))
      self.n = 5
      self.arr = jnp.ones(2)
      self.arr2 = self.arr
      self.conv = lib.Conv(1, 1, (3,), rngs=rngs)
      self.drop = lib.Dropout(0.1, rngs=rngs)

  return Tangled(lib.Rngs(seed))


ALL_MODELS = {**MODELS, 'tangled': tangled}


def build_both(name):
  return ALL_MODELS[name](nnx), ALL_MODELS[name](flax_nnx())


def public(path) -> bool:
  """A path without private keys: Flax's nodes carry ``_pytree__*`` attributes, ours do not."""
  return not any(isinstance(key, str) and key.startswith('_') for key in path)


# -- find_duplicates -----------------------------------------------------------------------
ONLY = {
    'everything': lambda lib: ...,
    'Param': lambda lib: lib.Param,
    'Module': lambda lib: lib.Module,
    'Variable': lambda lib: lib.Variable,
    'path contains y': lambda lib: lib.PathContains('y'),
    'last key 0': lambda lib: (lambda path, value: bool(path) and path[-1] == 0),
    'nothing': lambda lib: None,
}


@pytest.mark.parametrize('name', list(ALL_MODELS))
@pytest.mark.parametrize('only', list(ONLY))
def test_find_duplicates_matches_flax(name, only, fnnx):
  ours, theirs = build_both(name)
  assert nnx.find_duplicates(ours, only=ONLY[only](nnx)) == fnnx.find_duplicates(
      theirs, only=ONLY[only](fnnx))


def test_find_duplicates_reports_the_first_path_even_when_only_would_not_select_it(fnnx):
  for lib in (nnx, fnnx):  # the first path always counts; later ones only if selected
    assert lib.find_duplicates(tangled(lib), only=lib.PathContains('y')) == [[('d', 1), ('y',)]]


@pytest.mark.parametrize('root', ['int', 'list', 'dict', 'variable', 'cycle'])
def test_find_duplicates_of_other_roots_matches_flax(root, fnnx):
  def make(lib):
    shared = lib.Param(jnp.ones(1))
    if root == 'cycle':
      node = lib.List([])
      node.append(node)
      return node
    return {'int': 3, 'list': [shared, shared], 'dict': {'a': shared, 'b': [shared]},
            'variable': shared}[root]

  assert nnx.find_duplicates(make(nnx)) == fnnx.find_duplicates(make(fnnx))


# -- iter_module_children ------------------------------------------------------------------
def graph_nodes(model, lib):
  """The model and every graph node in it, by path (the order of iter_graph)."""
  return {path: node for path, node in lib.iter_graph(model)
          if isinstance(node, (lib.Module, lib.Rngs))}


@pytest.mark.parametrize('name', list(ALL_MODELS))
def test_iter_module_children_matches_flax_at_every_node(name, fnnx):
  ours, theirs = build_both(name)
  our_nodes, their_nodes = graph_nodes(ours, nnx), graph_nodes(theirs, fnnx)
  assert list(our_nodes) == list(their_nodes)
  for path in our_nodes:
    mine = [(key, type(child).__name__)
            for key, child in nnx.iter_module_children(our_nodes[path])]
    flax = [(key, type(child).__name__)
            for key, child in fnnx.iter_module_children(their_nodes[path])]
    assert mine == flax, path


def test_iter_module_children_yields_a_shared_child_under_each_key_and_no_variables():
  model = tangled(nnx)
  children = dict(nnx.iter_module_children(model))
  assert children['y'] is children['z'] is model.z
  assert 'a' not in children and 'd' not in children  # a Variable, a plain list


# -- recursive_map -------------------------------------------------------------------------
def recorded_calls(lib, model):
  calls = []

  def f(path, value):
    if public(path):
      calls.append((path, type(value).__name__))
    return value

  result = lib.recursive_map(f, model)
  return calls, result


@pytest.mark.parametrize('name', list(ALL_MODELS))
def test_recursive_map_calls_f_on_the_same_values_in_the_same_order_as_flax(name, fnnx):
  ours, theirs = build_both(name)
  (mine, our_result), (flax, their_result) = recorded_calls(nnx, ours), recorded_calls(
      fnnx, theirs)
  assert mine == flax
  assert our_result is not ours and type(our_result) is type(ours)
  assert_same_state(our_result, their_result)


@pytest.mark.parametrize('name', list(ALL_MODELS))
def test_recursive_map_copies_the_nodes_but_shares_the_variables(name, fnnx):
  for lib in (nnx, fnnx):
    model = ALL_MODELS[name](lib)
    result = lib.recursive_map(lambda path, value: value, model)
    before, after = lib.to_flat_state(lib.state(model)), lib.to_flat_state(lib.state(result))
    assert [(p, id(v)) for p, v in before] == [(p, id(v)) for p, v in after]
    assert result is not model


def swap_linear_for_lora(lib):
  def swap(path, node):
    if isinstance(node, lib.Linear):
      return lib.LoRA(node.in_features, 2, node.out_features, base_module=node,
                      rngs=lib.Rngs(1))
    return node
  return swap


def test_recursive_map_swaps_layers_as_in_flax(fnnx):
  def model(lib):
    rngs = lib.Rngs(0)
    return lib.Sequential(lib.Linear(2, 3, rngs=rngs), lib.relu, lib.Linear(3, 4, rngs=rngs))

  ours = nnx.recursive_map(swap_linear_for_lora(nnx), model(nnx))
  theirs = fnnx.recursive_map(swap_linear_for_lora(fnnx), model(fnnx))
  assert [type(x).__name__ for x in ours.layers] == [type(x).__name__ for x in theirs.layers]
  assert_same_state(ours, theirs)
  x = jnp.ones((1, 2))
  np.testing.assert_allclose(ours(x), theirs(x), rtol=1e-6)


def behaviours(lib):
  """What recursive_map does in its corners, as plain values to compare between libraries."""
  class Foo(lib.Pytree):
    def __init__(self, d):
      self.d = d

  def negate(path, node):
    return Foo(-node.d) if isinstance(node, Foo) else node

  seen = []
  foo1, foo2 = Foo(10), Foo(20)
  bar = [foo1, foo2, foo1]
  bar2 = lib.recursive_map(lambda p, x: (public(p) and seen.append(p)) or negate(p, x), bar)
  yield ('a list root', bar2 is bar, bar2[0] is bar2[2], bar2[0].d, bar2[1].d, bar[0].d, seen)
  plain = {'a': 1, 'b': [2]}
  yield ('plain containers', lib.recursive_map(
      lambda p, x: x + 1 if isinstance(x, int) else x, plain), plain)
  lin = lib.Linear(1, 2, rngs=lib.Rngs(0))
  new = lib.recursive_map(lambda p, x: lib.BatchStat(x[...] * 0, tag=1)
                          if isinstance(x, lib.Param) else x, lin)
  yield ('a Variable for a Variable', type(new.kernel).__name__, new.kernel is lin.kernel,
         float(lin.kernel[...].sum()), lin.kernel.get_metadata().get('tag'))
  lin = lib.Linear(1, 2, rngs=lib.Rngs(0))
  new = lib.recursive_map(lambda p, x: jnp.zeros(3) if isinstance(x, lib.Param) else x, lin)
  yield ('an array for a Variable', type(new.kernel).__name__, type(lin.kernel).__name__)
  items = lib.List([lib.Param(jnp.ones(1)), 2])
  new = lib.recursive_map(lambda p, x: lib.BatchStat(jnp.zeros(1))
                          if isinstance(x, lib.Param) else x, items)
  yield ('in a List', type(new[0]).__name__, float(items[0][...][0]))

  class Holder(lib.Module):
    def __init__(self):
      self.l = lib.data([lib.Param(jnp.ones(1))])
      self.dd = lib.data({'k': Foo(1)})

  holder = Holder()
  new = lib.recursive_map(lambda p, x: lib.BatchStat(jnp.zeros(1)) if isinstance(x, lib.Param)
                          else negate(p, x), holder)
  yield ('in data containers', type(new.l[0]).__name__, type(holder.l[0]).__name__,
         new.dd['k'].d, holder.dd['k'].d)
  new = lib.recursive_map(lambda p, x: 99 if p == ('in_features',) else x, lin)
  yield ('a static attribute', new.in_features, lin.in_features)
  yield ('the root', lib.recursive_map(lambda p, x: 'root' if p == () else x, lin))
  yield ('a Variable root', lib.recursive_map(lambda p, x: (p, type(x).__name__),
                                              lib.Param(jnp.ones(1))))
  yield ('an int root', lib.recursive_map(lambda p, x: (p, x), 3))


def test_recursive_map_corners_match_flax(fnnx):
  for mine, flax in zip(behaviours(nnx), behaviours(fnnx), strict=True):
    assert repr(mine) == repr(flax)


# -- map -----------------------------------------------------------------------------------
def zeros_like_value(path, v):
  value = v.get_value() if hasattr(v, 'get_value') else v
  return jnp.zeros_like(value) if jnp.issubdtype(value.dtype, jnp.floating) else value


MAP_FUNCTIONS = {
    'identity': lambda path, v: v,
    'zeros (plain values)': zeros_like_value,
    'zeros (replace)': lambda path, v: (v.replace(zeros_like_value(path, v))
                                        if hasattr(v, 'replace') else zeros_like_value(path, v)),
}


@pytest.mark.parametrize('name', list(ALL_MODELS))
@pytest.mark.parametrize('f', list(MAP_FUNCTIONS))
@pytest.mark.parametrize('recreate_variables', [True, False])
def test_map_matches_flax(name, f, recreate_variables, fnnx):
  ours, theirs = build_both(name)
  paths = {'ours': [], 'theirs': []}

  def recording(who):
    def g(path, v):
      paths[who].append(path)
      return MAP_FUNCTIONS[f](path, v)
    return g

  mine = nnx.map(recording('ours'), ours, recreate_variables=recreate_variables)
  flax = fnnx.map(recording('theirs'), theirs, recreate_variables=recreate_variables)
  assert paths['ours'] == paths['theirs']
  assert type(mine) is type(ours) and mine is not ours
  summary = [row[:4] for row in flat_summary(mine)]
  assert summary == [row[:4] for row in flat_summary(flax)]
  for (_, *_, x), (*_, y) in zip(flat_summary(mine), flat_summary(flax), strict=True):
    np.testing.assert_array_equal(x, y)
  assert nnx.find_duplicates(mine) == fnnx.find_duplicates(flax)


@pytest.mark.parametrize('root', ['int', 'array', 'list', 'dict', 'variable', 'tuple'])
@pytest.mark.parametrize('recreate_variables', [True, False])
def test_map_of_other_roots_matches_flax(root, recreate_variables, fnnx):
  def run(lib):
    value = {'int': 3, 'array': jnp.ones(2), 'list': [1, 2],
             'dict': {'a': lib.Param(jnp.ones(1)), 'b': jnp.zeros(1)},
             'variable': lib.Param(jnp.ones(1), tag='x'),
             'tuple': (lib.Param(jnp.ones(1)), 3)}[root]
    seen = []

    def f(path, x):
      seen.append((path, type(x).__name__))
      return x[...] * 2 if isinstance(x, lib.Variable) else x

    result = lib.map(f, value, recreate_variables=recreate_variables)
    return repr(result), seen, result is value

  assert run(nnx) == run(fnnx)


def test_map_gives_a_shared_variable_one_new_value_everywhere(fnnx):
  def run(lib, recreate_variables):
    class Shared(lib.Module):
      def __init__(self):
        self.a = lib.Param(jnp.ones(1))
        self.b = self.a
        self.c = lib.data([self.a])
        self.t = lib.data((self.a, 2))

    new = lib.map(lambda p, x: x[...] + 1, Shared(), recreate_variables=recreate_variables)
    return (new.a is new.b, new.c[0] is new.a, new.t[0] is new.a, type(new.a).__name__,
            np.asarray(new.a[...]).tolist())

  for recreate_variables in (True, False):
    assert run(nnx, recreate_variables) == run(fnnx, recreate_variables)


def test_map_with_recreate_variables_false_leaves_rngs_counts_bare(fnnx):
  for lib in (nnx, fnnx):  # Flax's own test
    rngs = lib.map(lambda path, x: 0, lib.Rngs(0), recreate_variables=False)
    assert not isinstance(rngs.default.count, lib.Variable)
    assert rngs.default.count == 0


def test_map_returns_the_variables_f_returns():
  model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
  same = nnx.map(lambda path, v: v, model)
  assert same is not model and same.kernel is model.kernel
  other = nnx.map(lambda path, v: nnx.BatchStat(v.value), model)
  assert type(other.kernel) is nnx.BatchStat and type(model.kernel) is nnx.Param


# -- graph= and errors that teach ------------------------------------------------------------
CALLS = {
    'map': lambda **kw: nnx.map(lambda p, v: v, nnx.Linear(1, 1, rngs=nnx.Rngs(0)), **kw),
    'recursive_map': lambda **kw: nnx.recursive_map(lambda p, v: v, nnx.List([1]), **kw),
    'iter_module_children': lambda **kw: list(nnx.iter_module_children(nnx.List([1]), **kw)),
}


@pytest.mark.parametrize('function', list(CALLS))
def test_graph_none_and_true_are_graph_mode(function):
  CALLS[function](graph=None)
  CALLS[function](graph=True)


@pytest.mark.parametrize('function', list(CALLS))
def test_graph_false_says_tree_mode_is_not_built_for_it_yet(function):
  with pytest.raises(NotImplementedError, match=rf'{function}\(\.\.\., graph=False\) asks for '
                                                rf'tree mode.*not yet for {function}'):
    CALLS[function](graph=False)


@pytest.mark.parametrize('function', list(CALLS))
def test_graph_must_be_a_bool_or_none(function):
  with pytest.raises(TypeError, match=rf"{function}: graph must be None, True or False, "
                                      r"got 'tree'"):
    CALLS[function](graph='tree')


@pytest.mark.parametrize('bad', [3, [nnx.Linear(1, 1, rngs=nnx.Rngs(0))], nnx.Param(1.0)])
def test_iter_module_children_of_something_that_is_not_a_graph_node(bad):
  with pytest.raises(ValueError, match=rf'expects a graph node .*got {type(bad).__name__}\. '
                                       r'For a list or dict of Modules, iterate over it'):
    list(nnx.iter_module_children(bad))


def test_recursive_map_cannot_change_a_tuple_in_place_and_says_what_to_do():
  class Foo(nnx.Pytree):
    def __init__(self, d):
      self.d = d

  with pytest.raises(ValueError, match=r'f returned a new value for \(0,\), which is inside a '
                                       r'tuple.*Return a whole new tuple from f at \(\)'):
    nnx.recursive_map(lambda p, x: Foo(0) if isinstance(x, Foo) else x, (Foo(1), 2))


def test_recursive_map_refuses_a_cycle_and_names_both_paths(fnnx):
  node = nnx.List([])
  node.append(nnx.Dict(back=node))
  with pytest.raises(ValueError, match=r"cycle: the List at \(\) is met again inside itself, "
                                       r"at \(0, 'back'\).*remove the back-reference"):
    nnx.recursive_map(lambda p, x: x, node)
  flax_node = fnnx.List([])
  flax_node.append(fnnx.Dict(back=flax_node))
  with pytest.raises(ValueError, match='cycle'):
    fnnx.recursive_map(lambda p, x: x, flax_node)
