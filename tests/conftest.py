"""Shared test settings: highest matmul precision; Flax's deprecation noise off."""

import warnings

import jax

jax.config.update('jax_default_matmul_precision', 'highest')

# Flax 0.12.8 deprecates `.value` and sow outside nnx.capture; the oracle's
# warnings are noise in parity tests.
warnings.filterwarnings('ignore', category=DeprecationWarning, module='flax')
