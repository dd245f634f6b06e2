"""Layers -- recurrent cells: one step of a recurrent network.

A recurrent network reads a sequence one step at a time and keeps a memory,
the *carry*, from each step to the next.  A *cell* is the function for one
step: ``cell(carry, x) -> (new_carry, y)``.  The chapter ``recurrent.py``
runs a cell over a whole sequence.

The four cells differ in how they mix the input ``x`` into the carry:

* ``SimpleCell``: ``h' = tanh(W_i x + b + W_h h)``; the carry is ``h``.
* ``GRUCell``: two gates, *reset* ``r`` and *update* ``z``, decide how much of
  the old ``h`` to forget and how much to keep; the carry is ``h``.
* ``LSTMCell``: four gates and a second memory ``c``; the carry is ``(c, h)``.
* ``OptimizedLSTMCell``: the same arithmetic as ``LSTMCell``, but the four
  gates' kernels are stored side by side, so a step is two matrix products
  instead of eight.

This chapter has the first two and what all four share; the LSTMs have a
chapter of their own, 8b (``lstm_cells.py``).

Every cell is built from ``Linear`` layers (``linear.py``): ones that read the
input (``kernel_init``, default lecun normal) and ones that read the carry
(``recurrent_kernel_init``, default orthogonal).  Their sums need one bias
only, so only one of the two has one.  The layers are created in Flax's
order, which is what gives Flax's parameters from the same seed.

``initialize_carry(input_shape, rngs)`` makes the first carry: zeros of shape
``(*batch, hidden_features)`` unless ``carry_init`` says otherwise.

>>> import jax.numpy as jnp
>>> import nnx_edu as nnx
>>> cell = nnx.GRUCell(3, 4, rngs=nnx.Rngs(0))
>>> carry = cell.initialize_carry((2, 3), nnx.Rngs(0))   # a batch of 2 inputs of size 3
>>> carry, y = cell(carry, jnp.ones((2, 3)))
>>> carry.shape, y.shape
((2, 4), (2, 4))
"""

from __future__ import annotations

import typing as tp
import warnings

import jax.numpy as jnp

from nnx_edu.core.module import Module
from nnx_edu.core.pytrees import data
from nnx_edu.core.rngs import Rngs, RngStream
from nnx_edu.nn import dtypes, initializers
from nnx_edu.nn.activations import sigmoid, tanh
from nnx_edu.nn.common import NO_METADATA, Array, Dtype, Initializer, Metadata
from nnx_edu.nn.linear import Linear

__all__ = ['GRUCell', 'RNNCellBase', 'SimpleCell']

Carry = tp.Any  # an array, or a tuple of arrays for the LSTMs
CarryRngs = Rngs | RngStream | None

default_kernel_init = initializers.lecun_normal()
default_recurrent_kernel_init = initializers.orthogonal()
default_bias_init = initializers.zeros_init()


