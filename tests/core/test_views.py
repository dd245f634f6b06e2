"""Core -- views: view, with_attributes, view_info, set_view and with_vars against Flax 0.12.8.

Grids over models with Dropout, BatchNorm, MultiHeadAttention, nested Modules and Lists,
over the options (attributes, ``only`` filters, ``graph``): the same view (repr and State),
the original left as it was, the Variables shared, and the same view_info text.  Then the
corners where nnx_edu differs on purpose, and every error.
"""

import warnings

import jax.numpy as jnp
import pytest

import nnx_edu as nnx
from nnx_edu.core.views import docstring_args
from tests.parity import assert_same_state, normalize_repr


def block(lib, seed=0):
  class Block(lib.Module):
    def __init__(self, rngs):
      self.linear = lib.Linear(2, 5, rngs=rngs)
      self.dropout = lib.Dropout(0.5, deterministic=False, rngs=rngs)
      self.batch_norm = lib.BatchNorm(5, use_running_average=False, rngs=rngs)

  return Block(lib.Rngs(seed))


def nested(lib, seed=0):
  class Outer(lib.Module):
    def __init__(self, rngs):
      self.first = block(lib, seed)
      self.second = block(lib, seed + 1)
      self.drops = lib.List([lib.Dropout(0.1), lib.Dropout(0.2, deterministic=True)])

  return Outer(lib.Rngs(seed))


def layer_list(lib, seed=0):
  rngs = lib.Rngs(seed)
  return lib.List([lib.Dropout(0.3, rngs=rngs), lib.BatchNorm(3, rngs=rngs),
                   lib.Linear(3, 3, rngs=rngs)])


def with_attention(lib, seed=0):
  class WithAttention(lib.Module):
    def __init__(self, rngs):
      self.mha = lib.MultiHeadAttention(4, 8, 32, rngs=rngs)
      self.drop = lib.Dropout(0.5, rngs=rngs)
      self.bn = lib.BatchNorm(32, rngs=rngs)

  return WithAttention(lib.Rngs(seed))


MODELS = {'block': block, 'nested': nested, 'list': layer_list, 'attention': with_attention}

OPTIONS = {
    'deterministic': lambda lib: {'deterministic': True},
    'running average': lambda lib: {'use_running_average': True},
    'both': lambda lib: {'deterministic': True, 'use_running_average': True},
    'only Dropout': lambda lib: {'only': lib.Dropout, 'deterministic': True,
                                 'use_running_average': True, 'raise_if_not_found': False},
    'only a path': lambda lib: {'only': lib.PathContains('first'), 'deterministic': True},
    'not found, not raised': lambda lib: {'deterministic': True, 'unknown': 1,
                                          'raise_if_not_found': False},
}


# 'only a path' selects the Module at 'first', which only the nested model has.
GRID = [(name, option) for name in MODELS for option in OPTIONS
        if option != 'only a path' or name == 'nested']


def variables_by_path(lib, node):
  return {path: value for path, value in lib.iter_graph(node) if isinstance(value, lib.Variable)}


def check_view(make_view, name, option, graph, fnnx):
  """Our view and Flax's alike; the original unchanged; the Variables shared."""
  results = []
  for lib in (nnx, fnnx):
    model = MODELS[name](lib)
    before = normalize_repr(repr(model))
    out = make_view(lib)(model, **OPTIONS[option](lib), graph=graph)
    assert normalize_repr(repr(model)) == before
    shared = variables_by_path(lib, model)
    assert {p: id(v) for p, v in variables_by_path(lib, out).items()} == {
        p: id(v) for p, v in shared.items()}
    assert out is not model
    results.append(out)
  ours, theirs = results
  assert normalize_repr(repr(ours)) == normalize_repr(repr(theirs))
  assert_same_state(ours, theirs)


@pytest.mark.parametrize('graph', [None, True, False])
@pytest.mark.parametrize('name, option', GRID)
def test_view_makes_the_same_copy_as_flax(name, option, graph, fnnx):
  check_view(lambda lib: lib.view, name, option, graph, fnnx)


@pytest.mark.parametrize('graph', [None, False])
@pytest.mark.parametrize('name, option', GRID)
def test_with_attributes_makes_the_same_copy_as_flax(name, option, graph, fnnx):
  check_view(lambda lib: lib.with_attributes, name, option, graph, fnnx)


def test_with_attributes_sets_attributes_that_set_view_does_not_know(fnnx):
  for lib in (nnx, fnnx):
    out = lib.with_attributes(block(lib), rate=0.25, momentum=0.5)
    assert (out.dropout.rate, out.batch_norm.momentum) == (0.25, 0.5)
    with pytest.raises(ValueError, match=r"Unused keys found in nnx.view: \['rate'\]"):
      lib.view(block(lib), rate=0.25)


def test_view_shares_a_shared_module_once_in_graph_mode(lib):
  class Shared(lib.Module):
    def __init__(self):
      self.a = lib.Dropout(0.5)
      self.b = self.a

  out = lib.view(Shared(), deterministic=True)
  assert out.a is out.b and out.a.deterministic


