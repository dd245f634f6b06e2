"""Core -- text reprs: how State, Variables and Modules print.

Everything in nnx_edu prints the way Flax 0.12.8 prints, so that the outputs
on the documentation pages can be compared character for character.  The rules
are few:

* An object prints as ``Type(`` then one ``key=value`` line per attribute,
  each indented by two spaces, then ``)``.  Mappings use ``({`` ... ``})`` and
  ``'key': value`` instead.  An object with no attributes prints on one line.
* The first line may carry a comment with the number of array elements and
  their bytes, for example ``Param( # 6 (24 B)``.
* Python values inside print like ``repr`` does, except that classes print by
  name (``float32``, not ``<class 'jax.numpy.float32'>``).

This chapter knows nothing about Variables or Modules: they hand it their
attributes and it lays them out.
"""

from __future__ import annotations

import dataclasses
import typing as tp

import numpy as np


@dataclasses.dataclass(frozen=True)
class SizeBytes:
  """How many array elements a value holds, and how many bytes they take.

  >>> import jax.numpy as jnp
  >>> SizeBytes.of(jnp.ones((2, 3)))
  6 (24 B)
  >>> SizeBytes.of({'a': jnp.ones(4), 'b': 'not an array'})
  4 (16 B)
  """

  size: int
  bytes: int

  @classmethod
  def of(cls, tree: tp.Any) -> 'SizeBytes':
    import jax  # imported here so this chapter stays free of jax at import

    total = cls(0, 0)
    for leaf in jax.tree.leaves(tree):
      if hasattr(leaf, 'shape') and hasattr(leaf, 'dtype'):
        size = int(np.prod(leaf.shape))
        # .itemsize of the dtype itself: np.dtype() rejects PRNG key dtypes
        total += cls(size, size * leaf.dtype.itemsize)
    return total

  def __add__(self, other: 'SizeBytes') -> 'SizeBytes':
    return SizeBytes(self.size + other.size, self.bytes + other.bytes)

  def __bool__(self) -> bool:
    return self.size > 0

  def __repr__(self) -> str:
    return f'{self.size:,} ({human_bytes(self.bytes)})'


def human_bytes(num_bytes: int) -> str:
  """Bytes in the largest unit that keeps the number above one.

  >>> human_bytes(24), human_bytes(4_096), human_bytes(8_388_608)
  ('24 B', '4.1 KB', '8.4 MB')
  """
  for scale, unit in ((1e9, 'GB'), (1e6, 'MB'), (1e3, 'KB')):
    if num_bytes > scale:
      return f'{num_bytes / scale:,.1f} {unit}'
  return f'{num_bytes:,} B'


def value_repr(x: tp.Any) -> str:
  """The repr of one attribute value, as it appears after ``key=``.

  >>> import jax.numpy as jnp
  >>> value_repr(jnp.float32), value_repr((3,)), value_repr({'a': None})
  ('float32', '(3,)', "{'a': None}")
  """
  if isinstance(x, list):
    return '[' + ', '.join(map(value_repr, x)) + ']'
  if isinstance(x, tuple):
    inner = ', '.join(map(value_repr, x))
    return f'({inner},)' if len(x) == 1 else f'({inner})'
  if isinstance(x, dict):
    return '{' + ', '.join(f'{k!r}: {value_repr(v)}' for k, v in x.items()) + '}'
  if isinstance(x, set):
    return '{' + ', '.join(map(value_repr, x)) + '}'
  if isinstance(x, type):
    return x.__name__
  return repr(x)


def render(
    type_name: str,
    attributes: tp.Iterable[tuple[str, tp.Any]],
    *,
    comment: str = '',
    brackets: tuple[str, str] = ('(', ')'),
    key_sep: str = '=',
    empty: str = '',
) -> str:
  """Lay out an object as ``type_name(`` + one indented line per attribute.

  ``attributes`` holds ``(key_text, value)`` pairs; ``comment`` goes after the
  opening bracket, and ``empty`` is printed between the brackets when there
  are no attributes.

  >>> print(render('Point', [('x', 1), ('y', 'up')], comment=' # a point'))
  Point( # a point
    x=1,
    y='up'
  )
  >>> render('Empty', [])
  'Empty()'
  """
  open_, close = brackets
  lines = [
      f'  {key}{key_sep}' + value_repr(value).replace('\n', '\n  ')
      for key, value in attributes
  ]
  if not lines:
    return f'{type_name}{open_}{empty}{close}'
  return f'{type_name}{open_}{comment}\n' + ',\n'.join(lines) + f'\n{close}'


@dataclasses.dataclass(frozen=True)
class ArrayShape:
  """Stands in for a large array inside a Module's repr.

  Modules print only the shape and dtype of arrays with more than one
  element; States print the values.

  >>> import jax.numpy as jnp
  >>> ArrayShape.of(jnp.ones((2, 3)))
  Array(shape=(2, 3), dtype=dtype('float32'))
  """

  shape: tuple[int, ...]
  dtype: tp.Any

  @classmethod
  def of(cls, x: tp.Any) -> tp.Any:
    """An ArrayShape for arrays of two or more elements; ``x`` itself otherwise."""
    if isinstance(x, np.ndarray) or _is_jax_array(x):
      if int(np.prod(x.shape)) > 1:
        return cls(tuple(x.shape), x.dtype)
    return x

  def __repr__(self) -> str:
    return f'Array(shape={self.shape!r}, dtype={self.dtype!r})'


def _is_jax_array(x: tp.Any) -> bool:
  import jax

  return isinstance(x, jax.Array)