class RNNCellBase(Module):
  """The interface of a recurrent cell; subclass it to write your own.

  A cell implements ``__call__(carry, inputs) -> (new_carry, output)``,
  ``initialize_carry(input_shape, rngs=None, carry_init=None)`` and the
  property ``num_feature_axes`` (how many trailing axes of the input are
  features: 1 for the cells here).  ``nnx.RNN`` needs nothing else.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> class Counter(nnx.RNNCellBase):   # counts the steps it has seen
  ...   def __call__(self, carry, inputs):
  ...     return carry + 1, carry + 1
  ...   def initialize_carry(self, input_shape, rngs=None, carry_init=None):
  ...     return jnp.zeros(input_shape[:-1])
  ...   @property
  ...   def num_feature_axes(self):
  ...     return 1
  >>> nnx.RNN(Counter())(jnp.ones((1, 4, 2)))
  Array([[1., 2., 3., 4.]], dtype=float32)
  """

  def initialize_carry(self, input_shape: tuple[int, ...], rngs: CarryRngs = None,
                       carry_init: Initializer | None = None) -> Carry:
    """The carry before the first step, for inputs of shape ``input_shape``.

    Args:
      input_shape: the shape of one step's input, ``(*batch, features)``.
      rngs: keys for ``carry_init`` (``Rngs`` use their ``carry`` stream);
        by default the cell's own, if it keeps one.
      carry_init: the initializer of the carry (default zeros).

    >>> import nnx_edu as nnx
    >>> nnx.RNNCellBase().initialize_carry((2, 3))
    Traceback (most recent call last):
    ...
    NotImplementedError: RNNCellBase.initialize_carry: a cell must say what its first carry is; define initialize_carry(input_shape, rngs=None, carry_init=None) in your subclass.
    """
    raise NotImplementedError(
        f'{type(self).__name__}.initialize_carry: a cell must say what its first carry is; '
        'define initialize_carry(input_shape, rngs=None, carry_init=None) in your subclass.')

  def __call__(self, carry: Carry, inputs: Array) -> tuple[Carry, Array]:
    """One step: ``(carry, inputs) -> (new_carry, output)``.

    >>> import jax.numpy as jnp
    >>> import nnx_edu as nnx
    >>> nnx.RNNCellBase()(None, jnp.ones(3))
    Traceback (most recent call last):
    ...
    NotImplementedError: RNNCellBase.__call__: define the step (carry, inputs) -> (new_carry, output) in your subclass.
    """
    raise NotImplementedError(
        f'{type(self).__name__}.__call__: define the step (carry, inputs) -> '
        '(new_carry, output) in your subclass.')

  @property
  def num_feature_axes(self) -> int:
    """How many trailing axes of the input are features (1 for the cells here).

    >>> import nnx_edu as nnx
    >>> nnx.SimpleCell(2, 3, rngs=nnx.Rngs(0)).num_feature_axes
    1
    """
    raise NotImplementedError(
        f'{type(self).__name__}.num_feature_axes: say how many trailing axes of the '
        'input are features (a property returning 1 for vector inputs).')


# -- what the cells share ---------------------------------------------------------------
def keep_rngs_stream(rngs: Rngs, keep_rngs: bool) -> tp.Any:
  """The stream a cell keeps for its carry (deprecated in Flax, so it warns).

  >>> import nnx_edu as nnx
  >>> keep_rngs_stream(nnx.Rngs(0), keep_rngs=False)   # an empty data slot
  Marked(value=None, is_data=True)
  """
  if not keep_rngs:
    return data(None)  # an empty data slot, as in Flax
  warnings.warn('keep_rngs argument is deprecated. Please use rngs argument in __call__ '
                'instead ')
  return rngs.carry.fork()


def warn_if_carry_init(carry_init: Initializer | None) -> None:
  """Warn, as Flax does, that ``carry_init`` belongs in ``initialize_carry``.

  >>> warn_if_carry_init(None)   # nothing given, nothing said
  """
  if carry_init:
    warnings.warn(
        'carry_init is provided in __init__. Please, use carry_init argument in '
        '`initialize_carry` method instead to initialize the carry. Otherwise, two '
        'instances with same configuration but different carry_init functions will '
        'have different graphdefs.')


def cell_linear(cell: RNNCellBase, in_features: int, out_features: int, *, use_bias: bool,
                kernel_init: Initializer, bias_init: Initializer = default_bias_init, rngs: Rngs,
                kernel_metadata: Metadata, bias_metadata: Metadata = NO_METADATA) -> Linear:
  """A Linear layer with the cell's dtypes: one gate's input or recurrent map.

  >>> import nnx_edu as nnx
  >>> cell = nnx.SimpleCell(2, 3, rngs=nnx.Rngs(0))
  >>> cell_linear(cell, 2, 3, use_bias=False, kernel_init=default_kernel_init,
  ...             rngs=nnx.Rngs(0), kernel_metadata={}).kernel.shape
  (2, 3)
  """
  return Linear(in_features, out_features, use_bias=use_bias, kernel_init=kernel_init,
                bias_init=bias_init, dtype=cell.dtype, param_dtype=cell.param_dtype,
                promote_dtype=cell.promote_dtype, rngs=rngs, kernel_metadata=kernel_metadata,
                bias_metadata=bias_metadata)


