"""What a student sees: the demo notebook run in JupyterLab, in headless Chromium.

JupyterLab serves ``tests/browser/explorer_demo.ipynb`` (a copy, in a
temporary folder) on 127.0.0.1; Chromium runs all its cells, then the test
opens a node of the explorer, filters by Variable type, selects a Variable,
compares two States, and checks that names full of HTML show as text.
Screenshots go to ``$NNX_EDU_SCREENSHOTS`` (default
``/tmp/nnx_edu_screenshots``).

Needs the Debian package ``chromium`` (at /usr/bin/chromium, or set
``NNX_EDU_CHROMIUM``) and the Python packages ``playwright``, ``jupyterlab``,
``ipykernel``, ``ipywidgets``, ``treescope`` and ``matplotlib``; the test
skips, saying which is missing, when any is absent.  Playwright never
downloads a browser here: it drives the system Chromium.
"""

import importlib.util
import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

CHROMIUM = os.environ.get('NNX_EDU_CHROMIUM', '/usr/bin/chromium')
NOTEBOOK = pathlib.Path(__file__).parent / 'browser' / 'explorer_demo.ipynb'
SCREENSHOTS = pathlib.Path(os.environ.get('NNX_EDU_SCREENSHOTS', '/tmp/nnx_edu_screenshots'))
HOSTILE = '<img src=x onerror=alert(1)>'
# True once the notebook's kernel has started and is waiting for work.
KERNEL_IDLE = """() => {
  const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const kernel = panel && panel.sessionContext && panel.sessionContext.session
                 && panel.sessionContext.session.kernel;
  return !!kernel && kernel.status === 'idle' && panel.content.widgets.length > 0;
}"""


def _missing() -> str | None:
  if not os.path.exists(CHROMIUM):
    return f'no Chromium at {CHROMIUM} (apt-get install -y chromium)'
  for module in ('playwright', 'jupyterlab', 'ipykernel', 'ipywidgets', 'treescope', 'matplotlib',
                 'nbconvert'):
    if importlib.util.find_spec(module) is None:
      return f'the Python package {module} is not installed (pip install {module})'
  return None


if _missing():
  pytest.skip(_missing(), allow_module_level=True)


def _free_port() -> int:
  with socket.socket() as sock:
    sock.bind(('127.0.0.1', 0))
    return sock.getsockname()[1]


@pytest.fixture(scope='module')
def lab_url(tmp_path_factory):
  """A JupyterLab server on 127.0.0.1 whose root folder holds the demo notebook."""
  root = tmp_path_factory.mktemp('lab')
  shutil.copy(NOTEBOOK, root)
  # No "would you like news?" pop-up over the notebook.
  settings = root / 'settings' / '@jupyterlab' / 'apputils-extension'
  settings.mkdir(parents=True)
  (settings / 'notification.jupyterlab-settings').write_text(
      json.dumps({'fetchNews': 'false', 'checkForUpdates': False}))
  port = _free_port()
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu',
         'JUPYTERLAB_SETTINGS_DIR': str(root / 'settings'),
         'JUPYTERLAB_WORKSPACES_DIR': str(root / 'workspaces')}
  with open(root / 'server.log', 'w') as log:
    server = subprocess.Popen(
        [sys.executable, '-m', 'jupyterlab', '--no-browser', '--ip=127.0.0.1', f'--port={port}',
         '--ServerApp.port_retries=0', '--allow-root', '--IdentityProvider.token=',
         '--ServerApp.password=', '--LabApp.expose_app_in_browser=True',
         f'--ServerApp.root_dir={root}'],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f'http://127.0.0.1:{port}'
    try:
      _wait_for_server(url, server, root / 'server.log')
      yield url
    finally:
      server.terminate()
      try:
        server.wait(timeout=20)
      except subprocess.TimeoutExpired:
        server.kill()


def _wait_for_server(url: str, server: subprocess.Popen, log: pathlib.Path) -> None:
  deadline = time.monotonic() + 90
  while time.monotonic() < deadline:
    if server.poll() is not None:
      pytest.fail(f'JupyterLab exited early:\n{log.read_text()[-3000:]}')
    try:
      with urllib.request.urlopen(f'{url}/api/status', timeout=2):
        return
    except OSError:
      time.sleep(0.5)
  pytest.fail(f'JupyterLab did not answer within 90 s:\n{log.read_text()[-3000:]}')


@pytest.fixture(scope='module')
def browser():
  """Headless Chromium, driven by Playwright."""
  from playwright.sync_api import sync_playwright

  SCREENSHOTS.mkdir(parents=True, exist_ok=True)
  with sync_playwright() as playwright:
    chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                          args=['--no-sandbox'])
    try:
      yield chromium
    finally:
      chromium.close()


@pytest.fixture(scope='module')
def notebook(lab_url, browser):
  """The demo notebook in Chromium with all its cells run; yields (page, alerts)."""
  page = browser.new_page(viewport={'width': 1500, 'height': 1200})
  alerts: list[str] = []  # any alert() would mean injected HTML ran
  page.on('dialog', lambda dialog: (alerts.append(dialog.message), dialog.dismiss()))
  page.goto(f'{lab_url}/lab/tree/{NOTEBOOK.name}')
  try:
    page.wait_for_function(KERNEL_IDLE, timeout=90_000)
    # Not awaited: the command's promise only settles when every cell has run.
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    page.wait_for_function("document.querySelectorAll('.nnx-explorer').length >= 2",
                           timeout=120_000)
    page.wait_for_function(KERNEL_IDLE, timeout=60_000)
  except Exception:
    page.screenshot(path=SCREENSHOTS / 'failed_to_run.png')
    raise
  yield page, alerts
  page.close()


