"""Layers -- LoRA: fine-tune a big layer through a small side path.

Low-Rank Adaptation (LoRA) leaves a trained layer's weights alone and
learns a correction next to it: two thin matrices ``lora_a``
(``in_features x rank``) and ``lora_b`` (``rank x out_features``), so that

    y = base(x) + x @ lora_a @ lora_b

With a small ``rank`` the adapters hold far fewer numbers than the base
kernel (``rank * (in + out)`` instead of ``in * out``).  ``lora_b`` starts
at zero, so before training the layer computes exactly what the base did.

The adapters are ``LoRAParam`` Variables, a subclass of ``Param``.  That
one type is what makes freezing work: filters (``core/filters.py``) select by type,
so ``nnx.LoRAParam`` picks only the adapters, while ``nnx.Param`` -- which
matches subclasses too -- picks everything.  To train only the adapters,
give the same filter to the optimizer and to ``nnx.grad``:

>>> import jax.numpy as jnp
>>> import optax
>>> import nnx_edu as nnx
>>> model = nnx.LoRALinear(3, 2, lora_rank=1, rngs=nnx.Rngs(0))
>>> optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.LoRAParam)
>>> loss_fn = lambda model: (model(jnp.ones((4, 3))) ** 2).mean()
>>> grads = nnx.grad(loss_fn, argnums=nnx.DiffState(0, nnx.LoRAParam))(model)
>>> kernel_before = model.kernel[...]
>>> _ = optimizer.update(model, grads)
>>> bool((model.kernel[...] == kernel_before).all()), bool((model.lora.lora_b[...] != 0).any())
(True, True)

``LoRA`` is the side path on its own (optionally wrapping any
``base_module``); ``LoRALinear`` is a ``Linear`` (``linear.py``) with one
built in, whose State keeps Linear's ``kernel`` and ``bias`` paths so a
trained Linear's weights load into it unchanged.
"""

from __future__ import annotations

import numbers
import typing as tp

import jax.numpy as jnp

from nnx_edu.core.module import Module
from nnx_edu.core.rngs import Rngs
from nnx_edu.core.variable_types import Param
from nnx_edu.core.variables import A, Variable
from nnx_edu.nn import dtypes, initializers
from nnx_edu.nn.common import NO_METADATA, Array, Dtype, Initializer, Metadata, check_features
from nnx_edu.nn.linear import Linear

__all__ = ['LoRA', 'LoRALinear', 'LoRAParam']

# lora_a gets He-uniform values and lora_b zeros: the product starts at 0,
# yet the gradient for lora_b (which goes through lora_a) is not zero.
default_a_initializer = initializers.he_uniform()
default_b_initializer = initializers.zeros


class LoRAParam(Param[A]):
  """A LoRA adapter's parameter: a ``Param``, with a type of its own to filter on.

  Like Flax, it has no Linen collection name of its own.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> p = nnx.LoRAParam(jnp.zeros(2))
  >>> isinstance(p, nnx.Param), p.type.__name__
  (True, 'LoRAParam')
  """


def _check_rank(layer_name: str, lora_rank: tp.Any) -> None:
  if not isinstance(lora_rank, numbers.Integral) or lora_rank < 1:
    raise ValueError(
        f'{layer_name}: lora_rank={lora_rank!r} must be a positive int: it is the number of '
        'columns of lora_a (and rows of lora_b). Pass e.g. lora_rank=4; small ranks (1 to 64) '
        'are usual.')