def new_carry(cell: RNNCellBase, input_shape: tp.Sequence[int], rngs: CarryRngs,
              carry_init: Initializer | None, count: int) -> list[Array]:
  """``count`` carry arrays of shape ``(*batch, hidden_features)``, in ``param_dtype``.

  Each array draws one key from the carry stream, so even zeros advance it
  (as in Flax).  The initializer is ``carry_init``, else the cell's, else zeros.

  >>> import nnx_edu as nnx
  >>> cell = nnx.SimpleCell(2, 3, rngs=nnx.Rngs(0))
  >>> [c.shape for c in new_carry(cell, (5, 2), nnx.Rngs(1), None, count=2)]
  [(5, 3), (5, 3)]
  """
  stream = cell.rngs if rngs is None else rngs
  if isinstance(stream, Rngs):
    stream = stream.carry
  if stream is None:
    name = type(cell).__name__
    raise ValueError(
        f'{name}.initialize_carry: rngs is None and the cell keeps no stream of its own, '
        'but every carry array draws a key (even zeros do, as in Flax). Pass one: '
        'cell.initialize_carry(input_shape, nnx.Rngs(0)); for an RNN built with '
        'rngs=False, pass rngs= or initial_carry= to its call.')
  init = carry_init or cell.carry_init or initializers.zeros_init()
  shape = (*tuple(input_shape)[:-1], cell.hidden_features)
  return [init(stream(), shape, cell.param_dtype) for _ in range(count)]


def check_step(cell: RNNCellBase, inputs: Array, **carry: Array) -> None:
  """Raise a ValueError that teaches unless ``inputs`` and ``carry`` fit ``cell``.

  The inputs' last axis must be ``in_features``, each carry array's last
  axis ``hidden_features``: otherwise a Linear inside would fail, naming
  itself rather than the cell.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> check_step(nnx.SimpleCell(2, 3, rngs=nnx.Rngs(0)), jnp.ones((4, 5)))
  Traceback (most recent call last):
  ...
  ValueError: SimpleCell: the inputs of one step have shape (4, 5), but in_features=2: their last axis must have size 2. Pass inputs with 2 features, or create the cell with in_features=5.
  """
  name = type(cell).__name__
  shape = tuple(jnp.shape(inputs))
  if shape[-1:] != (cell.in_features,):
    fix = f'create the cell with in_features={shape[-1]}' if shape else 'add a feature axis'
    raise ValueError(
        f'{name}: the inputs of one step have shape {shape}, but in_features='
        f'{cell.in_features}: their last axis must have size {cell.in_features}. Pass inputs '
        f'with {cell.in_features} features, or {fix}.')
  for part, value in carry.items():
    carry_shape = tuple(jnp.shape(value))
    if carry_shape[-1:] != (cell.hidden_features,):
      raise ValueError(
          f'{name}: the carry {part} has shape {carry_shape}, but hidden_features='
          f'{cell.hidden_features}: its last axis must have size {cell.hidden_features}. '
          'Make the carry with cell.initialize_carry(inputs.shape, rngs).')


def one_feature_axis(cell: RNNCellBase) -> int:
  """One feature axis: the last (each step's input is ``(*batch, features)``).

  >>> import nnx_edu as nnx
  >>> nnx.GRUCell(2, 3, rngs=nnx.Rngs(0)).num_feature_axes
  1
  """
  return 1


