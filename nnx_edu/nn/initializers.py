"""Layers -- initializers: how parameters get their first values.

An initializer is a function ``init(key, shape, dtype) -> Array``.  These
are JAX's own (``jax.nn.initializers``), so the same key gives the same
numbers as in Flax.  Layers default to ``lecun_normal()`` for kernels and
``zeros`` for biases.

>>> import jax, jax.numpy as jnp
>>> from nnx_edu.nn import initializers
>>> initializers.lecun_normal()(jax.random.key(0), (2, 3)).shape
(2, 3)
"""

from __future__ import annotations

import typing as tp
from collections import abc

import jax
from jax.nn.initializers import (constant, delta_orthogonal, glorot_normal, glorot_uniform,
                                 he_normal, he_uniform, kaiming_normal, kaiming_uniform,
                                 lecun_normal, lecun_uniform, normal, ones, orthogonal,
                                 truncated_normal, uniform, variance_scaling, xavier_normal,
                                 xavier_uniform, zeros)

# As Flax spells it: JAX's initializer protocol, or any callable that makes an array.
Initializer = tp.Union[jax.nn.initializers.Initializer, abc.Callable[..., tp.Any]]

__all__ = ['constant', 'delta_orthogonal', 'glorot_normal', 'glorot_uniform', 'he_normal',
           'he_uniform', 'kaiming_normal', 'kaiming_uniform', 'lecun_normal', 'lecun_uniform',
           'normal', 'ones', 'orthogonal', 'truncated_normal', 'uniform', 'variance_scaling',
           'xavier_normal', 'xavier_uniform', 'zeros', 'zeros_init', 'ones_init', 'Initializer']


def zeros_init() -> Initializer:
  """An initializer of zeros (the default for biases).

  >>> import jax
  >>> zeros_init()(jax.random.key(0), (2,))
  Array([0., 0.], dtype=float32)
  """
  return zeros


def ones_init() -> Initializer:
  """An initializer of ones (the default for normalization scales).

  >>> import jax
  >>> ones_init()(jax.random.key(0), (2,))
  Array([1., 1.], dtype=float32)
  """
  return ones
