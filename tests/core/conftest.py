"""The core's tests run without Flax too: .ci/run runs them with the lowest supported JAX.

So no file here imports Flax at module level.  A parity test asks for Flax's nnx through the
``fnnx`` fixture, and skips where Flax is not installed, while the unit tests beside it run.
"""

import pytest

import nnx_edu as nnx
from tests.parity import flax_nnx


@pytest.fixture
def fnnx():
  """Flax's nnx, the oracle of the parity tests."""
  return flax_nnx()


@pytest.fixture(params=['nnx_edu', 'flax'])
def lib(request):
  """Each library in turn, for a test that states a behaviour both share."""
  return nnx if request.param == 'nnx_edu' else flax_nnx()
