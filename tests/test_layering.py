"""The book's layering: each chapter imports only the chapters before it.

``nnx_edu/contents.py`` states the reading order once.  These tests hold the
package, the parts' own lists and the README to it:

* every file of the package is a chapter in that list, and every listed
  chapter exists;
* a chapter imports only earlier chapters (imports inside functions are
  allowed only for the lazy display hooks listed below);
* no file imports another file's private (``_underscored``) names;
* each part's docstring and the README's reading order list the chapters in
  the same order, and every chapter opens with a docstring and stays short.
"""

from __future__ import annotations

import ast
import pathlib
import re
import runpy

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / 'nnx_edu'
WIDGETS = ROOT / 'widgets'
# Read by path, not imported: the checks must run even when an upward import
# has made `import nnx_edu` fail with a circular import.
_contents = runpy.run_path(str(PACKAGE / 'contents.py'))
CHAPTERS, part_of = _contents['CHAPTERS'], _contents['part_of']

# Imports inside functions that run back up the order, each for a reason:
# the display hooks load nnx_edu.widgets only when a notebook asks for a
# rich display, so that `import nnx_edu` never loads treescope.
LAZY_IMPORTS = {
    ('core.variables', 'widgets.treescope_view'),
    ('core.state', 'widgets.treescope_view'),
    ('core.objects', 'widgets.treescope_view'),
    ('tools.display', 'widgets.treescope_view'),
}
MAX_LINES = 450  # "about 400"; none past 450


def chapter_path(chapter: str) -> pathlib.Path:
  return PACKAGE / (chapter.replace('.', '/') + '.py')


def imported_modules(node: ast.AST, package: str) -> list[tuple[str, list[str]]]:
  """``(module, names)`` for an import statement, ``from x import y`` resolved."""
  if isinstance(node, ast.Import):
    return [(alias.name, []) for alias in node.names]
  if isinstance(node, ast.ImportFrom):
    base = node.module or ''
    if node.level:  # relative: from . import x
      base = '.'.join(package.split('.')[:len(package.split('.')) - node.level + 1]
                      + ([node.module] if node.module else []))
    return [(base, [alias.name for alias in node.names])]
  return []


def chapter_imports(source: str, package: str) -> list[tuple[str, list[str], bool]]:
  """Every nnx_edu import in ``source``: ``(chapter, names, inside a function)``.

  ``from nnx_edu.nn import dtypes`` names the chapter ``nn.dtypes``; a
  chapter is given relative to the package (``core.state``).
  """
  found = []
  tree = ast.parse(source)
  lazy = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
          for n in ast.walk(f)}
  for node in ast.walk(tree):
    for module, names in imported_modules(node, package):
      if module != 'nnx_edu' and not module.startswith('nnx_edu.'):
        continue
      inside = id(node) in lazy
      relative = module.removeprefix('nnx_edu').lstrip('.')
      submodules = [n for n in names if _is_module(f'{relative}.{n}'.lstrip('.'))]
      if submodules:
        found += [(f'{relative}.{n}'.lstrip('.'), [], inside) for n in submodules]
      else:
        found.append((relative, names, inside))
  return found


def _is_module(relative: str) -> bool:
  """Whether ``nnx_edu.<relative>`` is a module (not a name inside one)."""
  parts = relative.split('.')
  # widgets/ installs as nnx_edu.widgets (pyproject's package-dir)
  path = WIDGETS.joinpath(*parts[1:]) if parts[0] == 'widgets' else PACKAGE.joinpath(*parts)
  return path.with_suffix('.py').exists() or (path / '__init__.py').exists()


def upward_imports(chapter: str, source: str) -> list[str]:
  """What ``chapter`` imports that its place in CHAPTERS does not allow."""
  position = CHAPTERS.index(chapter)
  allowed = {c for c in CHAPTERS[:position]} | {part_of(c) for c in CHAPTERS[:position + 1]}
  package = 'nnx_edu.' + part_of(chapter) if part_of(chapter) else 'nnx_edu'
  bad = []
  for target, _, inside in chapter_imports(source, package):
    if target in allowed or (inside and (chapter, target) in LAZY_IMPORTS):
      continue
    bad.append(f'{chapter} imports {target or "nnx_edu"}'
               + (' (inside a function)' if inside else ''))
  return bad


