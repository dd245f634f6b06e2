"""Tools -- exercises: ``check`` passes every solution and tells every wrong answer what is wrong.

The exercise notebooks (notebooks/exercises/) are executed here, in this
process, from their code alone: each check in a solution notebook must print
``correct``, and each check in an unsolved notebook ``not yet`` -- whatever
outputs were committed.  (nbval, in test_notebooks' sense, also compares the
committed outputs.)
"""

import contextlib
import io
import pathlib

import jax.numpy as jnp
import nbformat
import numpy as np
import pytest

import nnx_edu as nnx
from nnx_edu.tools.exercises import check, differences

EXERCISES = pathlib.Path(__file__).resolve().parents[2] / 'notebooks' / 'exercises'
PAGES = ['01_variables', '02_state', '03_linear', '04_normalization', '05_lora_and_gru']


def checked(answer, expected, **tolerances) -> str:
  """What ``check`` prints."""
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    check(answer, expected, **tolerances)
  return out.getvalue().strip()


# -- the verdicts, one kind of mistake at a time --------------------------------

def test_check_says_correct_for_equal_arrays_states_and_modules():
  assert checked(jnp.arange(3.0), jnp.arange(3.0)) == 'correct'
  linear = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
  assert checked(linear, nnx.Linear(2, 3, rngs=nnx.Rngs(0))) == 'correct'
  state = nnx.state(nnx.BatchNorm(2, rngs=nnx.Rngs(0)))
  assert checked(nnx.clone(state), state) == 'correct'


def test_check_accepts_values_within_the_tolerance():
  assert checked(jnp.array([1.0 + 1e-7]), jnp.array([1.0])) == 'correct'
  assert checked(jnp.array([1.01]), jnp.array([1.0]), rtol=0.1) == 'correct'


def test_check_names_a_wrong_shape():
  assert checked(jnp.ones((2, 3)), jnp.ones((3, 2))) == (
      'not yet: your answer has shape (2, 3), expected (3, 2)')


def test_check_names_a_wrong_dtype():
  assert checked(np.ones(3), jnp.ones(3)) == (
      'not yet: your answer has dtype float64, expected float32')


def test_check_reports_how_many_values_differ_and_the_worst():
  assert checked(jnp.array([1.0, 2.0, 3.0]), jnp.array([1.0, 2.5, 3.1])) == (
      'not yet: your answer has different values: 2 of 3 differ, the largest by 0.5 at '
      'index (1,) (yours 2, expected 2.5)')


def test_check_compares_integers_exactly():
  assert checked(jnp.array([1, 2]), jnp.array([1, 3])).startswith(
      'not yet: your answer has different values: 1 of 2 differ')


def test_check_names_a_wrong_variable_type():
  assert checked(nnx.BatchStat(jnp.zeros(2)), nnx.Param(jnp.zeros(2))) == (
      'not yet: your answer is a BatchStat, expected a Param')


def test_check_asks_to_wrap_a_bare_array_in_the_expected_variable_type():
  assert checked(jnp.zeros(2), nnx.Param(jnp.zeros(2))) == (
      'not yet: your answer is an array of shape (2,), expected a Param of shape (2,) '
      '-- wrap it: Param(...)')


def test_check_names_a_missing_path_and_the_variable_expected_there():
  mine = nnx.State({'linear': {'kernel': nnx.Param(jnp.zeros((2, 3)))}})
  expected = nnx.State({'linear': {'kernel': nnx.Param(jnp.zeros((2, 3))),
                                   'bias': nnx.Param(jnp.zeros(3))}})
  assert checked(mine, expected) == (
      "not yet: your answer['linear'] has no ['bias'] (expected a Param of shape (3,))")


def test_check_names_an_unexpected_path():
  mine = nnx.State({'w': nnx.Param(jnp.zeros(1)), 'extra': nnx.Param(jnp.zeros(1))})
  assert checked(mine, nnx.State({'w': nnx.Param(jnp.zeros(1))})) == (
      "not yet: your answer has ['extra'], which is not expected: remove it, or check its name")


def test_check_locates_a_difference_deep_in_a_state():
  expected = nnx.state(nnx.Linear(2, 3, rngs=nnx.Rngs(0)))
  mine = nnx.clone(expected)
  mine['kernel'][...] = mine['kernel'][...].at[1, 2].add(1.0)
  assert checked(mine, expected).startswith(
      "not yet: your answer['kernel'] has different values: 1 of 6 differ, the largest by 1 "
      'at index (1, 2)')


def test_check_compares_a_module_with_its_state():
  layer = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
  assert checked(layer, nnx.state(layer)) == 'correct'