def test_a_set_view_with_kwargs_takes_every_argument(fnnx):
  for lib in (nnx, fnnx):
    class Flexible(lib.Module):
      def set_view(self, **options):
        self.options = options

    out = lib.view(lib.List([Flexible(), lib.Dropout(0.1)]), deterministic=True, anything=1)
    assert out[0].options == {'deterministic': True, 'anything': 1}
    assert out[1].deterministic is True


def test_multi_head_attention_view_switches_to_decoding(fnnx):
  for lib in (nnx, fnnx):
    model = with_attention(lib)
    out = lib.view(model, decode=True, deterministic=True)
    assert out.mha.decode and out.mha.deterministic and out.drop.deterministic
    assert model.mha.decode is None


def test_multi_head_attention_view_makes_the_cache_flax_only_describes():
  # Flax 0.12.8's set_view never makes the cache (its layer always has the
  # attribute, set to None); nnx_edu makes it when given both sizes.
  layer = nnx.MultiHeadAttention(4, 8, 32, rngs=nnx.Rngs(0))
  out = nnx.view(layer, decode=True, batch_size=(2, 3), max_length=5)
  assert out.cached_key.shape == out.cached_value.shape == (2, 3, 5, 4, 8)
  assert int(out.cache_index.value) == 0 and layer.cached_key is None
  assert out(jnp.ones((2, 3, 1, 8))).shape == (2, 3, 1, 8)
  with pytest.raises(TypeError, match="'max_length' must be provided when initializing cache"):
    nnx.view(layer, decode=True, batch_size=2)


# -- view_info -----------------------------------------------------------------------
INFO_ONLY = {
    'everything': lambda lib: ...,
    'Dropout': lambda lib: lib.Dropout,
    'MultiHeadAttention': lambda lib: lib.MultiHeadAttention,
    'path first': lambda lib: lib.PathContains('first'),
}


@pytest.mark.parametrize('graph', [None, False])
@pytest.mark.parametrize('only', list(INFO_ONLY))
@pytest.mark.parametrize('name', list(MODELS))
def test_view_info_prints_the_same_text_as_flax(name, only, graph, fnnx):
  ours = nnx.view_info(MODELS[name](nnx), only=INFO_ONLY[only](nnx), graph=graph)
  theirs = fnnx.view_info(MODELS[name](fnnx), only=INFO_ONLY[only](fnnx), graph=graph)
  assert ours == theirs


def custom_views(lib):
  class Documented(lib.Module):
    def set_view(self, arg1: bool | None = None, arg2: int | None = None, **kwargs) -> dict:
      """Example set_view docstring.

      Args:
        arg1: The first argument.
        arg2: The second argument.
          This has two lines.
      """
      return kwargs

  class Undocumented(lib.Module):
    def set_view(self, a: int = 1, *, b='x'):
      pass

  return lib.List([Undocumented(), Documented()])


def test_view_info_of_custom_set_views_matches_flax(fnnx):
  ours, theirs = nnx.view_info(custom_views(nnx)), fnnx.view_info(custom_views(fnnx))
  assert ours == theirs
  assert ours.replace('custom_views.<locals>.', '').startswith('Documented:\n  arg1: bool | None = None\n    The first argument.\n'
                         '  arg2: int | None = None\n    The second argument.\n'
                         '    This has two lines.\nUndocumented:\n  set_view(self, a: int = 1')


def test_view_info_stops_at_the_next_section_where_flax_keeps_blank_lines():
  doc = 'Set.\n\nArgs:\n  a: first.\n  b: second,\n    continued.\n\nReturns:\n  nothing.'
  assert docstring_args(doc) == {'a': '    first.', 'b': '    second,\n    continued.'}


def test_view_info_of_a_model_without_set_view_is_empty(fnnx):
  for lib in (nnx, fnnx):
    assert lib.view_info(lib.Linear(1, 1, rngs=lib.Rngs(0))) == ''


# -- with_vars -------------------------------------------------------------------------
@pytest.mark.parametrize('options', [{}, {'hijax': False}, {'ref': False},
                                     {'hijax': False, 'ref': False, 'only': 'nothing'}])
def test_with_vars_without_new_kinds_copies_and_shares_as_flax_does(options, fnnx):
  for lib in (nnx, fnnx):
    model = block(lib)
    kwargs = {**options, 'only': lib.Param} if 'only' in options else options
    out = lib.with_vars(model, **kwargs)
    assert out is not model and out.linear.kernel is model.linear.kernel
    assert_same_state(out, model)


@pytest.mark.parametrize('kind', ['hijax', 'ref'])
def test_with_vars_refuses_the_kinds_nnx_edu_does_not_have(kind):
  with pytest.raises(NotImplementedError, match=f'with_vars\\({kind}=True\\): nnx_edu has no'):
    nnx.with_vars(block(nnx), **{kind: True})


