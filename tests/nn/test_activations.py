"""Activations: PReLU, parity with Flax 0.12.8 (its slope, outputs and gradient).

The inputs are scaled by 4, so that integer inputs (rounded) take more values than -1, 0 and 1.
"""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx as fnnx

import nnx_edu as nnx
from tests.parity import assert_close, inputs, normalize_repr

BF16 = jnp.bfloat16
PRELU_OPTIONS = [
    {},
    {'negative_slope_init': 0.25},
    {'negative_slope_init': jnp.array([0.1, 0.2, 0.3])},
    {'dtype': BF16},
    {'param_dtype': BF16},
    {'param_dtype': jnp.float16, 'dtype': jnp.float32},
    {'negative_slope_metadata': {'note': 'slope'}},
]


@pytest.mark.parametrize('options', PRELU_OPTIONS)
@pytest.mark.parametrize('dtype', [jnp.float32, BF16, jnp.int32])
def test_prelu_matches_flax(options, dtype):
  ours, theirs = nnx.PReLU(**options), fnnx.PReLU(**options)
  assert normalize_repr(repr(ours)) == normalize_repr(repr(theirs))
  np.testing.assert_array_equal(ours.negative_slope[...], theirs.negative_slope[...])
  assert ours.negative_slope[...].dtype == theirs.negative_slope[...].dtype
  x = inputs(4, 3, dtype=dtype, scale=4)
  assert_close(ours(x), theirs(x))


def test_prelu_slope_gradient_matches_flax():
  x = inputs(4, 3, scale=4)
  ours = nnx.grad(lambda m: m(x).sum())(nnx.PReLU(0.2))
  theirs = fnnx.grad(lambda m: m(x).sum())(fnnx.PReLU(0.2))
  np.testing.assert_allclose(ours['negative_slope'].get_value(),
                             theirs['negative_slope'].get_value(), rtol=1e-6)
  assert float(ours['negative_slope'].get_value()) == pytest.approx(float(x[x < 0].sum()))
