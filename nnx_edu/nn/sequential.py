"""Layers -- Sequential: a model that is a list of steps.

``Sequential(f1, f2, f3)(x)`` computes ``f3(f2(f1(x)))``.  The steps may be
layers (which hold parameters) or plain functions such as ``nnx.relu``
(which do not).  They are kept in an ``nnx.List`` named ``layers``, so the
layers' Variables appear in the State under ``layers/0``, ``layers/1``...
while the plain functions stay in the GraphDef.

How one step's output feeds the next:

* a tuple is spread into positional arguments, ``f(*out)``;
* a dict is spread into keyword arguments, ``f(**out)``;
* anything else is passed as the single argument, ``f(out)``.

If the call gets ``rngs=...``, it is passed on to every step that accepts an
``rngs`` keyword (for example Dropout).

>>> import jax.numpy as jnp
>>> import nnx_edu as nnx
>>> model = nnx.Sequential(nnx.Linear(2, 8, rngs=nnx.Rngs(0)), nnx.relu,
...                        nnx.Linear(8, 1, rngs=nnx.Rngs(1)))
>>> model(jnp.ones((4, 2))).shape
(4, 1)
>>> sorted(nnx.state(model)['layers'])
[0, 2]
"""

from __future__ import annotations

import inspect
import typing as tp

from nnx_edu.core.module import List, Module
from nnx_edu.core.rngs import Rngs

__all__ = ['Sequential']


class Sequential(Module):
  """Apply ``layers`` one after the other.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> double_then_split = nnx.Sequential(lambda x: 2 * x, lambda x: (x[:1], x[1:]))
  >>> double_then_split(jnp.arange(3.0))
  (Array([0.], dtype=float32), Array([2., 4.], dtype=float32))
  >>> nnx.Sequential()(5)   # no layers: the input comes back
  5
  """

  def __init__(self, *fns: tp.Callable[..., tp.Any]):
    self.layers = List(fns)

  def __call__(self, *args: tp.Any, rngs: Rngs | None = None, **kwargs: tp.Any) -> tp.Any:
    """Feed the arguments to the first layer, and each output to the next.

    >>> import jax.numpy as jnp
    >>> import nnx_edu as nnx
    >>> model = nnx.Sequential(nnx.Dropout(0.5))
    >>> model(jnp.ones(3), rngs=nnx.Rngs(0)).shape   # rngs reach the Dropout
    (3,)
    """
    if len(self.layers) == 0:
      return _pack(args, kwargs)
    output: tp.Any = None
    for index, layer in enumerate(self.layers):
      if not callable(layer):
        raise TypeError(
            f'Sequential: layers[{index}] is a {type(layer).__name__} ({layer!r}), '
            'which cannot be called. Every step must be a layer or a function.'
        )
      if index > 0:
        args, kwargs = _unpack(output)
      if rngs is not None and _accepts_rngs(layer):
        kwargs = {**kwargs, 'rngs': rngs}
      output = layer(*args, **kwargs)
    return output


def _unpack(output: tp.Any) -> tuple[tuple, dict]:
  """The arguments the next step gets from the previous step's output."""
  if isinstance(output, tuple):
    return output, {}
  if isinstance(output, dict):
    return (), output
  return (output,), {}


def _pack(args: tuple, kwargs: dict) -> tp.Any:
  """What an empty Sequential returns: its input, as given."""
  if len(args) == 1:
    return args[0]
  if args:
    return args
  return kwargs or None


def _accepts_rngs(fn: tp.Callable[..., tp.Any]) -> bool:
  """Whether ``fn`` takes an ``rngs`` argument by keyword."""
  try:
    parameters = inspect.signature(fn).parameters.values()
  except (TypeError, ValueError):  # builtins and some jax functions have no signature
    return False
  keyword_kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
  return any(p.name == 'rngs' and p.kind in keyword_kinds for p in parameters)
