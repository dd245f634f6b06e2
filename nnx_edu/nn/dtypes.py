"""Layers -- dtypes: which precision a layer computes in.

Every layer takes ``dtype`` (the dtype of the computation and the result)
and ``param_dtype`` (the dtype its parameters are stored in).  Before
computing, a layer casts its inputs and parameters to one common dtype with
``promote_dtype``: ``dtype`` if given, otherwise what JAX's type promotion
gives for the inputs and parameters together, made floating-point if needed.
"""

from __future__ import annotations

import typing as tp

import jax.numpy as jnp

T = tp.TypeVar('T', bound=tuple)


def canonicalize_dtype(*args: tp.Any, dtype: tp.Any = None, inexact: bool = True) -> tp.Any:
  """The dtype ``args`` should be cast to: ``dtype``, or the promoted type.

  ``None`` values in ``args`` are ignored.  With ``inexact=True`` an
  integer result is promoted to a floating dtype.

  >>> import jax.numpy as jnp
  >>> canonicalize_dtype(jnp.ones(2, jnp.int32), jnp.ones(2, jnp.bfloat16))
  dtype(bfloat16)
  >>> canonicalize_dtype(jnp.ones(2, jnp.int32))
  dtype('float32')
  """
  if dtype is None:
    dtype = jnp.result_type(*[jnp.asarray(x) for x in args if x is not None])
    if inexact and not jnp.issubdtype(dtype, jnp.inexact):
      dtype = jnp.promote_types(jnp.float32, dtype)
  if inexact and not jnp.issubdtype(dtype, jnp.inexact):
    raise ValueError(
        f'dtype must be a floating-point (or complex) type here, got {dtype}. '
        'Pass dtype=jnp.float32 (or another float dtype).'
    )
  return dtype


def promote_dtype(args: T, /, *, dtype: tp.Any = None, inexact: bool = True) -> T:
  """Cast every array in the tuple ``args`` to one common dtype (``None`` stays).

  >>> import jax.numpy as jnp
  >>> x, w, b = promote_dtype((jnp.ones(2, jnp.float16), jnp.ones(2), None))
  >>> x.dtype, w.dtype, b
  (dtype('float32'), dtype('float32'), None)
  """
  dtype = canonicalize_dtype(*args, dtype=dtype, inexact=inexact)
  return tuple(None if x is None else jnp.asarray(x, dtype) for x in args)  # type: ignore[return-value]
