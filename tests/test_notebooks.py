"""The notebooks are kept in a shape that nbval, Binder and Colab can use.

nbval itself (``--nbval`` in pyproject.toml) runs every notebook and compares
its outputs with the committed ones; these tests check what nbval cannot see:
that the notebooks are stripped and lint-clean, that every notebook starts
with the setup cell (Colab install, device-independent printing), and that the
committed outputs came from a clean, in-order run.
"""

import json
import pathlib
import re
import subprocess
import sys

import nbformat
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in (ROOT / 'notebooks').rglob('*.ipynb') if '.ipynb_checkpoints' not in p.parts)
IDS = [str(p.relative_to(ROOT / 'notebooks')) for p in NOTEBOOKS]
IGNORE_OUTPUT = 'nbval-ignore-output'


def code_cells(path: pathlib.Path) -> list:
  return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == 'code']


def test_there_are_five_lessons_and_five_pages_of_exercises_with_solutions():
  names = {str(p.relative_to(ROOT / 'notebooks')) for p in NOTEBOOKS}
  lessons = {'00_quickstart', '01_variables', '02_state', '03_linear', '04_normalization'}
  pages = ['01_variables', '02_state', '03_linear', '04_normalization', '05_lora_and_gru']
  assert names == ({f'{n}.ipynb' for n in lessons} | {f'exercises/{p}.ipynb' for p in pages}
                   | {f'exercises/solutions/{p}.ipynb' for p in pages})


@pytest.mark.parametrize('path', NOTEBOOKS, ids=IDS)
def test_the_first_cell_installs_nnx_edu_only_when_missing_and_fixes_the_printing(path):
  first = code_cells(path)[0]
  assert IGNORE_OUTPUT in first.metadata.get('tags', []), 'its output names the device'
  assert re.search(r'try:\n\s+import nnx_edu.*\nexcept ImportError:\n\s+%pip install -q "nnx_edu\[widgets\] @ git\+https://github.com/',
                   first.source)
  assert "jax.config.update('jax_default_matmul_precision', 'highest')" in first.source
  assert 'np.set_printoptions(precision=4, suppress=True)' in first.source
  # Colab's own JAX must be kept: no cell installs or pins jax
  assert not any(re.search(r'pip install[^\n]*\bjax', c.source) for c in code_cells(path))


@pytest.mark.parametrize('path', NOTEBOOKS, ids=IDS)
def test_outputs_come_from_one_clean_run_in_order(path):
  cells = code_cells(path)
  assert [c.execution_count for c in cells] == list(range(1, len(cells) + 1))
  for cell in cells:
    for output in cell.outputs:
      # nbval cannot sanitize an extra stderr output: warnings must be stopped at the source
      assert output.output_type != 'error', cell.source
      assert output.get('name') != 'stderr', (cell.source, output.get('text'))


@pytest.mark.parametrize('path', NOTEBOOKS, ids=IDS)
def test_device_names_appear_only_in_cells_whose_output_is_not_compared(path):
  for cell in code_cells(path):
    if IGNORE_OUTPUT in cell.metadata.get('tags', []):
      continue
    text = json.dumps(cell.outputs)
    assert not re.search(r'(Cpu|Cuda|Tpu|Gpu)Device|\bon (cpu|gpu|tpu)\b', text), cell.source


def test_notebooks_are_stripped_with_outputs_and_execution_counts_kept():
  pytest.importorskip('nbstripout')
  result = subprocess.run(
      [sys.executable, '-m', 'nbstripout', '--keep-output', '--keep-count', '--verify',
       *map(str, NOTEBOOKS)], check=False, capture_output=True, text=True)
  assert result.returncode == 0, (
      f'{result.stdout}{result.stderr}\nRun: nbstripout --keep-output --keep-count notebooks/**/*.ipynb')


def test_notebooks_pass_ruff():
  pytest.importorskip('ruff')
  result = subprocess.run([sys.executable, '-m', 'ruff', 'check', '--no-cache', *map(str, NOTEBOOKS)],
                          check=False, capture_output=True, text=True, cwd=ROOT)
  assert result.returncode == 0, result.stdout + result.stderr


def test_binder_installs_the_repository_with_the_lab_extra_on_python_3_12():
  requirements = (ROOT / 'binder' / 'requirements.txt').read_text().split('\n')
  assert '-e .[lab]' in requirements
  assert (ROOT / 'binder' / 'runtime.txt').read_text().strip() == 'python-3.12'


def sanitize(text: str, config: str) -> str:
  """``text`` as nbval sees it with the sanitize file ``config``."""
  from nbval.plugin import get_sanitize_patterns

  for regex, replace in get_sanitize_patterns((ROOT / 'notebooks' / config).read_text()):
    text = re.sub(regex, replace, text)
  return text


def test_the_accelerator_sanitizer_keeps_every_cpu_rule():
  cpu = (ROOT / 'notebooks' / 'nbval_sanitize.cfg').read_text()
  assert (ROOT / 'notebooks' / 'nbval_sanitize_accelerator.cfg').read_text().startswith(cpu)


@pytest.mark.parametrize('cpu, accelerator', [
    ('loss 1.6718', 'loss 1.6719'),                                # the last digit
    ('[ 0.5797 -0.0001]', '[0.5798 0.0001]'),                       # a zero's sign, and padding
    ('Array([[ 1.0013, -0.3135]], dtype=float32)', 'Array([[ 1.0012, -0.3136]], dtype=float32)'),
])
def test_the_accelerator_sanitizer_forgives_last_digit_differences(cpu, accelerator):
  config = 'nbval_sanitize_accelerator.cfg'
  assert sanitize(cpu, config) == sanitize(accelerator, config)
  assert sanitize('loss 1.67', config) != sanitize('loss 1.68', config)  # but not more


def test_the_sanitizer_hides_treescope_ids_addresses_and_devices():
  config = 'nbval_sanitize.cfg'
  html = '<div id="a1b2"><treescope-run-here>...</treescope-run-here></div>'
  assert sanitize(html, config) == '<TREESCOPE-HTML>'
  assert sanitize('<function f at 0x7f3a2b1c>', config) == '<function f at 0x...>'
  assert sanitize('[CudaDevice(id=0)]', config) == sanitize('[TpuDevice(id=0, process_index=0)]', config)