class LoRA(Module):
  """The low-rank side path ``x @ lora_a @ lora_b``, added to ``base_module(x)`` if given.

  Args:
    in_features: size of the input's last axis.
    lora_rank: the inner size of the two adapter matrices (a positive int).
    out_features: size of the output's last axis.
    base_module: a callable (usually a layer) whose output the adapters
      correct; it must map ``in_features`` to ``out_features``.  Keyword
      arguments of the call are passed on to it.
    dtype: dtype of the computation (default: promoted from inputs and params).
    param_dtype: dtype of the adapters (default float32).
    a_initializer: initializer of ``lora_a`` (default ``he_uniform()``).
    b_initializer: initializer of ``lora_b`` (default zeros).
    lora_param_type: the Variable type of the adapters (default ``LoRAParam``).
    promote_dtype: casts ``(x, lora_a, lora_b)`` to one dtype.  The base
      module is called with the cast ``x``.
    rngs: where the adapters' keys come from (``rngs.params()``, a then b).
    a_metadata, b_metadata: extra metadata for the two adapters.

  Flax's docstring lists ``precision`` too, but its constructor does not
  take it, and neither does this one: the products use JAX's default.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> layer = nnx.LoRA(3, 2, 4, rngs=nnx.Rngs(0))
  >>> layer.lora_a.shape, layer.lora_b.shape
  ((3, 2), (2, 4))
  >>> layer(jnp.ones((16, 3))).shape
  (16, 4)
  >>> base = nnx.Linear(3, 4, rngs=nnx.Rngs(0))
  >>> wrapped = nnx.LoRA(3, 2, 4, base_module=base, rngs=nnx.Rngs(1))
  >>> bool(jnp.allclose(wrapped(jnp.ones(3)), base(jnp.ones(3))))  # lora_b starts at 0
  True
  """

  def __init__(self, in_features: int, lora_rank: int, out_features: int, *,
               base_module: Module | tp.Callable[..., Array] | None = None,
               dtype: Dtype | None = None, param_dtype: Dtype = jnp.float32,
               a_initializer: Initializer = default_a_initializer,
               b_initializer: Initializer = default_b_initializer,
               lora_param_type: type[Variable] = LoRAParam,
               promote_dtype: tp.Callable[..., tuple] = dtypes.promote_dtype, rngs: Rngs,
               a_metadata: Metadata = NO_METADATA, b_metadata: Metadata = NO_METADATA):
    _check_rank(type(self).__name__, lora_rank)
    if base_module is not None and not callable(base_module):
      raise ValueError(
          f'LoRA: base_module must be callable (a layer with __call__, or a function), but got '
          f'a {type(base_module).__name__} that cannot be called. Pass the layer whose output '
          'the adapters should correct, or base_module=None for the adapters alone.')
    self.in_features = in_features
    self.out_features = out_features
    self.dtype = dtype
    self.param_dtype = param_dtype
    self.lora_param_type = lora_param_type
    self.base_module = base_module
    self.promote_dtype = promote_dtype
    self.lora_a = lora_param_type(
        a_initializer(rngs.params(), (in_features, lora_rank), param_dtype), **a_metadata)
    self.lora_b = lora_param_type(
        b_initializer(rngs.params(), (lora_rank, out_features), param_dtype), **b_metadata)

  def __call__(self, x: Array, **kwargs: tp.Any) -> Array:
    check_features(self, x, (-1,), (self.in_features,), param='lora_a')
    x, lora_a, lora_b = self.promote_dtype((x, self.lora_a[...], self.lora_b[...]),
                                           dtype=self.dtype)
    out = x @ lora_a @ lora_b
    if self.base_module is None:
      return out
    base_out = self.base_module(x, **kwargs)
    if jnp.shape(base_out) != out.shape:  # a silent broadcast would hide the mistake
      raise ValueError(
          f'LoRA: base_module returned shape {tuple(jnp.shape(base_out))}, but the adapters '
          f'give shape {out.shape}, and the two are added. The base module must map '
          f'in_features={self.in_features} to out_features={self.out_features}: create the '
          'LoRA with the base module\'s output size as out_features.')
    return out + base_out


class LoRALinear(Linear):
  """A ``Linear`` layer with a ``LoRA`` side path, ``self.lora``, added to its output.

  Its ``kernel`` and ``bias`` are the usual Params at the usual paths; the
  adapters live under ``lora``.  The same seed gives the same kernel as
  ``Linear`` because the kernel and bias are drawn first.

  Args:
    in_features, out_features: as in ``Linear``.
    lora_rank: the inner size of the adapters (a positive int).
    lora_dtype, lora_param_dtype, lora_promote_dtype: the ``dtype``,
      ``param_dtype`` and ``promote_dtype`` of the ``LoRA`` side path.
    a_initializer, b_initializer, lora_param_type, a_metadata, b_metadata:
      as in ``LoRA``.
    rngs: keys for the kernel and bias, then for the adapters.
    **kwargs: the other arguments of ``Linear`` (``use_bias``, ``dtype``,
      ``precision``, ``kernel_init``, ...).

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> layer = nnx.LoRALinear(3, 4, lora_rank=2, rngs=nnx.Rngs(0))
  >>> bool((layer.kernel[...] == nnx.Linear(3, 4, rngs=nnx.Rngs(0)).kernel[...]).all())
  True
  >>> layer.lora.lora_a.shape, layer(jnp.ones((16, 3))).shape
  ((3, 2), (16, 4))
  """

  def __init__(self, in_features: int, out_features: int, *, lora_rank: int,
               lora_dtype: Dtype | None = None, lora_param_dtype: Dtype = jnp.float32,
               a_initializer: Initializer = default_a_initializer,
               b_initializer: Initializer = default_b_initializer,
               lora_param_type: type[Variable] = LoRAParam,
               lora_promote_dtype: tp.Callable[..., tuple] = dtypes.promote_dtype, rngs: Rngs,
               a_metadata: Metadata = NO_METADATA, b_metadata: Metadata = NO_METADATA,
               **kwargs: tp.Any):
    _check_rank(type(self).__name__, lora_rank)  # before the kernel is drawn
    super().__init__(in_features, out_features, rngs=rngs, **kwargs)
    self.lora = LoRA(in_features, lora_rank, out_features, dtype=lora_dtype,
                     param_dtype=lora_param_dtype, a_initializer=a_initializer,
                     b_initializer=b_initializer, lora_param_type=lora_param_type,
                     promote_dtype=lora_promote_dtype, rngs=rngs, a_metadata=a_metadata,
                     b_metadata=b_metadata)

  def __call__(self, x: Array, out_sharding: tp.Any = None) -> Array:
    return super().__call__(x, out_sharding=out_sharding) + self.lora(x)