def test_check_tells_to_call_a_module_that_was_returned_instead_of_its_output():
  layer = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
  assert checked(layer, jnp.zeros(3)) == (
      'not yet: your answer is a Linear module, expected an array of shape (3,) '
      '-- call the module on an input to get an array')


def test_check_suspects_a_missing_return_when_the_answer_is_none():
  assert checked(None, jnp.zeros(2)) == (
      'not yet: your answer is None, expected an array of shape (2,) '
      '-- did the function forget to `return`?')
  assert checked(None, 21).endswith(
      'expected the number 21 -- did the function forget to `return`?')


def test_check_tells_to_call_a_function_passed_instead_of_its_result():
  assert checked(jnp.sum, jnp.zeros(2)).endswith('-- call the function and pass its result')


def test_check_says_an_ellipsis_is_not_an_answer_yet():
  assert checked(..., jnp.zeros(2)) == 'not yet: no answer yet -- replace the ... with your code'
  assert checked({'a': ...}, {'a': 1}) == (
      "not yet: your answer['a'] is still ... -- replace it with your code")


def test_check_compares_sequences_item_by_item():
  assert checked([1, 2], [1, 2, 3]) == 'not yet: your answer has 2 items, expected 3'
  assert checked([1, 5, 3], [1, 2, 3]) == (
      'not yet: your answer[1] has different values: yours 5, expected 2')


def test_check_lists_several_differences_and_counts_the_rest():
  text = checked([None] * 8, list(range(8)))
  lines = text.splitlines()
  assert lines[0] == 'not yet: 8 differences'
  assert len(lines) == 1 + 5 + 1 and lines[-1] == '  ... and 3 more'


def test_check_compares_other_values_by_equality():
  assert checked('relu', 'relu') == 'correct'
  assert checked(jnp.zeros(2), 'relu') == (
      "not yet: your answer is Array([0., 0.], dtype=float32), expected 'relu'")


def test_check_suspects_a_missing_return_when_a_tuple_is_expected():
  assert checked(None, (1, 2)) == (
      'not yet: your answer is None, expected a tuple of 2 -- did the function forget to `return`?')


def test_differences_returns_the_findings_as_a_list():
  assert differences(jnp.ones(2), jnp.ones(2)) == []
  assert differences(jnp.ones(2), jnp.ones(3)) == ['your answer has shape (2,), expected (3,)']


# -- the notebooks ---------------------------------------------------------------

def run_notebook(path: pathlib.Path) -> list[str]:
  """Execute a notebook's code here; return what each cell that calls ``check`` printed."""
  from IPython.core.inputtransformer2 import TransformerManager

  to_python = TransformerManager().transform_cell  # `%pip` in the setup cell
  namespace: dict = {'__name__': '__main__'}
  printed = []
  with np.printoptions():  # the setup cell changes NumPy's print options: restore them
    for cell in nbformat.read(path, as_version=4).cells:
      if cell.cell_type != 'code':
        continue
      out = io.StringIO()
      with contextlib.redirect_stdout(out):
        exec(compile(to_python(cell.source), str(path), 'exec'), namespace)  # noqa: S102 (our own notebooks)
      if 'check(' in cell.source:
        printed.append(out.getvalue())
  return printed


def verdicts(text: str) -> list[str]:
  return [line for line in text.splitlines() if line.startswith(('correct', 'not yet'))]


@pytest.mark.parametrize('page', PAGES)
def test_every_check_of_the_solutions_says_correct(page):
  printed = run_notebook(EXERCISES / 'solutions' / f'{page}.ipynb')
  assert len(printed) >= 3, 'at least three exercises per page'
  for text in printed:
    assert verdicts(text) and all(v == 'correct' for v in verdicts(text)), text


@pytest.mark.parametrize('page', PAGES)
def test_every_check_of_the_unsolved_exercises_runs_and_says_not_yet(page):
  printed = run_notebook(EXERCISES / f'{page}.ipynb')
  assert len(printed) >= 3
  for text in printed:
    assert verdicts(text) and all(v.startswith('not yet: ') for v in verdicts(text)), text


@pytest.mark.parametrize('page', PAGES)
def test_exercises_and_solutions_differ_only_in_the_answer_cells(page):
  def cells(path):
    return [c.source for c in nbformat.read(path, as_version=4).cells
            if c.cell_type == 'code' and not c.source.startswith(('# YOUR CODE', '# SOLUTION'))]

  assert cells(EXERCISES / f'{page}.ipynb') == cells(EXERCISES / 'solutions' / f'{page}.ipynb')
