"""Every public name of nnx_edu documents itself with a runnable example.

The examples themselves run as doctests (``--doctest-modules``); this test
makes sure none is missing.
"""

import inspect
import typing

import pytest

import nnx_edu as nnx


def public_names():
  for name in sorted(dir(nnx)):
    obj = getattr(nnx, name)
    module = getattr(obj, '__module__', '') or ''
    if name.startswith('_') or inspect.ismodule(obj) or not module.startswith('nnx_edu'):
      continue  # private, a submodule, or re-exported from JAX
    if isinstance(obj, typing.TypeVar):
      continue  # nnx.A, nnx.M: from Python 3.12 a TypeVar cannot carry a docstring
    yield name, obj


def public_methods():
  for class_name, cls in public_names():
    if not inspect.isclass(cls):
      continue
    for name, member in vars(cls).items():
      if name.startswith('_') or not callable(member) or getattr(member, '__module__', '') is None:
        continue
      if not (getattr(member, '__module__', '') or '').startswith('nnx_edu'):
        continue
      yield f'{class_name}.{name}', member


@pytest.mark.parametrize('name, obj', list(public_names()), ids=lambda x: x if isinstance(x, str) else '')
def test_public_name_has_a_docstring_with_an_example(name, obj):
  doc = inspect.getdoc(obj) or ''
  assert '>>>' in doc, f'nnx.{name} needs a docstring with a runnable >>> example'


@pytest.mark.parametrize('name, method', list(public_methods()), ids=lambda x: x if isinstance(x, str) else '')
def test_public_method_has_a_docstring_with_an_example(name, method):
  doc = inspect.getdoc(method) or ''
  assert '>>>' in doc, f'{name} needs a docstring with a runnable >>> example'


def test_importing_nnx_edu_imports_no_display_or_notebook_library():
  import subprocess
  import sys

  code = ('import sys, nnx_edu; bad = [m for m in ("treescope", "ipywidgets", "IPython", '
          '"matplotlib", "flax") if m in sys.modules]; print(bad)')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == '[]'
