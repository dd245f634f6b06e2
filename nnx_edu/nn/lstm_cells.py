"""Layers -- LSTM cells: a second memory, guarded by gates.

The long short-term memory cell carries *two* arrays from step to step,
``(c, h)``: ``c`` is a long-term memory that gates edit (forget some of it,
write some of the input into it), ``h`` is what the cell shows -- its output.
Gating the memory this way lets gradients flow over many steps, which the
``SimpleCell`` of ``recurrent_cells.py`` cannot do.

``LSTMCell`` spells the arithmetic out with eight ``Linear`` layers, one per
gate and input; ``OptimizedLSTMCell`` stores the same kernels side by side,
so one step is two matrix products.  Both share ``recurrent_cells.py``'s helpers: the
layers are created in Flax's order, and ``initialize_carry`` gives the pair
``(c, h)`` of zeros.

>>> import jax.numpy as jnp
>>> import nnx_edu as nnx
>>> cell = nnx.LSTMCell(3, 4, rngs=nnx.Rngs(0))
>>> c, h = cell.initialize_carry((2, 3), nnx.Rngs(0))
>>> (c, h), y = cell((c, h), jnp.ones((2, 3)))
>>> c.shape, h.shape, bool((y == h).all())
((2, 4), (2, 4), True)
"""

from __future__ import annotations

import typing as tp

import jax.numpy as jnp

from nnx_edu.core.rngs import Rngs
from nnx_edu.nn import dtypes, initializers
from nnx_edu.nn.activations import sigmoid, tanh
from nnx_edu.nn.common import NO_METADATA, Array, Dtype, Initializer, Metadata
from nnx_edu.nn.linear import Linear
from nnx_edu.nn.recurrent_cells import (Carry, CarryRngs, RNNCellBase, cell_linear, check_step,
                                        default_bias_init, default_kernel_init,
                                        default_recurrent_kernel_init, keep_rngs_stream, new_carry,
                                        one_feature_axis, warn_if_carry_init)

__all__ = ['LSTMCell', 'OptimizedLSTMCell']


def modified_orthogonal(key: Array, shape: tp.Sequence[int], dtype: Dtype = jnp.float32) -> Array:
  """An orthogonal matrix drawn in float32, then cast (``LSTMCell``'s default).

  Drawing in float32 first keeps the QR decomposition accurate for
  half-precision ``param_dtype``.

  >>> import jax, jax.numpy as jnp
  >>> w = modified_orthogonal(jax.random.key(0), (3, 3), jnp.bfloat16)
  >>> w.dtype, bool(jnp.allclose(w.astype(jnp.float32) @ w.T.astype(jnp.float32),
  ...                            jnp.eye(3), atol=1e-2))
  (dtype(bfloat16), True)
  """
  return initializers.orthogonal()(key, shape).astype(dtype)


def _unpack_pair(cell: RNNCellBase, carry: Carry) -> tuple[Array, Array]:
  """The ``(c, h)`` of an LSTM carry, or a ValueError that says what came instead."""
  if isinstance(carry, (tuple, list)) and len(carry) == 2:
    return carry[0], carry[1]
  got = f'an array of shape {carry.shape}' if hasattr(carry, 'shape') else repr(type(carry))
  raise ValueError(
      f'{type(cell).__name__}: the carry must be the pair (c, h) that initialize_carry '
      f'returns, got {got}. Make it with cell.initialize_carry(inputs.shape, rngs).')


