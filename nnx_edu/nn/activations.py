"""Layers -- activations: JAX's own, under their Flax names, and PReLU.

The activation functions are JAX's (``jax.nn``), re-exported so that
``nnx.relu`` is ``jax.nn.relu``.  One activation learns: ``PReLU`` is a
leaky ReLU whose negative slope is a ``Param``, so it is a layer
(a Module) rather than a function.

>>> import jax.numpy as jnp
>>> import nnx_edu as nnx
>>> nnx.relu(jnp.array([-1.0, 2.0]))
Array([0., 2.], dtype=float32)
"""

from __future__ import annotations

import typing as tp
from types import MappingProxyType

import jax
import jax.numpy as jnp
from jax.nn import (celu, elu, gelu, glu, hard_sigmoid, hard_silu, hard_swish, hard_tanh, identity,
                    leaky_relu, log_sigmoid, log_softmax, logsumexp, one_hot, relu, relu6, selu,
                    sigmoid, silu, soft_sign, softmax, softplus, standardize, swish)
from jax.numpy import tanh

from nnx_edu.core.module import Module
from nnx_edu.core.variable_types import Param
from nnx_edu.nn import dtypes

__all__ = ['celu', 'elu', 'gelu', 'glu', 'hard_sigmoid', 'hard_silu', 'hard_swish', 'hard_tanh',
           'identity', 'leaky_relu', 'log_sigmoid', 'log_softmax', 'logsumexp', 'one_hot', 'relu',
           'relu6', 'selu', 'sigmoid', 'silu', 'soft_sign', 'softmax', 'softplus', 'standardize',
           'swish', 'tanh', 'PReLU']


class PReLU(Module):
  """Parametric ReLU: ``x`` where ``x >= 0``, else ``negative_slope * x``, with a learned slope.

  It draws no random numbers, so it takes no ``rngs``.

  Args:
    negative_slope_init: the slope's first value (default 0.01); an array
      gives one slope per entry, broadcast against the inputs.
    dtype: dtype of the computation.  When None (the default) the slope is
      cast to the inputs' dtype, as Linen's PReLU does -- so integer inputs
      get an integer slope (0.01 becomes 0).
    param_dtype: dtype of the slope (default float32).
    promote_dtype: casts ``(inputs, negative_slope)`` to ``dtype`` when
      ``dtype`` is given.
    negative_slope_metadata: extra metadata for the slope's Param.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> act = nnx.PReLU(negative_slope_init=0.1)
  >>> act(jnp.array([-2.0, 3.0]))
  Array([-0.2,  3. ], dtype=float32)
  >>> act.negative_slope
  Param( # 1 (4 B)
    value=Array(0.1, dtype=float32)
  )
  """

  def __init__(self, negative_slope_init: float | jax.Array = 0.01, *,
               dtype: tp.Any = None, param_dtype: tp.Any = jnp.float32,
               promote_dtype: tp.Callable[..., tuple] = dtypes.promote_dtype,
               negative_slope_metadata: tp.Mapping[str, tp.Any] = MappingProxyType({})):
    self.negative_slope = Param(jnp.asarray(negative_slope_init, dtype=param_dtype),
                                **negative_slope_metadata)
    self.dtype = dtype
    self.param_dtype = param_dtype
    self.promote_dtype = promote_dtype

  def __call__(self, inputs: jax.Array) -> jax.Array:
    slope = self.negative_slope[...]
    if self.dtype is None:
      slope = jnp.asarray(slope, inputs.dtype)
    else:
      inputs, slope = self.promote_dtype((inputs, slope), dtype=self.dtype)
    return jnp.where(inputs >= 0, inputs, slope * inputs)
