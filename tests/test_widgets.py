"""nnx_edu.widgets: the treescope trees, nnx.display and the explorer.

The explorer is tested the way a front end drives it: through the widgets'
own state (``get_state`` / ``set_state``) and ``Button.click``, reading back
what the rows, checkboxes and details panel show.  The same file runs the
docstring examples of ``widgets/`` (imported once, as ``nnx_edu.widgets``).
"""

import doctest
import html.parser
import importlib
import inspect
import re
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx_edu as nnx

pytest.importorskip('treescope')
pytest.importorskip('ipywidgets')
pytest.importorskip('matplotlib')

import treescope
from flax import nnx as fnnx
from nnx_edu.widgets import explore, pictures, state_facts
from tests.models import MODELS, with_containers

HOSTILE = '<img src=x onerror=alert(1)>'
WIDGET_MODULES = ['nnx_edu.widgets', 'nnx_edu.widgets.state_facts', 'nnx_edu.widgets.treescope_view',
                  'nnx_edu.widgets.pictures', 'nnx_edu.widgets.explorer']


class Block(nnx.Module):
  def __init__(self, din, dout, rngs):
    self.kernel = nnx.Param(rngs.params.normal((din, dout)))
    self.bias = nnx.Param(jnp.zeros(dout))
    self.mean = nnx.BatchStat(jnp.zeros(dout))


class Model(nnx.Module):
  def __init__(self, rngs):
    self.encoder = Block(2, 3, rngs)
    self.decoder = Block(3, 1, rngs)


def start_tags(page: str) -> set[str]:
  """The HTML elements a browser would create from ``page``."""
  tags = set()

  class Collector(html.parser.HTMLParser):
    def handle_starttag(self, tag, attrs):
      tags.add(tag)

  Collector().feed(page)
  return tags


def all_html(widget) -> list[str]:
  """The values of every HTML widget inside ``widget``."""
  found = [widget.value] if type(widget).__name__ == 'HTML' else []
  for child in getattr(widget, 'children', ()):
    found += all_html(child)
  return found


# -- packaging -------------------------------------------------------------------
def test_import_nnx_edu_loads_no_display_library():
  code = ('import sys, nnx_edu, nnx_edu.widgets; '
          "print(sorted({m.split('.')[0] for m in sys.modules} & "
          "{'treescope', 'ipywidgets', 'matplotlib', 'IPython'}))")
  result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          check=True, cwd='/')
  assert result.stdout.strip() == '[]'


def test_treescope_view_works_without_importing_ipywidgets():
  code = ('import sys, jax.numpy as jnp, nnx_edu as nnx, treescope; '
          'treescope.render_to_html(nnx.Param(jnp.ones(2))); '
          "print('ipywidgets' in sys.modules)")
  result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          check=True, cwd='/')
  assert result.stdout.strip() == 'False'


def test_widgets_are_imported_once_under_their_installed_name():
  for name in WIDGET_MODULES:
    importlib.import_module(name)
  assert not [name for name in sys.modules if name.split('.')[0] == 'widgets']


@pytest.mark.parametrize('module_name', WIDGET_MODULES)
def test_docstring_examples_run(module_name):
  module = importlib.import_module(module_name)
  runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
  tests = doctest.DocTestFinder().find(module, module_name)
  assert any(test.examples for test in tests)
  for test in tests:
    runner.run(test)
  assert runner.failures == 0, f'{runner.failures} docstring example(s) of {module_name} failed'


@pytest.mark.parametrize('module_name', WIDGET_MODULES)
def test_every_public_name_has_an_example(module_name):
  module = importlib.import_module(module_name)
  names = getattr(module, '__all__', None) or [
      name for name, obj in vars(module).items()
      if not name.startswith('_') and getattr(obj, '__module__', None) == module_name]
  for name in names:
    obj = getattr(module, name)
    members = vars(obj).items() if inspect.isclass(obj) else ()
    for label, member in [(name, obj), *((f'{name}.{k}', v) for k, v in members
                                         if not k.startswith('_') and callable(v))]:
      assert '>>>' in (inspect.getdoc(member) or ''), f'{label} needs a >>> example'


# -- treescope ------------------------------------------------------------------
def test_treescope_variable_has_size_comment_and_type_colour():
  page = treescope.render_to_html(nnx.Param(jnp.ones((2, 3))), compressed=False)
  assert '# 6 (24 B)' in page
  assert state_facts.TYPE_COLORS['Param'] in page