class LSTMCell(RNNCellBase):
  r"""The long short-term memory cell (Hochreiter & Schmidhuber, 1997).

  .. math::

      i = \sigma(W_{ii} x + W_{hi} h + b_{hi}), \quad
      f = \sigma(W_{if} x + W_{hf} h + b_{hf})

      g = \tanh(W_{ig} x + W_{hg} h + b_{hg}), \quad
      o = \sigma(W_{io} x + W_{ho} h + b_{ho})

      c' = f \cdot c + i \cdot g, \quad h' = o \cdot \tanh(c')

  The carry is the pair ``(c, h)``: ``c`` is the long-term memory, which the
  *forget* gate ``f`` and the *input* gate ``i`` edit; ``h`` is the output,
  which the *output* gate ``o`` reads from ``c``.  Each of the eight maps is
  its own ``Linear``: ``ii, if_, ig, io`` read ``x`` (no bias), ``hi, hf,
  hg, ho`` read ``h`` (with bias), created in that order.

  Args:
    in_features, hidden_features: sizes of the input and of ``c`` and ``h``.
    gate_fn: activation of ``i, f, o`` (default ``sigmoid``).
    activation_fn: activation of ``g`` and of ``c'`` (default ``tanh``).
    kernel_init: initializer of the input kernels (default lecun normal).
    recurrent_kernel_init: initializer of the hidden kernels (default
      ``modified_orthogonal``: orthogonal in float32, then cast).
    bias_init: initializer of the hidden biases (default zeros).
    dtype, param_dtype, carry_init, promote_dtype, keep_rngs, rngs,
      kernel_metadata, recurrent_kernel_metadata, bias_metadata: as in
      ``GRUCell``.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> cell = nnx.LSTMCell(3, 4, rngs=nnx.Rngs(0))
  >>> cell.ii.kernel.shape, cell.hi.kernel.shape, cell.hi.bias.shape
  ((3, 4), (4, 4), (4,))
  """

  def __init__(self, in_features: int, hidden_features: int, *,
               gate_fn: tp.Callable[..., Array] = sigmoid,
               activation_fn: tp.Callable[..., Array] = tanh,
               kernel_init: Initializer = default_kernel_init,
               recurrent_kernel_init: Initializer = modified_orthogonal,
               bias_init: Initializer = default_bias_init, dtype: Dtype | None = None,
               param_dtype: Dtype = jnp.float32, carry_init: Initializer | None = None,
               promote_dtype: tp.Callable[..., tuple] = dtypes.promote_dtype,
               keep_rngs: bool = False, rngs: Rngs, kernel_metadata: Metadata = NO_METADATA,
               recurrent_kernel_metadata: Metadata = NO_METADATA,
               bias_metadata: Metadata = NO_METADATA):
    self.in_features = in_features
    self.hidden_features = hidden_features
    self.gate_fn = gate_fn
    self.activation_fn = activation_fn
    self.dtype = dtype
    self.param_dtype = param_dtype
    self.promote_dtype = promote_dtype
    self.rngs = keep_rngs_stream(rngs, keep_rngs)

    def dense_i() -> Linear:
      return cell_linear(self, in_features, hidden_features, use_bias=False,
                    kernel_init=kernel_init, rngs=rngs, kernel_metadata=kernel_metadata)

    def dense_h() -> Linear:
      return cell_linear(self, hidden_features, hidden_features, use_bias=True,
                    kernel_init=recurrent_kernel_init, bias_init=bias_init, rngs=rngs,
                    kernel_metadata=recurrent_kernel_metadata, bias_metadata=bias_metadata)

    self.ii, self.if_, self.ig, self.io = dense_i(), dense_i(), dense_i(), dense_i()
    self.hi, self.hf, self.hg, self.ho = dense_h(), dense_h(), dense_h(), dense_h()
    warn_if_carry_init(carry_init)
    self.carry_init = carry_init

  def __call__(self, carry: tuple[Array, Array],
               inputs: Array) -> tuple[tuple[Array, Array], Array]:
    """One step: returns ``((c', h'), h')``.

    >>> import jax.numpy as jnp
    >>> import nnx_edu as nnx
    >>> cell = nnx.LSTMCell(2, 3, rngs=nnx.Rngs(0))
    >>> (c, h), y = cell(cell.initialize_carry((4, 2), nnx.Rngs(0)), jnp.ones((4, 2)))
    >>> c.shape, h.shape, bool((h == y).all())
    ((4, 3), (4, 3), True)
    """
    c, h = _unpack_pair(self, carry)
    check_step(self, inputs, c=c, h=h)
    i = self.gate_fn(self.ii(inputs) + self.hi(h))
    f = self.gate_fn(self.if_(inputs) + self.hf(h))
    g = self.activation_fn(self.ig(inputs) + self.hg(h))
    o = self.gate_fn(self.io(inputs) + self.ho(h))
    c = f * c + i * g
    h = o * self.activation_fn(c)
    return (c, h), h

  def initialize_carry(self, input_shape: tuple[int, ...], rngs: CarryRngs = None,
                       carry_init: Initializer | None = None) -> tuple[Array, Array]:
    """``(c, h)`` before the first step, each ``(*input_shape[:-1], hidden_features)``.

    ``c`` draws its key first, then ``h``.

    >>> import nnx_edu as nnx
    >>> c, h = nnx.LSTMCell(2, 3, rngs=nnx.Rngs(0)).initialize_carry((4, 2), nnx.Rngs(0))
    >>> c.shape, h.shape
    ((4, 3), (4, 3))
    """
    c, h = new_carry(self, input_shape, rngs, carry_init, count=2)
    return c, h

  num_feature_axes = property(one_feature_axis)


