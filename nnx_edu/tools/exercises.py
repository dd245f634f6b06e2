"""Tools -- exercises: checking an answer the way a teacher would.

The exercise notebooks (``notebooks/exercises/``) ask you to write a small
piece of NNX yourself -- a Variable type, a filter, a Linear layer, a
GroupNorm, a training step -- and then compare your result with the
reference:

>>> import jax.numpy as jnp
>>> from nnx_edu.tools.exercises import check
>>> check(jnp.ones(3), jnp.ones(3))
correct
>>> check(jnp.ones((2, 3)), jnp.ones(3))
not yet: your answer has shape (2, 3), expected (3,)

``check`` never raises: it prints ``correct``, or ``not yet:`` followed by
what differs, in words -- a shape, a dtype, values, a Variable type, a path
missing from a State.  ``differences`` returns the same findings as a list,
for tests.

This chapter is not imported by ``import nnx_edu``; import it by name.  It
reads the core (Variables, States, Modules) but nothing depends on it.
"""

from __future__ import annotations

import typing as tp

import numpy as np

from nnx_edu.core import graph
from nnx_edu.core.objects import Pytree
from nnx_edu.core.state import State
from nnx_edu.core.variables import Variable

__all__ = ['check', 'differences']

MAX_SHOWN = 5  # a long list of differences hides the first, which matters most


def check(answer: tp.Any, expected: tp.Any, *, rtol: float = 1e-5, atol: float = 1e-6) -> None:
  """Print ``correct`` if ``answer`` matches ``expected``, else what differs.

  Arrays must agree in shape, dtype and values (within ``rtol``/``atol``);
  a Variable must also have the expected type; a State (or a dict) the same
  paths; a Module is compared through its State.  The answer ``...`` means
  "not written yet".

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> from nnx_edu.tools.exercises import check
  >>> check(nnx.State({'w': nnx.Param(jnp.zeros(2))}),
  ...       nnx.State({'w': nnx.Param(jnp.zeros(2)), 'b': nnx.Param(jnp.zeros(1))}))
  not yet: your answer has no ['b'] (expected a Param of shape (1,))
  >>> check(..., jnp.zeros(2))
  not yet: no answer yet -- replace the ... with your code
  """
  found = differences(answer, expected, rtol=rtol, atol=atol)
  if not found:
    print('correct')
  elif len(found) == 1:
    print(f'not yet: {found[0]}')
  else:
    shown = found[:MAX_SHOWN]
    more = len(found) - len(shown)
    lines = [f'not yet: {len(found)} differences'] + [f'  - {d}' for d in shown]
    if more:
      lines.append(f'  ... and {more} more')
    print('\n'.join(lines))


def differences(answer: tp.Any, expected: tp.Any, *, rtol: float = 1e-5,
                atol: float = 1e-6) -> list[str]:
  """What differs between ``answer`` and ``expected``, one sentence each.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> from nnx_edu.tools.exercises import differences
  >>> differences(nnx.BatchStat(jnp.zeros(2)), nnx.Param(jnp.zeros(2)))
  ['your answer is a BatchStat, expected a Param']
  >>> differences(jnp.array([1.0, 2.0]), jnp.array([1.0, 2.5]))
  ['your answer has different values: 1 of 2 differ, the largest by 0.5 at index (1,) (yours 2, expected 2.5)']
  """
  found: list[str] = []
  _compare(answer, expected, 'your answer', found, rtol, atol)
  return found


def _compare(answer: tp.Any, expected: tp.Any, where: str, found: list[str],
             rtol: float, atol: float) -> None:
  """Append to ``found`` each difference between ``answer`` and ``expected``."""
  if answer is ... and expected is not ...:
    found.append('no answer yet -- replace the ... with your code'
                 if where == 'your answer' else f'{where} is still ... -- replace it with your code')
  elif isinstance(expected, (Pytree, State)) or isinstance(answer, (Pytree, State)):
    _compare_states(answer, expected, where, found, rtol, atol)
  elif isinstance(expected, Variable):
    _compare_variables(answer, expected, where, found, rtol, atol)
  elif isinstance(expected, tp.Mapping):
    _compare_mappings(answer, expected, where, found, rtol, atol)
  elif isinstance(expected, (list, tuple)):
    _compare_sequences(answer, expected, where, found, rtol, atol)
  elif _is_array(expected) or _is_number(expected):
    _compare_arrays(answer, expected, where, found, rtol, atol)
  elif type(answer) is not type(expected) or answer != expected:
    found.append(f'{where} is {answer!r}, expected {expected!r}')


def _compare_states(answer, expected, where, found, rtol, atol) -> None:
  # A Module is compared through its State: two classes written differently
  # (yours and the library's) agree when they hold the same Variables.
  if not isinstance(answer, (Pytree, State, tp.Mapping)) or not isinstance(
      expected, (Pytree, State, tp.Mapping)):
    found.append(f'{where} is {_describe(answer)}, expected {_describe(expected)}'
                 + _hint(answer, expected))
    return
  _compare_mappings(_as_state(answer), _as_state(expected), where, found, rtol, atol)


def _compare_mappings(answer, expected, where, found, rtol, atol) -> None:
  if not isinstance(answer, tp.Mapping):
    found.append(f'{where} is {_describe(answer)}, expected {_describe(expected)}'
                 + _hint(answer, expected))
    return
  for key in expected:
    if key not in answer:
      found.append(f'{where} has no [{key!r}] (expected {_describe(expected[key])})')
  for key in answer:
    if key not in expected:
      found.append(f'{where} has [{key!r}], which is not expected: remove it, or check its name')
  for key in expected:
    if key in answer:
      _compare(answer[key], expected[key], f'{where}[{key!r}]', found, rtol, atol)