@pytest.mark.parametrize('name', sorted(MODELS))
def test_treescope_comments_match_flax(name):
  # The size comments (`# 6 (24 B)`, `# Param: ..., Total: ...`) of every node,
  # in drawing order, are those Flax's own treescope rendering shows.
  comment = r'# (?:(?:\w+: )?[\d,]+ \([\d.,]+ [KMG]?B\)(?:, )?)+'
  ours = re.findall(comment, treescope.render_to_html(MODELS[name](nnx), compressed=False))
  theirs = re.findall(comment, treescope.render_to_html(MODELS[name](fnnx),
                                                        compressed=False))
  assert ours == theirs and ours


def test_treescope_module_comment_is_the_first_line_of_its_repr():
  model = Model(nnx.Rngs(0))
  comment = repr(model).splitlines()[0].removeprefix('Model(')
  assert comment.startswith(' # Param: ')
  assert comment.strip() in treescope.render_to_html(model, compressed=False)


def test_treescope_state_draws_like_its_repr():
  state = nnx.State({'b': {'x': nnx.Param(1.0, tag='t')}, 'a': nnx.BatchStat(2.0)})
  text = treescope.render_to_text(state)
  assert text.startswith('State({') and text.index("'a'") < text.index("'b'")
  assert "'b': {'x': Param(value=1.0, tag='t')}" in text  # nested States are plain {...}


def test_treescope_draws_lists_dicts_and_rngs():
  model = with_containers(nnx)
  text = treescope.render_to_text(nnx.Dict(a=nnx.List([nnx.Rngs(0)])))
  assert text.startswith('Dict({') and "'a': List([" in text and 'Rngs(' in text
  assert 'blocks=List([' in treescope.render_to_text(model)


def test_treescope_escapes_html_in_names_and_metadata():
  hostile_type = type(HOSTILE, (nnx.Variable,), {})
  state = nnx.State({HOSTILE: nnx.Param(jnp.ones(2), note=HOSTILE),
                     'odd': hostile_type(jnp.zeros(1))})
  page = treescope.render_to_html(state, compressed=False)
  assert 'img' not in start_tags(page)
  assert '&lt;img src=x onerror=alert(1)&gt;' in page


def test_treescope_renders_a_large_model_quickly():
  model = nnx.List([Block(16, 16, nnx.Rngs(i)) for i in range(100)])  # 300 Variables
  start = time.perf_counter()
  page = treescope.render_to_html(model)
  seconds = time.perf_counter() - start
  print(f'treescope: 300 Variables in {seconds:.2f} s, {len(page) / 1e3:.0f} KB of HTML')
  assert seconds < 10 and len(page) < 2_000_000


# -- nnx.display ------------------------------------------------------------------
def test_display_prints_the_repr_outside_a_notebook(capsys):
  param = nnx.Param(jnp.ones(2))
  nnx.display(param, param)
  assert capsys.readouterr().out == f'{param!r}\n{param!r}\n'


def test_display_in_a_notebook_gives_treescope_html_and_the_repr_as_text():
  from IPython.core.interactiveshell import InteractiveShell
  from IPython.utils.capture import capture_output

  InteractiveShell.instance()
  model = Model(nnx.Rngs(0))
  try:
    with capture_output() as captured:
      nnx.display(model, nnx.state(model))
  finally:
    InteractiveShell.clear_instance()
  outputs = [output.data for output in captured.outputs]
  assert [sorted(data) for data in outputs] == [['text/html', 'text/plain']] * 2
  assert outputs[0]['text/plain'] == repr(model)
  assert outputs[1]['text/plain'] == repr(nnx.state(model))
  assert '<treescope-run-here>' in outputs[0]['text/html']


# -- the explorer ---------------------------------------------------------------
@pytest.fixture
def explorer():
  return explore(Model(nnx.Rngs(0)))


def texts(explorer, path):
  """(button label, row HTML) of the row at ``path``."""
  button, html_part = explorer.row(path).children
  return button.get_state()['description'], html_part.get_state()['value']


def test_explorer_starts_with_the_state_open_and_its_subtrees_closed(explorer):
  assert explorer.visible_paths() == [(), ('decoder',), ('encoder',)]
  assert texts(explorer, ())[0] == '▾ State'
  assert texts(explorer, ('encoder',))[0] == '▸ encoder'