class OptimizedLSTMCell(RNNCellBase):
  """``LSTMCell``'s arithmetic with two matrix products per step instead of eight.

  The input kernels of the gates ``i, f, g, o`` sit side by side in one
  ``Linear`` (``dense_i``, ``4 * hidden_features`` outputs, no bias), the
  hidden kernels in another (``dense_h``, with the bias).  One product each
  gives all four gates, which are then split apart.  This is usually faster
  for hidden sizes up to about 2048.

  Args: as ``LSTMCell``, except that ``recurrent_kernel_init`` defaults to
  ``orthogonal()`` drawn directly in ``param_dtype``.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> cell = nnx.OptimizedLSTMCell(3, 4, rngs=nnx.Rngs(0))
  >>> cell.dense_i.kernel.shape, cell.dense_h.kernel.shape
  ((3, 16), (4, 16))
  """

  def __init__(self, in_features: int, hidden_features: int, *,
               gate_fn: tp.Callable[..., Array] = sigmoid,
               activation_fn: tp.Callable[..., Array] = tanh,
               kernel_init: Initializer = default_kernel_init,
               recurrent_kernel_init: Initializer = default_recurrent_kernel_init,
               bias_init: Initializer = default_bias_init, dtype: Dtype | None = None,
               param_dtype: Dtype = jnp.float32, carry_init: Initializer | None = None,
               promote_dtype: tp.Callable[..., tuple] = dtypes.promote_dtype,
               keep_rngs: bool = False, rngs: Rngs, kernel_metadata: Metadata = NO_METADATA,
               recurrent_kernel_metadata: Metadata = NO_METADATA,
               bias_metadata: Metadata = NO_METADATA):
    self.in_features = in_features
    self.hidden_features = hidden_features
    self.gate_fn = gate_fn
    self.activation_fn = activation_fn
    self.dtype = dtype
    self.param_dtype = param_dtype
    self.promote_dtype = promote_dtype
    self.rngs = keep_rngs_stream(rngs, keep_rngs)
    self.dense_i = cell_linear(self, in_features, 4 * hidden_features, use_bias=False,
                          kernel_init=kernel_init, rngs=rngs, kernel_metadata=kernel_metadata)
    self.dense_h = cell_linear(self, hidden_features, 4 * hidden_features, use_bias=True,
                          kernel_init=recurrent_kernel_init, bias_init=bias_init, rngs=rngs,
                          kernel_metadata=recurrent_kernel_metadata,
                          bias_metadata=bias_metadata)
    warn_if_carry_init(carry_init)
    self.carry_init = carry_init

  def __call__(self, carry: tuple[Array, Array],
               inputs: Array) -> tuple[tuple[Array, Array], Array]:
    """One step: returns ``((c', h'), h')``.

    >>> import jax.numpy as jnp
    >>> import nnx_edu as nnx
    >>> cell = nnx.OptimizedLSTMCell(2, 3, rngs=nnx.Rngs(0))
    >>> (c, h), y = cell((jnp.zeros(3), jnp.zeros(3)), jnp.ones(2))
    >>> c.shape, h.shape
    ((3,), (3,))
    """
    c, h = _unpack_pair(self, carry)
    check_step(self, inputs, c=c, h=h)
    gates = self.dense_i(inputs) + self.dense_h(h)
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    c = self.gate_fn(f) * c + self.gate_fn(i) * self.activation_fn(g)
    h = self.gate_fn(o) * self.activation_fn(c)
    return (c, h), h

  def initialize_carry(self, input_shape: tuple[int, ...], rngs: CarryRngs = None,
                       carry_init: Initializer | None = None) -> tuple[Array, Array]:
    """``(c, h)`` before the first step, each ``(*input_shape[:-1], hidden_features)``.

    >>> import nnx_edu as nnx
    >>> cell = nnx.OptimizedLSTMCell(2, 3, rngs=nnx.Rngs(0))
    >>> [a.shape for a in cell.initialize_carry((2,), nnx.Rngs(0))]
    [(3,), (3,)]
    """
    c, h = new_carry(self, input_shape, rngs, carry_init, count=2)
    return c, h

  num_feature_axes = property(one_feature_axis)
