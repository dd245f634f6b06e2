"""Shared test settings: highest matmul precision, and Flax as the oracle."""

import re
import warnings

import jax
import pytest

jax.config.update('jax_default_matmul_precision', 'highest')

# Flax 0.12.8 deprecates `.value` and sow outside nnx.capture; the oracle's
# warnings are noise in parity tests.
warnings.filterwarnings('ignore', category=DeprecationWarning, module='flax')


def normalize_repr(text: str) -> str:
  """Hide memory addresses, which differ between any two objects."""
  return re.sub(r' at 0x[0-9a-f]+', ' at 0x…', text)


@pytest.fixture(params=['nnx_edu', 'flax'])
def lib(request):
  """Run a test once against nnx_edu and once against flax.nnx."""
  if request.param == 'flax':
    from flax import nnx
  else:
    import nnx_edu as nnx
  return nnx
