"""Layers, chapter 0 -- activations: JAX's own, under their Flax names.

>>> import jax.numpy as jnp
>>> import nnx_edu as nnx
>>> nnx.relu(jnp.array([-1.0, 2.0]))
Array([0., 2.], dtype=float32)
"""

from jax.nn import (celu, elu, gelu, glu, hard_sigmoid, hard_silu, hard_swish, hard_tanh,
                    identity, leaky_relu, log_sigmoid, log_softmax, logsumexp, one_hot, relu,
                    relu6, selu, sigmoid, silu, soft_sign, softmax, softplus, standardize, swish)
from jax.numpy import tanh

__all__ = ['celu', 'elu', 'gelu', 'glu', 'hard_sigmoid', 'hard_silu', 'hard_swish', 'hard_tanh',
           'identity', 'leaky_relu', 'log_sigmoid', 'log_softmax', 'logsumexp', 'one_hot', 'relu',
           'relu6', 'selu', 'sigmoid', 'silu', 'soft_sign', 'softmax', 'softplus', 'standardize',
           'swish', 'tanh']
