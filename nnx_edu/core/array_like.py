"""Core -- array-like: holding one array and behaving like it.

The next chapter's ``Variable`` is a box around one value, usually a
``jax.Array``.  A layer should not have to open the box for every
operation: ``kernel + 1``, ``kernel.T @ x``, ``kernel[0]``, ``len(kernel)``,
``np.asarray(kernel)`` and ``jnp.dot(x, kernel)`` should all act on the
array inside.  ``ArrayLike`` gives a class that behaviour.  It asks only for
three methods, which ``Variable`` provides:

* ``get_value()`` -- the value as a reader sees it (after any get hooks);
* ``set_value(value)`` -- replace it (running any set hooks and checks);
* ``get_raw_value()`` -- the stored value, with no hooks run.

Every operator unwraps both sides and asks the value itself, so
``variable + 1`` gives exactly what ``variable.get_value() + 1`` gives: a
plain array, not a new box.

>>> import jax.numpy as jnp
>>> class Box(ArrayLike):
...   def __init__(self, value):
...     self.stored = value
...   def get_value(self):
...     return self.stored
...   def get_raw_value(self):
...     return self.stored
...   def set_value(self, value):
...     self.stored = value
>>> box = Box(jnp.arange(3.0))
>>> box * 2, box[1], len(box)
(Array([0., 2., 4.], dtype=float32), Array(1., dtype=float32), 3)
>>> box[1] = 10.0                     # writes into the array, keeping its shape
>>> box.stored
Array([ 0., 10.,  2.], dtype=float32)
"""

from __future__ import annotations

import typing as tp

import jax
import numpy as np


class ArrayLike:
  """A holder of one value that behaves like that value (see the chapter above).

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> isinstance(nnx.Param(jnp.ones(2)), ArrayLike)
  True
  """

  def get_value(self) -> tp.Any:
    """The value, as readers see it; a subclass defines it.

    >>> import nnx_edu as nnx
    >>> nnx.Param(1.0).get_value()
    1.0
    """
    raise NotImplementedError(f'{type(self).__name__} must define get_value().')

  def get_raw_value(self) -> tp.Any:
    """The stored value, with no hooks run; a subclass defines it.

    >>> import nnx_edu as nnx
    >>> nnx.Param(1.0).get_raw_value()
    1.0
    """
    raise NotImplementedError(f'{type(self).__name__} must define get_raw_value().')

  def set_value(self, value: tp.Any) -> None:
    """Replace the value; a subclass defines it.

    >>> import nnx_edu as nnx
    >>> p = nnx.Param(1.0)
    >>> p.set_value(2.0)
    >>> p.get_value()
    2.0
    """
    raise NotImplementedError(f'{type(self).__name__} must define set_value(value).')

  # -- indexing ------------------------------------------------------------
  def __getitem__(self, index: tp.Any) -> tp.Any:
    value = self.get_value()
    return value if index is Ellipsis else value[index]

  def __setitem__(self, index: tp.Any, new: tp.Any) -> None:
    # ``v[index] = new`` writes *into* the value, as for a NumPy array: a JAX
    # array keeps its shape and dtype (``new`` is broadcast and cast through
    # ``.at[index].set``, since JAX arrays are immutable), and a NumPy array,
    # list or dict is changed in place.  Only ``v.value = new`` replaces the
    # value by something of another shape or dtype.
    current = self.get_raw_value()
    if isinstance(current, jax.Array):
      if not (index is Ellipsis and isinstance(new, jax.Array)
              and (new.shape, new.dtype) == (current.shape, current.dtype)):
        if index is Ellipsis:
          self._check_fits(new, current)
        new = current.at[index].set(new)
    elif index is not Ellipsis or isinstance(current, np.ndarray):
      current[index] = new
      new = current
    self.set_value(new)

  def _check_fits(self, new: tp.Any, current: jax.Array) -> None:
    """Raise if ``new`` cannot be broadcast to the shape of ``current``."""
    try:
      fits = np.broadcast_shapes(np.shape(new), current.shape) == current.shape
    except ValueError:
      fits = False
    if not fits:
      name = type(self).__name__
      raise ValueError(
          f'{name}[...] = value: the value has shape {np.shape(new)}, which does not fit the '
          f"{name}'s shape {current.shape}. `[...] =` writes into the existing array, keeping "
          'its shape and dtype; to replace it by an array of another shape, assign '
          '`.value = new_array` instead.')

  # -- conversions: to JAX, NumPy and Python ---------------------------------
  def __jax_array__(self):
    return self.get_value()

  def __array__(self, dtype=None, copy=None):
    return np.asarray(self.get_value(), dtype=dtype)

  def __len__(self) -> int:
    return len(self.get_value())

  def __iter__(self):
    return iter(self.get_value())

  def __bool__(self) -> bool:
    return bool(self.get_value())

  def __float__(self) -> float:
    return float(self.get_value())

  def __int__(self) -> int:
    return int(self.get_value())

  def __index__(self) -> int:
    return self.get_value().__index__()

  __hash__ = None  # type: ignore[assignment]  # equality is element-wise, as for arrays


# Arithmetic and comparisons delegate to the value: ``v + 1`` calls
# ``value.__add__(1)``, ``1 + v`` calls ``value.__radd__(1)``.
def _delegate(name: str):
  def method(self, *args):
    args = tuple(a.get_value() if isinstance(a, ArrayLike) else a for a in args)
    return getattr(self.get_value(), name)(*args)

  method.__name__ = name
  return method


_BINARY = ('add', 'sub', 'mul', 'matmul', 'truediv', 'floordiv', 'mod',
           'divmod', 'pow', 'lshift', 'rshift', 'and', 'xor', 'or')
for _op in _BINARY:
  setattr(ArrayLike, f'__{_op}__', _delegate(f'__{_op}__'))
  setattr(ArrayLike, f'__r{_op}__', _delegate(f'__r{_op}__'))
for _op in ('neg', 'pos', 'abs', 'invert', 'lt', 'le', 'eq', 'ne', 'gt', 'ge'):
  setattr(ArrayLike, f'__{_op}__', _delegate(f'__{_op}__'))