def test_explorer_builds_rows_only_when_a_node_is_opened(explorer):
  assert ('encoder', 'kernel') not in explorer._rows
  explorer.row(('encoder',)).children[0].click()
  assert explorer.visible_paths()[-3:] == [('encoder', 'bias'), ('encoder', 'kernel'),
                                           ('encoder', 'mean')]
  assert texts(explorer, ('encoder',))[0] == '▾ encoder'
  explorer.row(('encoder',)).children[0].click()
  assert ('encoder', 'kernel') not in explorer.visible_paths()


def test_explorer_rows_show_path_type_shape_dtype_and_size(explorer):
  explorer.toggle(('encoder',))
  label, row = texts(explorer, ('encoder', 'kernel'))
  assert label == 'encoder.kernel'
  for shown in ('Param', '(2, 3)', 'float32', '6 (24 B)', state_facts.TYPE_COLORS['Param']):
    assert shown in row


def test_explorer_subtree_rows_show_totals_per_type(explorer):
  row = texts(explorer, ('encoder',))[1]
  assert '3 Variables' in row and '9 (36 B)' in row and '3 (12 B)' in row
  assert explorer.headline() == 'State: 6 Variables, Param: 13 (52 B), BatchStat: 4 (16 B)'


def test_explorer_type_checkboxes_are_the_legend_and_filter_rows(explorer):
  assert list(explorer.type_filters) == ['Param', 'BatchStat']
  explorer.toggle(('encoder',))
  explorer.type_filters['BatchStat'].set_state({'value': False})
  assert ('encoder', 'mean') not in explorer.visible_paths()
  assert 'BatchStat' not in texts(explorer, ('encoder',))[1]
  assert '2 Variables' in texts(explorer, ('encoder',))[1]
  explorer.type_filters['BatchStat'].set_state({'value': True})
  assert ('encoder', 'mean') in explorer.visible_paths()


def test_explorer_path_filter_keeps_matching_paths_and_opens_them(explorer):
  explorer.path_filter.set_state({'value': 'kernel'})
  assert [path for path in explorer.visible_paths() if explorer.tree.is_leaf(path)] == [
      ('decoder', 'kernel'), ('encoder', 'kernel')]
  explorer.path_filter.set_state({'value': 'no such path'})
  assert explorer.visible_paths() == [()]


def test_explorer_selecting_a_variable_shows_statistics_and_a_picture(explorer):
  explorer.toggle(('encoder',))
  explorer.row(('encoder', 'kernel')).children[0].click()
  kernel = np.asarray(Model(nnx.Rngs(0)).encoder.kernel.value, np.float64)
  details = explorer.info.get_state()['value']
  for name, value in [('min', kernel.min()), ('max', kernel.max()),
                      ('mean', kernel.mean()), ('std', kernel.std())]:
    assert f'<td>{name}</td><td>{value:.4g}</td>' in details
  assert bytes(explorer.image.value).startswith(b'\x89PNG')
  assert explorer.image.layout.display == ''
  assert 'nnx-selected' in explorer.row(('encoder', 'kernel')).children[0]._dom_classes


def test_pictures_are_heatmaps_for_matrices_and_histograms_otherwise():
  assert pictures.kind(np.ones((2, 3))) == 'heatmap'
  assert pictures.kind(np.ones(3)) == pictures.kind(np.ones((1, 3))) == 'histogram'


def test_explorer_describes_rng_state_and_values_without_numbers():
  explorer = explore(nnx.State({'rngs': nnx.state(nnx.Rngs(0)), 'note': nnx.Variable('text')}))
  explorer.toggle(('rngs',))
  explorer.toggle(('rngs', 'default'))
  explorer.select(('rngs', 'default', 'key'))
  assert 'key&lt;fry&gt;' in explorer.info.value and 'mean' in explorer.info.value
  explorer.select(('note',))
  assert 'no numbers' in explorer.info.value and explorer.image.layout.display == 'none'


def test_explorer_pages_the_children_of_a_big_node():
  state = nnx.State({f'v{i:03}': nnx.Param(np.ones(2, np.float32)) for i in range(120)})
  explorer = explore(state)
  assert len(explorer.visible_paths()) == 1 + 50
  more = explorer.tree_box.children[-1]
  assert more.description == 'show 50 more (70 hidden)'
  more.click()
  assert len(explorer.visible_paths()) == 1 + 100


