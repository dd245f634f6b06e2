"""Helpers shared by the tests: comparing nnx_edu with Flax 0.12.8, and making test data.

A parity test builds the same thing with both libraries (a builder takes ``lib``, which is
``nnx_edu`` or ``flax.nnx``) and compares the two, ours first:

- ``normalize_repr`` -- a repr without memory addresses;
- ``flat_summary``, ``assert_same_state`` -- the same leaves at the same paths: Variable
  types, dtypes, shapes and values;
- ``assert_same_module`` -- the same repr, State shape tree and State;
- ``assert_same_variables`` -- a layer's named Variables (``scale``, ``mean``, ...) alike;
- ``assert_close`` -- outputs of the same structure, shapes and dtypes, within 1e-6;
- ``build_both`` -- a layer built by both libraries from the same seed; ``check_parity``
  builds one and compares the two modules and their outputs.

Test data comes from NumPy (``inputs``, ``offset_inputs``, ``random_mask``): every new
shape given to ``jax.random`` costs a compile.

Flax is imported only inside the helpers that need it (``flax_nnx``), so that the core's
tests also run where Flax is not installed (``tests/core/conftest.py``).
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx_edu as nnx

FLAX_FLAGS = ('hijax', 'ref', 'eager_sharding')  # Flax's internal metadata flags


def flax_nnx():
  """Flax's ``nnx``, the oracle; the calling test skips where Flax is not installed."""
  return pytest.importorskip('flax.nnx')


# -- reprs and metadata -----------------------------------------------------------------
def normalize_repr(text: str) -> str:
  """Hide memory addresses, which differ between any two objects."""
  return re.sub(r' at 0x[0-9a-f]+', ' at 0x…', text)


def user_metadata(variable) -> dict:
  """A Variable's metadata without Flax's internal flags, which nnx_edu does not keep."""
  return {k: v for k, v in variable.get_metadata().items() if k not in FLAX_FLAGS}


# -- States ---------------------------------------------------------------------------------
def state_of(x):
  """``x`` if it is a State (of either library), else the State of the graph node ``x``."""
  if isinstance(x, nnx.State):
    return x
  if isinstance(x, nnx.Pytree):
    return nnx.state(x)
  fnnx = flax_nnx()
  return x if isinstance(x, fnnx.State) else fnnx.state(x)


def to_flat_state(x):
  """The ``(path, leaf)`` pairs, sorted by path, of a State or graph node of either library."""
  state = state_of(x)
  lib = nnx if isinstance(state, nnx.State) else flax_nnx()
  return lib.to_flat_state(state)


def flat_summary(x) -> list[tuple]:
  """``(path, type name, dtype, shape, value)`` for each leaf of a State or graph node.

  The type is the Variable's (a bare array leaf gives its own).  Values become NumPy
  arrays: random keys their key data (``dtype`` stays the key's), and the tuple of
  values ``sow`` records one stacked array.
  """
  rows = []
  for path, leaf in to_flat_state(x):
    value = leaf.get_value() if hasattr(leaf, 'get_value') else leaf
    if isinstance(value, tuple):  # values recorded by sow
      value = np.stack([np.asarray(v) for v in value])
    dtype = value.dtype if hasattr(value, 'dtype') else np.asarray(value).dtype
    if jnp.issubdtype(dtype, jax.dtypes.prng_key):
      value = jax.random.key_data(value)
    value = np.asarray(value)
    rows.append((path, type(leaf).__name__, dtype, value.shape, value))
  return rows