def _tree_text(explorer) -> str:
  return explorer.locator('.nnx-tree').inner_text()


def _wait_for_tree(page, index: int, shows: str, hides: str) -> None:
  """Wait until the tree of the index-th explorer shows one text and not another."""
  page.wait_for_function(
      """([index, shows, hides]) => {
        const text = document.querySelectorAll('.nnx-explorer .nnx-tree')[index].innerText;
        return text.includes(shows) && !text.includes(hides);
      }""", arg=[index, shows, hides])


def test_treescope_output_shows_the_model_with_its_size_comments(notebook):
  page, alerts = notebook
  tree = page.locator('treescope-container').first
  tree.wait_for(timeout=30_000)
  assert tree.get_by_text('Model(').count() >= 1
  # the per-type comment of the Model, as in its text repr
  assert tree.get_by_text(re.compile(r'# Param: 58 \(232 B\)')).count() >= 1
  tree.screenshot(path=SCREENSHOTS / 'treescope_model.png')
  assert page.locator('img[src="x"]').count() == 0
  assert alerts == []


def test_explorer_opens_a_node_filters_by_type_and_selects_a_variable(notebook):
  page, alerts = notebook
  explorer = page.locator('.nnx-explorer').first
  assert 'encoder.kernel' not in _tree_text(explorer)  # closed at first

  explorer.locator('.nnx-tree button', has_text='▸ encoder').click()
  explorer.locator('.nnx-tree', has_text='encoder.kernel').wait_for()
  text = _tree_text(explorer)
  assert 'encoder.mean' in text and '(4, 8)' in text and 'BatchStat' in text

  explorer.locator('.nnx-type-filter', has_text='BatchStat').locator(
      'input[type=checkbox]').uncheck()
  _wait_for_tree(page, 0, shows='encoder.kernel', hides='BatchStat')
  assert 'encoder.mean' not in _tree_text(explorer)

  explorer.locator('.nnx-tree button', has_text=re.compile(r'^encoder\.kernel$')).click()
  explorer.locator('.nnx-details', has_text='std').wait_for()
  picture = explorer.locator('.nnx-details img')
  picture.wait_for()
  assert picture.evaluate('img => img.complete && img.naturalWidth > 100')
  explorer.screenshot(path=SCREENSHOTS / 'explorer.png')
  assert alerts == []


def test_explorer_shows_html_in_names_as_text(notebook):
  page, alerts = notebook
  explorer = page.locator('.nnx-explorer').first
  explorer.locator('.nnx-tree button', has_text=re.compile(r'^odd$')).click()
  explorer.locator('.nnx-details', has_text='note').wait_for()
  assert HOSTILE in _tree_text(explorer)  # the type name, drawn as text
  assert 'onerror=alert(2)' in explorer.locator('.nnx-details').inner_text()
  assert page.locator('img[src="x"]').count() == 0
  assert alerts == []


def test_explorer_diff_marks_changes_and_hides_unchanged(notebook):
  page, alerts = notebook
  diff = page.locator('.nnx-explorer').nth(1)
  assert '2 of 7 Variables changed' in diff.inner_text()
  diff.locator('.nnx-tree button', has_text='▸ encoder').click()
  diff.locator('.nnx-tree', has_text='largest |Δ|').wait_for()

  diff.get_by_text('hide unchanged').click()
  _wait_for_tree(page, 1, shows='encoder.kernel', hides='encoder.bias')
  assert 'odd' not in _tree_text(diff)
  diff.locator('.nnx-tree button', has_text=re.compile(r'^encoder\.kernel$')).click()
  diff.locator('.nnx-details', has_text='after minus before').wait_for()
  diff.locator('.nnx-details img').wait_for()
  diff.screenshot(path=SCREENSHOTS / 'explorer_diff.png')
  assert alerts == []


def test_treescope_output_renders_in_static_html_from_nbconvert(browser, tmp_path, monkeypatch):
  import nbclient
  import nbconvert
  import nbformat

  notebook = nbformat.read(NOTEBOOK, as_version=4)
  notebook.cells = notebook.cells[:3]  # the model and nnx.display(model)
  monkeypatch.setenv('JAX_PLATFORMS', os.environ.get('JAX_PLATFORMS', 'cpu'))
  nbclient.NotebookClient(notebook, timeout=120, kernel_name='python3',
                          resources={'metadata': {'path': str(tmp_path)}}).execute()
  page_html, _ = nbconvert.HTMLExporter().from_notebook_node(notebook)
  (tmp_path / 'demo.html').write_text(page_html)

  page = browser.new_page(viewport={'width': 1200, 'height': 900})
  alerts: list[str] = []
  page.on('dialog', lambda dialog: (alerts.append(dialog.message), dialog.dismiss()))
  page.goto((tmp_path / 'demo.html').as_uri())
  tree = page.locator('treescope-container').first
  tree.wait_for(timeout=30_000)
  tree.get_by_text(re.compile(r'# Param: 58 \(232 B\)')).first.wait_for()
  tree.screenshot(path=SCREENSHOTS / 'treescope_static_html.png')
  assert page.locator('img[src="x"]').count() == 0 and alerts == []
  page.close()