# -- the cells ----------------------------------------------------------------------------
class SimpleCell(RNNCellBase):
  """The Elman cell: ``h' = activation_fn(W_i x + b + W_h h)``.

  With ``residual=True`` the old carry is added before the activation:
  ``h' = activation_fn(W_i x + b + W_h h + h)``.  The carry is ``h``, of
  shape ``(*batch, hidden_features)``, and the output is ``h'`` too.

  Args:
    in_features: size of the input's last axis.
    hidden_features: size of the carry ``h``.
    dtype: dtype of the computation (default float32, unlike the other cells).
    param_dtype: dtype of the parameters and of the carry (default float32).
    carry_init: the carry's initializer (deprecated here: warns; pass it to
      ``initialize_carry``).
    residual: add ``h`` before the activation.
    activation_fn: default ``tanh``.
    kernel_init: initializer of ``dense_i``'s kernel (default lecun normal).
    recurrent_kernel_init: initializer of ``dense_h``'s kernel (default
      orthogonal).
    bias_init: initializer of ``dense_i``'s bias (default zeros).
    promote_dtype: casts inputs and parameters to one dtype.
    keep_rngs: keep a fork of ``rngs.carry`` for ``initialize_carry``
      (deprecated: warns).
    rngs: keys for the parameters: ``dense_h`` draws first, then ``dense_i``.
    kernel_metadata, recurrent_kernel_metadata, bias_metadata: metadata of
      the Params.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> cell = nnx.SimpleCell(3, 4, rngs=nnx.Rngs(0))
  >>> cell.dense_i.kernel.shape, cell.dense_h.kernel.shape
  ((3, 4), (4, 4))
  >>> h = cell.initialize_carry((2, 3), nnx.Rngs(0))
  >>> h, y = cell(h, jnp.ones((2, 3)))
  >>> h.shape
  (2, 4)
  """

  def __init__(self, in_features: int, hidden_features: int, *, dtype: Dtype = jnp.float32,
               param_dtype: Dtype = jnp.float32, carry_init: Initializer | None = None,
               residual: bool = False, activation_fn: tp.Callable[..., Array] = tanh,
               kernel_init: Initializer = default_kernel_init,
               recurrent_kernel_init: Initializer = default_recurrent_kernel_init,
               bias_init: Initializer = default_bias_init,
               promote_dtype: tp.Callable[..., tuple] = dtypes.promote_dtype,
               keep_rngs: bool = False, rngs: Rngs, kernel_metadata: Metadata = NO_METADATA,
               recurrent_kernel_metadata: Metadata = NO_METADATA,
               bias_metadata: Metadata = NO_METADATA):
    self.in_features = in_features
    self.hidden_features = hidden_features
    self.dtype = dtype
    self.param_dtype = param_dtype
    self.residual = residual
    self.activation_fn = activation_fn
    self.promote_dtype = promote_dtype
    self.rngs = keep_rngs_stream(rngs, keep_rngs)
    self.dense_h = cell_linear(self, hidden_features, hidden_features, use_bias=False,
                          kernel_init=recurrent_kernel_init, rngs=rngs,
                          kernel_metadata=recurrent_kernel_metadata)
    self.dense_i = cell_linear(self, in_features, hidden_features, use_bias=True,
                          kernel_init=kernel_init, bias_init=bias_init, rngs=rngs,
                          kernel_metadata=kernel_metadata, bias_metadata=bias_metadata)
    warn_if_carry_init(carry_init)
    self.carry_init = carry_init

  def __call__(self, carry: Array, inputs: Array) -> tuple[Array, Array]:
    """One step: returns ``(h', h')``.

    >>> import jax.numpy as jnp
    >>> import nnx_edu as nnx
    >>> cell = nnx.SimpleCell(2, 3, residual=True, rngs=nnx.Rngs(0))
    >>> h, y = cell(jnp.zeros(3), jnp.ones(2))   # no batch axis
    >>> h.shape, bool((h == y).all())
    ((3,), True)
    """
    check_step(self, inputs, h=carry)
    h = self.dense_i(inputs) + self.dense_h(carry)
    if self.residual:
      h = h + carry
    h = self.activation_fn(h)
    return h, h

  def initialize_carry(self, input_shape: tuple[int, ...], rngs: CarryRngs = None,
                       carry_init: Initializer | None = None) -> Array:
    """``h`` before the first step: ``(*input_shape[:-1], hidden_features)``.

    >>> import nnx_edu as nnx
    >>> cell = nnx.SimpleCell(2, 3, rngs=nnx.Rngs(0))
    >>> cell.initialize_carry((5, 2), nnx.Rngs(0), nnx.initializers.ones).sum()
    Array(15., dtype=float32)
    """
    (h,) = new_carry(self, input_shape, rngs, carry_init, count=1)
    return h

  num_feature_axes = property(one_feature_axis)