def _as_float64(x: np.ndarray) -> np.ndarray:
  return x.astype(np.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x


def assert_same_state(ours, theirs, *, exact: bool = True, rtol: float = 1e-6,
                      atol: float = 1e-6) -> None:
  """The same leaves at the same paths, with the same Variable types, dtypes and shapes.

  ``ours`` and ``theirs`` are States or graph nodes (Modules, Rngs, Optimizers), of either
  library.  Values must be bit-identical, or with ``exact=False`` within ``rtol`` and ``atol``.
  """
  a, b = flat_summary(ours), flat_summary(theirs)
  assert [row[:4] for row in a] == [row[:4] for row in b]
  for (path, *_, x), (*_, y) in zip(a, b, strict=True):
    if exact:
      np.testing.assert_array_equal(x, y, err_msg=str(path))
    else:
      np.testing.assert_allclose(_as_float64(x), _as_float64(y), rtol=rtol, atol=atol,
                                 err_msg=str(path))


def assert_same_module(ours, theirs) -> None:
  """The same repr (addresses aside), the same State shape tree and the same State, bit for bit."""
  assert normalize_repr(repr(ours)) == normalize_repr(repr(theirs))
  assert (repr(jax.tree.map(jnp.shape, state_of(ours)))
          == repr(jax.tree.map(jnp.shape, state_of(theirs))))
  assert_same_state(ours, theirs)


def assert_same_variables(ours, theirs, names=('scale', 'bias', 'mean', 'var')) -> None:
  """The attributes ``names`` alike: absent in both, or of one type, dtype and bits (or None)."""
  for name in names:
    if not hasattr(theirs, name):
      assert not hasattr(ours, name), name
      continue
    mine, flax = getattr(ours, name), getattr(theirs, name)
    assert type(mine).__name__ == type(flax).__name__, name
    if flax is not None:
      assert mine[...].dtype == flax[...].dtype, name
      np.testing.assert_array_equal(mine[...], flax[...], err_msg=name)


# -- outputs ------------------------------------------------------------------------------
def assert_close(ours, theirs, *, rtol: float = 1e-6, atol: float = 1e-6) -> None:
  """Outputs alike: one pytree structure, and per array one shape, one dtype, values within
  ``rtol`` and ``atol`` (compared in float64)."""
  assert jax.tree.structure(ours) == jax.tree.structure(theirs)
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
    assert (a.shape, a.dtype) == (b.shape, b.dtype)
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64),
                               rtol=rtol, atol=atol)


# -- building -----------------------------------------------------------------------------
def build_both(name: str, *args, seed: int = 0, **kwargs):
  """The layer ``name`` built by nnx_edu and by Flax, each from ``Rngs(seed)``: ours first."""
  fnnx = flax_nnx()
  return (getattr(nnx, name)(*args, rngs=nnx.Rngs(seed), **kwargs),
          getattr(fnnx, name)(*args, rngs=fnnx.Rngs(seed), **kwargs))


def check_parity(name: str, args: tuple, kwargs: dict, x):
  """``build_both(name, *args, **kwargs)``: the same module, and close outputs on ``x``.

  Returns the two layers, ours first.
  """
  ours, theirs = build_both(name, *args, **kwargs)
  assert_same_module(ours, theirs)
  assert_close(ours(x), theirs(x))
  return ours, theirs


# -- test data ------------------------------------------------------------------------------
def inputs(*shape: int, seed: int = 1, dtype=jnp.float32, offset: float = 0.0,
           scale: float = 1.0) -> jax.Array:
  """``offset + scale * N(0, 1)`` of ``shape`` from NumPy, rounded first for an integer dtype."""
  values = offset + scale * np.random.default_rng(seed).standard_normal(shape)
  return jnp.asarray(values.round() if jnp.issubdtype(dtype, jnp.integer) else values, dtype)


def offset_inputs(*shape: int, seed: int = 1, dtype=jnp.float32) -> jax.Array:
  """Inputs with mean 3 and standard deviation 2: for normalization, both then matter."""
  return inputs(*shape, seed=seed, dtype=dtype, offset=3.0, scale=2.0)


def random_mask(*shape: int, seed: int = 2) -> jax.Array:
  """A boolean mask of ``shape``, each entry True with probability 0.7."""
  return jnp.asarray(np.random.default_rng(seed).random(shape) < 0.7)