def _compare_variables(answer, expected, where, found, rtol, atol) -> None:
  if not isinstance(answer, Variable):
    found.append(f'{where} is {_describe(answer)}, expected {_describe(expected)}'
                 f' -- wrap it: {type(expected).__name__}(...)')
    return
  if type(answer) is not type(expected):
    found.append(f'{where} is {_a(type(answer).__name__)}, expected {_a(type(expected).__name__)}')
  _compare(answer.get_value(), expected.get_value(), where, found, rtol, atol)


def _compare_sequences(answer, expected, where, found, rtol, atol) -> None:
  if not isinstance(answer, (list, tuple)):
    found.append(f'{where} is {_describe(answer)}, expected {_describe(expected)}'
                 + _hint(answer, expected))
  elif len(answer) != len(expected):
    found.append(f'{where} has {len(answer)} items, expected {len(expected)}')
  else:
    for index, (mine, theirs) in enumerate(zip(answer, expected)):
      _compare(mine, theirs, f'{where}[{index}]', found, rtol, atol)


def _compare_arrays(answer, expected, where, found, rtol, atol) -> None:
  if isinstance(answer, Variable):  # a Variable where an array is expected: compare its value
    answer = answer.get_value()
  if not (_is_array(answer) or _is_number(answer)):
    found.append(f'{where} is {_describe(answer)}, expected {_describe(expected)}'
                 + _hint(answer, expected))
    return
  mine, theirs = np.asarray(answer), np.asarray(expected)
  if mine.shape != theirs.shape:
    found.append(f'{where} has shape {mine.shape}, expected {theirs.shape}')
    return
  if _is_array(answer) and _is_array(expected) and mine.dtype != theirs.dtype:
    found.append(f'{where} has dtype {mine.dtype}, expected {theirs.dtype}')
  if mine.dtype.kind in 'biu' and theirs.dtype.kind in 'biu':
    close = mine == theirs
  else:
    close = np.isclose(mine, theirs, rtol=rtol, atol=atol, equal_nan=True)
  if not close.all():
    found.append(f'{where} has different values: ' + _value_report(mine, theirs, close))


def _value_report(mine: np.ndarray, theirs: np.ndarray, close: np.ndarray) -> str:
  """How many elements differ, and the worst one, in one phrase."""
  if mine.ndim == 0:
    return f'yours {_number(mine)}, expected {_number(theirs)}'
  gap = np.where(close, 0, np.abs(mine.astype(np.float64) - theirs.astype(np.float64)))
  gap = np.nan_to_num(gap, nan=np.inf)
  worst = np.unravel_index(np.argmax(gap), gap.shape)
  return (f'{int((~close).sum())} of {close.size} differ, the largest by '
          f'{_number(gap[worst])} at index {tuple(int(i) for i in worst)} '
          f'(yours {_number(mine[worst])}, expected {_number(theirs[worst])})')


def _number(x: tp.Any) -> str:
  """A number rounded for reading: 4 significant digits are plenty for a hint."""
  value = np.asarray(x).item()
  return f'{value:.4g}' if isinstance(value, float) else repr(value)


def _describe(x: tp.Any) -> str:
  """``x`` in a few words: 'a Param of shape (3,)', 'None', 'a Linear module'."""
  if x is None:
    return 'None'
  if isinstance(x, Variable):
    value = x.get_value()
    holding = (f'holding a {type(value).__name__} of {len(value)}' if isinstance(value, (tuple, list))
               else f'of shape {np.shape(value)}')
    return f'{_a(type(x).__name__)} {holding}'
  if isinstance(x, State):
    return 'a State'
  if isinstance(x, Pytree):
    return f'{_a(type(x).__name__)} module'
  if _is_array(x):
    return f'an array of shape {tuple(np.shape(x))}'
  if _is_number(x):
    return f'the number {x!r}'
  if isinstance(x, (list, tuple)):
    return f'a {type(x).__name__} of {len(x)}'
  if callable(x):
    return f'the function {getattr(x, "__name__", repr(x))}'
  return _a(type(x).__name__)


def _a(noun: str) -> str:
  """``noun`` with its article: 'a Param', 'an Intermediate'."""
  return f'{"an" if noun[0].lower() in "aeiou" else "a"} {noun}'


def _hint(answer: tp.Any, expected: tp.Any) -> str:
  """A nudge for the usual slips: returning the layer, or the function."""
  if isinstance(answer, Pytree) and _is_array(expected):
    return ' -- call the module on an input to get an array'
  if callable(answer) and not isinstance(answer, Pytree):
    return ' -- call the function and pass its result'
  if answer is None:
    return ' -- did the function forget to `return`?'
  return ''


def _is_array(x: tp.Any) -> bool:
  return hasattr(x, 'shape') and hasattr(x, 'dtype') and not isinstance(x, Variable)


def _is_number(x: tp.Any) -> bool:
  return isinstance(x, (int, float, complex, np.number, np.bool_))


def _as_state(x: tp.Any) -> State:
  if isinstance(x, State):
    return x
  if isinstance(x, Pytree):
    return graph.state(x)
  return State(x)