def package_files() -> list[str]:
  files = []
  for path in sorted(PACKAGE.rglob('*.py')):
    relative = path.relative_to(PACKAGE).with_suffix('')
    if relative.name == '__init__' or relative.parts == ('contents',):
      continue
    files.append('.'.join(relative.parts))
  return files


# -- the rules ---------------------------------------------------------------------------
def test_every_file_is_a_chapter_and_every_chapter_a_file():
  assert sorted(package_files()) == sorted(CHAPTERS)
  assert len(set(CHAPTERS)) == len(CHAPTERS)


@pytest.mark.parametrize('chapter', CHAPTERS)
def test_chapter_imports_only_earlier_chapters(chapter):
  assert upward_imports(chapter, chapter_path(chapter).read_text()) == []


@pytest.mark.parametrize('chapter', CHAPTERS)
def test_chapter_opens_with_a_docstring_and_stays_short(chapter):
  source = chapter_path(chapter).read_text()
  assert ast.get_docstring(ast.parse(source)), f'{chapter} needs a docstring saying what it teaches'
  assert len(source.splitlines()) <= MAX_LINES, f'{chapter} is past {MAX_LINES} lines: split it'


@pytest.mark.parametrize('path', sorted([*PACKAGE.rglob('*.py'), *WIDGETS.glob('*.py')]),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_no_file_imports_another_files_private_names(path):
  package = 'nnx_edu.widgets' if path.parent == WIDGETS else 'nnx_edu'
  private = [f'{module}.{name}' for module, names, _ in chapter_imports(path.read_text(), package)
             for name in names if name.startswith('_')]
  assert private == []


def test_the_core_never_imports_the_widgets_at_module_level():
  for chapter in CHAPTERS:
    for target, _, inside in chapter_imports(chapter_path(chapter).read_text(), 'nnx_edu'):
      assert inside or not target.startswith('widgets'), f'{chapter} imports {target}'


def test_each_part_lists_its_chapters_in_reading_order():
  for part in sorted({part_of(c) for c in CHAPTERS} - {''}):
    doc = ast.get_docstring(ast.parse((PACKAGE / part / '__init__.py').read_text()))
    listed = [name for name in re.findall(r'``(\w+)\.py``', doc)]
    expected = [c.rpartition('.')[2] for c in CHAPTERS if part_of(c) == part]
    assert listed == expected, f'{part}/__init__.py lists {listed}'


def test_the_readme_reading_order_is_the_import_order():
  readme = (ROOT / 'README.md').read_text()
  order = readme[readme.index('## Reading order'):]
  order = order[:order.index('\n## ', 1)]
  listed = []
  for path in re.findall(r'^\| [\w.]+ \| `nnx_edu/([\w/]+)\.py`', order, re.M):
    chapter = path.replace('/', '.')
    if chapter not in listed:
      listed.append(chapter)
  assert listed == list(CHAPTERS)


# -- the checker itself can fail ---------------------------------------------------------
def test_an_upward_import_is_reported():
  source = 'from nnx_edu.nn.linear import Linear\n'
  assert upward_imports('core.state', source) == ['core.state imports nn.linear']


def test_an_upward_import_inside_a_function_is_reported_unless_listed():
  source = 'def hook():\n  from nnx_edu.transforms import compilation\n'
  assert upward_imports('core.graph', source) == [
      'core.graph imports transforms.compilation (inside a function)']
  lazy = 'def hook():\n  from nnx_edu.widgets import treescope_view\n'
  assert upward_imports('core.state', lazy) == []


def test_a_private_import_is_found():
  found = chapter_imports('from nnx_edu.core.state import _secret, State\n', 'nnx_edu')
  assert found == [('core.state', ['_secret', 'State'], False)]
