"""Core -- filters: each kind of filter selects the same leaves as in Flax 0.12.8.

Every filter runs over every model of tests/models.py, through ``nnx.state(model, *filters)``.
"""

import pytest

import nnx_edu as nnx
from tests.models import MODELS, both
from tests.parity import assert_same_state

MODEL_NAMES = list(MODELS)
FILTERS = {
    'Param': lambda lib: (lib.Param,),
    'BatchStat': lambda lib: (lib.BatchStat,),
    'Param, ...': lambda lib: (lib.Param, ...),
    'tuple': lambda lib: ((lib.Param, lib.BatchStat),),
    'Not(Param)': lambda lib: (lib.Not(lib.Param),),
    'All': lambda lib: (lib.All(lib.Param, lib.PathContains('w')),),
    'Any': lambda lib: (lib.Any(lib.BatchStat, lib.PathContains('b')),),
    'PathContains': lambda lib: (lib.PathContains('first'),),
    'PathContains inexact': lambda lib: (lib.PathContains('bl', exact=False),),
    'OfType': lambda lib: (lib.OfType(lib.Variable),),
    'tag string': lambda lib: ('dropout',),
    'callable': lambda lib: (lambda path, x: path[-1] == 'b',),
    'Everything': lambda lib: (lib.Everything(),),
    'Nothing': lambda lib: (lib.Nothing(),),
    'True': lambda lib: (True,),
    'False': lambda lib: (False,),
    'None': lambda lib: (None,),
    'Ellipsis': lambda lib: (...,),
    'RngState, Param': lambda lib: (lib.RngState, lib.Param),
}


@pytest.mark.parametrize('name', MODEL_NAMES)
@pytest.mark.parametrize('filter_name', list(FILTERS))
def test_state_with_filters_selects_the_same_leaves(name, filter_name, fnnx):
  ours, theirs = both(name)
  a = nnx.state(ours, *FILTERS[filter_name](nnx))
  b = fnnx.state(theirs, *FILTERS[filter_name](fnnx))
  a, b = (a, b) if isinstance(a, tuple) else ((a,), (b,))
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert_same_state(x, y)
