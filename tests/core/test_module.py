"""Core -- Modules: sow, set_attributes, List and Dict, and iter_modules against Flax 0.12.8."""

import pytest

import nnx_edu as nnx
from tests.models import MODELS, block_class, both

MODEL_NAMES = list(MODELS)


def test_sow_appends_and_refuses_a_different_type():
  model = MODELS['single_block'](nnx)
  model.sow(nnx.Intermediate, 'h', 1)
  model.sow(nnx.Intermediate, 'h', 2)
  assert model.h.value == (1, 2)
  model.sow('intermediates', 'g', 3)
  assert isinstance(model.g, nnx.Intermediate)
  with pytest.raises(ValueError, match="to be of type 'BatchStat', got 'Intermediate'"):
    model.sow(nnx.BatchStat, 'h', 3)


def test_sow_with_a_custom_reduction():
  model = MODELS['single_block'](nnx)
  for x in (1.0, 2.0, 3.0):
    model.sow(nnx.Intermediate, 'total', x, reduce_fn=lambda a, b: a + b, init_fn=lambda: 0.0)
  assert model.total.value == 6.0


def test_set_attributes_with_a_filter_touches_only_selected_modules():
  model = MODELS['nested'](nnx)
  model.set_attributes(nnx.PathContains('first'), din=99)
  assert model.first.din == 99 and model.second.din == 4


def test_list_and_dict_behave_like_python_containers():
  Block = block_class(nnx)
  layers = nnx.List([Block(1, 1, nnx.Rngs(0))])
  layers.append(Block(1, 1, nnx.Rngs(1)))
  layers.insert(0, 'static label')
  assert len(layers) == 3 and isinstance(layers[1:], nnx.List)
  del layers[0]
  heads = nnx.Dict(a=Block(1, 1, nnx.Rngs(0)))
  heads['b'] = Block(1, 1, nnx.Rngs(1))
  assert heads.a is heads['a'] and sorted(heads) == ['a', 'b']
  graphdef, state = nnx.split(heads)
  assert sorted(nnx.merge(graphdef, state)) == ['a', 'b']


@pytest.mark.parametrize('name', MODEL_NAMES)
def test_iter_modules_yields_the_same_paths(name, fnnx):
  ours, theirs = both(name)
  assert [p for p, _ in nnx.iter_modules(ours)] == [p for p, _ in fnnx.iter_modules(theirs)]
  assert [type(m).__name__ for _, m in nnx.iter_modules(ours)] == [
      type(m).__name__ for _, m in fnnx.iter_modules(theirs)]