class GRUCell(RNNCellBase):
  r"""The gated recurrent unit (Cho et al., 2014).

  .. math::

      r = \sigma(W_{ir} x + b_{ir} + W_{hr} h), \quad
      z = \sigma(W_{iz} x + b_{iz} + W_{hz} h)

      n = \tanh(W_{in} x + b_{in} + r \cdot W_{hn} h), \quad
      h' = (1 - z) \cdot n + z \cdot h

  The *reset* gate ``r`` chooses how much of ``h`` enters the candidate
  ``n``; the *update* gate ``z`` chooses between keeping ``h`` and taking
  ``n``.  The three input maps are one ``Linear`` (``dense_i``, with the
  bias) of ``3 * hidden_features`` outputs, split into ``r, z, n``; the
  three hidden maps are another (``dense_h``, no bias).

  Args:
    in_features, hidden_features: sizes of the input and of the carry ``h``.
    gate_fn: the gates' activation (default ``sigmoid``).
    activation_fn: the candidate's activation (default ``tanh``).
    kernel_init, recurrent_kernel_init, bias_init: initializers of
      ``dense_i.kernel`` (lecun normal), ``dense_h.kernel`` (orthogonal) and
      ``dense_i.bias`` (zeros).
    dtype, param_dtype, carry_init, promote_dtype, keep_rngs,
      kernel_metadata, recurrent_kernel_metadata, bias_metadata: as in
      ``SimpleCell`` (but ``dtype`` defaults to None: promoted).
    rngs: keys for the parameters: ``dense_i`` draws first, then ``dense_h``.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> cell = nnx.GRUCell(3, 4, rngs=nnx.Rngs(0))
  >>> cell.dense_i.kernel.shape, cell.dense_h.kernel.shape
  ((3, 12), (4, 12))
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
    self.dense_i = cell_linear(self, in_features, 3 * hidden_features, use_bias=True,
                          kernel_init=kernel_init, bias_init=bias_init, rngs=rngs,
                          kernel_metadata=kernel_metadata, bias_metadata=bias_metadata)
    self.dense_h = cell_linear(self, hidden_features, 3 * hidden_features, use_bias=False,
                          kernel_init=recurrent_kernel_init, rngs=rngs,
                          kernel_metadata=recurrent_kernel_metadata)
    warn_if_carry_init(carry_init)
    self.carry_init = carry_init

  def __call__(self, carry: Array, inputs: Array) -> tuple[Array, Array]:
    """One step: returns ``(h', h')``.

    >>> import jax.numpy as jnp
    >>> import nnx_edu as nnx
    >>> cell = nnx.GRUCell(2, 3, rngs=nnx.Rngs(0))
    >>> h, y = cell(jnp.zeros((4, 3)), jnp.ones((4, 2)))
    >>> h.shape
    (4, 3)
    """
    check_step(self, inputs, h=carry)
    x_r, x_z, x_n = jnp.split(self.dense_i(inputs), 3, axis=-1)
    h_r, h_z, h_n = jnp.split(self.dense_h(carry), 3, axis=-1)
    r = self.gate_fn(x_r + h_r)
    z = self.gate_fn(x_z + h_z)
    n = self.activation_fn(x_n + r * h_n)
    h = (1.0 - z) * n + z * carry
    return h, h

  def initialize_carry(self, input_shape: tuple[int, ...], rngs: CarryRngs = None,
                       carry_init: Initializer | None = None) -> Array:
    """``h`` before the first step: ``(*input_shape[:-1], hidden_features)``.

    >>> import nnx_edu as nnx
    >>> nnx.GRUCell(2, 3, rngs=nnx.Rngs(0)).initialize_carry((4, 5, 2), nnx.Rngs(0)).shape
    (4, 5, 3)
    """
    (h,) = new_carry(self, input_shape, rngs, carry_init, count=1)
    return h

  num_feature_axes = property(one_feature_axis)