def test_explorer_opens_a_state_of_10000_variables_in_under_a_second():
  state = nnx.State({f'block{i}': {f'w{j}': nnx.Param(np.ones((4, 4), np.float32))
                                   for j in range(100)} for i in range(100)})
  start = time.perf_counter()
  explorer = explore(state)
  opened = time.perf_counter() - start
  explorer.row(('block1',)).children[0].click()
  expanded = time.perf_counter() - start - opened
  print(f'explore: 10,000 Variables open in {opened:.2f} s, a node of 100 in {expanded:.2f} s')
  assert explorer.headline() == 'State: 10,000 Variables, Param: 160,000 (640.0 KB)'
  assert opened < 1.0


def test_explorer_diff_marks_changed_variables_with_their_largest_change():
  model = Model(nnx.Rngs(0))
  before = nnx.clone(model)
  model.encoder.kernel.value = model.encoder.kernel.value.at[0, 1].add(-0.5)
  diff = explore(before, model)
  assert repr(diff).startswith('Explorer(1 of 6 Variables changed')
  assert '1 changed' in texts(diff, ('encoder',))[1]
  assert 'changed' not in texts(diff, ('decoder',))[1]
  diff.toggle(('encoder',))
  assert 'largest |Δ| = 0.5' in texts(diff, ('encoder', 'kernel'))[1]
  assert 'changed' not in texts(diff, ('encoder', 'bias'))[1]
  diff.select(('encoder', 'kernel'))
  assert 'after minus before' in diff.info.value


def test_explorer_hide_unchanged_keeps_only_what_changed():
  model = Model(nnx.Rngs(0))
  before = nnx.clone(model)
  model.decoder.mean.value = model.decoder.mean.value + 1
  diff = explore(before, model)
  diff.hide_unchanged.set_state({'value': True})
  diff.toggle(('decoder',))
  assert diff.visible_paths() == [(), ('decoder',), ('decoder', 'mean')]


def test_explorer_diff_shows_added_and_removed_variables():
  before = nnx.State({'old': nnx.Param(jnp.ones(1)), 'w': nnx.Param(jnp.ones((2, 2)))})
  after = nnx.State({'new': nnx.Cache(jnp.ones(1)), 'w': nnx.Param(jnp.ones((3, 2)))})
  diff = explore(before, after)
  rows = {path[0]: texts(diff, path)[1] for path in diff.visible_paths() if path}
  assert 'added' in rows['new'] and 'removed' in rows['old']
  assert '>changed<' in rows['w']  # a new shape: changed, with no element-wise change


def test_explorer_escapes_html_in_paths_types_and_metadata():
  hostile_type = type(HOSTILE, (nnx.Variable,), {})
  state = nnx.State({HOSTILE: {'x': nnx.Param(jnp.ones(2), note=HOSTILE)},
                     'odd': hostile_type(jnp.zeros(1))})
  explorer = explore(state)
  explorer.toggle((HOSTILE,))
  explorer.select((HOSTILE, 'x'))
  pages = all_html(explorer)
  assert not any('img' in start_tags(page) for page in pages)
  assert sum('&lt;img src=x onerror=alert(1)&gt;' in page for page in pages) >= 4
  # Button labels are plain text in ipywidgets 7 and 8, so they keep the raw name.
  assert texts(explorer, (HOSTILE, 'x'))[0] == f"['{HOSTILE}'].x"
  # Checkbox labels are HTML in ipywidgets 7: the type checkboxes have none.
  assert all(box.description == '' for box in explorer.type_filters.values())


def test_explore_refuses_what_is_not_a_model_or_a_state():
  with pytest.raises(TypeError, match=r'explore: model_or_state must be a Module .* got dict'):
    explore({'w': jnp.ones(1)})
  with pytest.raises(TypeError, match=r'explore: after must be .* got int'):
    explore(nnx.Rngs(0), 3)


def test_state_facts_compare_key_arrays_and_pytrees():
  key = jax.random.key(0)
  assert state_facts.largest_change(key, key) == 0.0
  assert state_facts.largest_change(key, jax.random.key(1)) > 0
  assert state_facts.largest_change((1.0, 2.0), (1.0, 2.5)) == 0.5
  assert state_facts.largest_change('a', 'b') is None
