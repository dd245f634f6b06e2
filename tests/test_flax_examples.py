"""Flax 0.12.8's own docstring examples, run against nnx_edu.

For the layers and helpers that are not on the seed pages, the examples in
Flax's docstrings are a second spec: each one runs here with ``nnx`` bound to
nnx_edu, and must print what Flax's docstring says.  (The cells, RNN, pooling
and the sharding helpers have no examples in Flax 0.12.8; their parity tests
are in nn/test_recurrent.py, nn/test_pooling.py and sharding/test_partitioning.py.)
"""

import doctest
import inspect

import pytest
from flax import nnx as fnnx

import nnx_edu

NAMES = ['InstanceNorm', 'SpectralNorm', 'WeightNorm', 'Bidirectional', 'LoRA', 'LoRALinear',
         'PReLU', 'set_metadata', 'tabulate']


def flax_docstrings(name):
  """The docstrings of Flax's ``name`` and of the methods its class defines itself."""
  obj = getattr(fnnx, name)
  objs = [obj]
  if inspect.isclass(obj):
    objs += [member for member in vars(obj).values() if inspect.isfunction(member)]
  return [inspect.getdoc(o) for o in objs if '>>>' in (inspect.getdoc(o) or '')]


@pytest.mark.parametrize('name', NAMES)
def test_flax_docstring_examples_run_unchanged_against_nnx_edu(name):
  docs = flax_docstrings(name)
  assert docs, f'Flax 0.12.8 has no example for {name}: drop it from NAMES'
  # Bidirectional's example uses RNN and GRUCell without importing them
  globs = {'nnx': nnx_edu, 'RNN': nnx_edu.RNN, 'GRUCell': nnx_edu.GRUCell,
           'Bidirectional': nnx_edu.Bidirectional}
  for doc in docs:
    doc = doc.replace('from flax import nnx', 'import nnx_edu as nnx')
    test = doctest.DocTestParser().get_doctest(doc, dict(globs), name, None, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report = []
    runner.run(test, out=report.append)
    assert runner.failures == 0, ''.join(report)