def test_with_vars_refuses_mutable_which_belongs_to_hijax_variables():
  with pytest.raises(NotImplementedError, match='mutable= applies to'):
    nnx.with_vars(block(nnx), mutable=False)


def test_vars_as_warns_that_it_is_deprecated_as_flax_does(fnnx):
  for lib in (nnx, fnnx):
    with pytest.warns(DeprecationWarning, match='Use with_vars instead'):
      out = lib.vars_as(block(lib))
    assert type(out).__name__ == 'Block'


# -- errors ------------------------------------------------------------------------------
def test_view_of_an_unknown_argument_names_it_the_modules_searched_and_the_fix(fnnx):
  flax_words = r"Unused keys found in nnx.view: \['unknown'\]"
  with pytest.raises(ValueError, match=flax_words):
    fnnx.view(block(fnnx), deterministic=True, unknown=True)
  with pytest.raises(ValueError, match=flax_words) as error:
    nnx.view(block(nnx), deterministic=True, unknown=True)
  message = str(error.value)
  assert 'BatchNorm(use_running_average), Dropout(deterministic)' in message
  assert 'nnx.view_info' in message and 'raise_if_not_found=False' in message


def test_view_without_any_set_view_points_to_with_attributes():
  with pytest.raises(ValueError, match='None of the Modules searched has a set_view method; '
                                       'to set plain attributes, use nnx.with_attributes'):
    nnx.view(nnx.Linear(1, 1, rngs=nnx.Rngs(0)), use_bias=False)


@pytest.mark.parametrize('graph', [None, False])
def test_with_attributes_of_an_unknown_attribute_keeps_flax_words_and_adds_the_fix(graph, fnnx):
  flax_words = r"Could not find at least one instance of the following attributes: \['unknown'\]"
  with pytest.raises(ValueError, match=flax_words):
    fnnx.with_attributes(block(fnnx), deterministic=True, unknown=True, graph=graph)
  with pytest.raises(ValueError, match=flax_words) as error:
    nnx.with_attributes(block(nnx), deterministic=True, unknown=True, graph=graph)
  assert 'No Module searched (BatchNorm, Block, Dropout, Linear) has them' in str(error.value)


def test_with_attributes_whose_filter_selects_nothing_says_so():
  with pytest.raises(ValueError, match='The filters selected no Module: check them'):
    nnx.with_attributes(block(nnx), only=nnx.Conv, deterministic=True)


def test_set_attributes_of_an_unknown_attribute_keeps_flax_words(fnnx):
  flax_words = r"Could not find at least one instance of the following attributes: \['unknown'\]"
  for lib in (nnx, fnnx):
    model = block(lib)
    with pytest.raises(ValueError, match=flax_words):
      model.set_attributes(deterministic=True, use_running_average=True, unknown=True)
    model.set_attributes(deterministic=True, unknown=True, raise_if_not_found=False, graph=True)
    assert model.dropout.deterministic is True


def test_view_follows_set_graph_mode_when_graph_is_left_out():
  model = nnx.Sequential(nnx.Dropout(0.5))
  with nnx.set_graph_mode(False):
    assert nnx.view(model, deterministic=True).layers[0].deterministic is True


def test_the_views_raise_no_deprecation_warnings():
  with warnings.catch_warnings():
    warnings.simplefilter('error')
    nnx.view(block(nnx), deterministic=True)
    nnx.with_attributes(block(nnx), deterministic=True)
    nnx.view_info(block(nnx))


def test_a_training_view_and_an_evaluation_view_train_one_model(lib):
  import optax

  class Model(lib.Module):
    def __init__(self, rngs):
      self.linear = lib.Linear(2, 8, rngs=rngs)
      self.bn = lib.BatchNorm(8, use_running_average=False, rngs=rngs)
      self.dropout = lib.Dropout(0.2, deterministic=False, rngs=rngs)
      self.out = lib.Linear(8, 3, rngs=rngs)

    def __call__(self, x):
      return self.out(lib.relu(self.dropout(self.bn(self.linear(x)))))

  model = Model(lib.Rngs(0))
  train_model = lib.view(model, deterministic=False, use_running_average=False)
  eval_model = lib.view(model, deterministic=True, use_running_average=True)
  assert train_model.dropout.rngs.count is eval_model.dropout.rngs.count
  optimizer = lib.Optimizer(train_model, optax.adam(1e-2), wrt=lib.Param)
  x, y = jnp.ones((8, 2)), jnp.zeros((8, 3))

  @lib.jit
  def train_step(model, optimizer):
    loss, grads = lib.value_and_grad(lambda m: ((m(x) - y) ** 2).mean())(model)
    optimizer.update(model, grads)
    return loss

  loss_before = lib.jit(lambda m: ((m(x) - y) ** 2).mean())(eval_model)
  train_step(train_model, optimizer)
  assert int(train_model.dropout.rngs.count[...]) == 1
  assert lib.jit(lambda m: ((m(x) - y) ** 2).mean())(eval_model) != loss_before
  assert model.linear.kernel is eval_model.linear.kernel  # the steps trained the model
