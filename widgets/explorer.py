"""Widgets, part 4 -- ``explore``: browse a State, filter it, compare two.

``explore(model)`` returns a widget that shows the model's State as a tree:

* every row shows a path, and a Variable's type (in its colour), shape,
  dtype, element count and bytes; a subtree's row shows its totals per type;
* one checkbox per Variable type present (it doubles as the colour legend),
  and a text box that keeps only paths containing its text;
* clicking a Variable shows its min/max/mean/std and a histogram (a
  heatmap for a matrix);
* ``explore(before, after)`` compares two States: changed Variables are
  marked with their largest absolute change, and "hide unchanged" keeps
  only what training touched.

It is built from plain ipywidgets only (no custom JavaScript), so it works
with ipywidgets 7.7 as on Colab and with 8.x.  Two rules keep it usable:

* **lazy**: a node's rows are built only when it is opened, and at most
  ``PAGE`` children at a time, so a State of 10,000 Variables opens at once;
* **safe**: text from the model reaches the page either through
  ``html.escape`` or as the label of a Button, which ipywidgets writes as
  plain text.  (Checkbox labels are HTML in ipywidgets 7, so the type
  checkboxes have none: an escaped label sits beside each.)
"""

from __future__ import annotations

import html
import typing as tp

import ipywidgets as widgets

from nnx_edu.core import graph
from nnx_edu.core.objects import Pytree
from nnx_edu.core.reprs import SizeBytes
from nnx_edu.core.state import State

from . import pictures, state_facts

Path = state_facts.Path
PAGE = 50        # children shown per opened node; a button shows the next ones
AUTO_OPEN = 200  # a path filter opens every branch when it keeps at most this many
INDENT_EM = 1.2  # indentation per level of the tree

# Looks only: rows stay one line high, names start at the left of their button.
CSS = """<style>
.nnx-explorer .nnx-tree .jupyter-button {text-align: left; justify-content: flex-start;
  overflow: hidden; text-overflow: ellipsis; white-space: nowrap; padding: 0 .5em;
  height: 1.8em; line-height: 1.8em; font-family: monospace}
.nnx-explorer .nnx-tree .widget-html, .nnx-explorer .nnx-tree .widget-html-content {
  white-space: nowrap; height: 1.8em; line-height: 1.8em; margin-top: 0; margin-bottom: 0}
.nnx-explorer .nnx-tree .nnx-selected {outline: 2px solid #2563eb; font-weight: bold}
.nnx-explorer .nnx-details td {padding: 0 .8em 0 0; line-height: 1.5em}
</style>"""


def explore(model_or_state: tp.Any, after: tp.Any = None) -> Explorer:
  """A widget to browse a model's State; with ``after``, a diff of two States.

  Both arguments may be a Module (or any nnx Pytree) or a State.  To see
  what training changed, keep a copy first: ``before = nnx.clone(model)``,
  train, then ``explore(before, model)``.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> before = nnx.State({'w': nnx.Param(jnp.zeros(3)), 'b': nnx.Param(jnp.zeros(1))})
  >>> after = nnx.State({'w': nnx.Param(jnp.array([0.0, 0.1, 0.0])), 'b': nnx.Param(jnp.zeros(1))})
  >>> explore(before, after)
  Explorer(1 of 2 Variables changed, Param: 4 (16 B))
  """
  state = _as_state(model_or_state, 'model_or_state')
  return Explorer(state, None if after is None else _as_state(after, 'after'))


def _as_state(value: tp.Any, argument: str) -> State:
  if isinstance(value, Pytree):
    return graph.state(value)
  if isinstance(value, State):
    return value
  raise TypeError(
      f'explore: {argument} must be a Module (or another nnx Pytree) or a '
      f'State, but got {type(value).__name__}. Pass the model itself or '
      'nnx.state(model).'
  )


class Explorer(widgets.VBox):
  """The widget ``explore`` returns; its parts are attributes, to test or script it.

  Attributes:
    type_filters: a Checkbox per Variable type present, keyed by type name.
    path_filter: a Text; only paths that contain its value are shown.
    hide_unchanged: a Checkbox when comparing two States, else ``None``.
    tree_box: a VBox holding one row (an HBox: Button, HTML) per visible node.
    info, image: the description and picture of the selected Variable.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> explorer = explore(nnx.State({'layer': {'w': nnx.Param(jnp.ones((2, 2)))}}))
  >>> explorer.visible_paths()
  [(), ('layer',)]
  >>> explorer.row(('layer',)).children[0].click()     # open it
  >>> explorer.row(('layer', 'w')).children[0].click()  # select the Variable
  >>> 'mean' in explorer.info.value
  True
  """

  def __init__(self, state: State, after: State | None = None):
    self.comparing = after is not None
    leaves = state_facts.compare(state, after) if self.comparing else state_facts.describe(state)
    self.full_tree = state_facts.Tree(leaves)
    self.tree = self.full_tree  # what the filters keep
    self.opened: set[Path] = {()}
    self.shown: dict[Path, int] = {}  # children shown per opened node, if not PAGE
    self.selected_path: Path | None = None
    self._rows: dict[Path, widgets.HBox] = {}
    self._more: dict[Path, widgets.Button] = {}
    self._order: list[Path] = []
    self._shared: dict[tp.Hashable, widgets.Widget] = {}

    self.type_filters = {name: widgets.Checkbox(value=True, indent=False,
                                                layout=widgets.Layout(width='1.6em'))
                         for name in self.full_tree.colors}
    self.path_filter = widgets.Text(description='Path:', placeholder='part of a path, e.g. kernel')
    self.hide_unchanged = (widgets.Checkbox(value=False, indent=False, description='hide unchanged')
                           if self.comparing else None)
    # On a narrow screen the details wrap below the tree (flex_flow below).
    self.tree_box = widgets.VBox(layout=widgets.Layout(
        flex='1 1 36em', max_height='36em', overflow='auto'))
    self.info = widgets.HTML('<i>Click a Variable to see its statistics.</i>')
    self.image = widgets.Image(format='png', layout=widgets.Layout(display='none'))
    details = widgets.VBox([self.info, self.image], layout=widgets.Layout(
        flex='0 0 22em', padding='0 .8em', border='1px solid #e5e7eb'))

    legend = [widgets.HBox([box, widgets.HTML(self._legend_html(name))])
              for name, box in self.type_filters.items()]
    more_filters = [self.path_filter, *([self.hide_unchanged] if self.comparing else [])]
    for control in [*self.type_filters.values(), *more_filters]:
      control.observe(self._refilter, names='value')
    super().__init__([
        widgets.HTML(CSS + f'<b>{html.escape(self.headline())}</b>'),
        widgets.HBox([*legend, *more_filters],
                     layout=widgets.Layout(flex_flow='row wrap', align_items='center')),
        widgets.HBox([self.tree_box, details], layout=widgets.Layout(flex_flow='row wrap')),
    ])
    # CSS classes name the parts, for the style above and for browser tests.
    for part, css_class in [(self, 'nnx-explorer'), (self.tree_box, 'nnx-tree'),
                            (details, 'nnx-details'), *((box, 'nnx-type-filter') for box in legend)]:
      part.add_class(css_class)
    self._redraw()

  def __repr__(self) -> str:
    return f'Explorer({self.headline()})'

  # -- what is shown ---------------------------------------------------------
  def headline(self) -> str:
    """One line about the whole State: counts, and per-type totals.

    >>> import jax.numpy as jnp
    >>> import nnx_edu as nnx
    >>> explore(nnx.State({'w': nnx.Param(jnp.ones(2)), 'm': nnx.BatchStat(jnp.ones(1))})).headline()
    'State: 2 Variables, BatchStat: 1 (4 B), Param: 2 (8 B)'
    """
    tree = self.full_tree
    count = _plural(tree.count(()), 'Variable')
    count = (f'{tree.changed(())} of {count} changed' if self.comparing else f'State: {count}')
    return ', '.join([count, *(f'{name}: {size}' for name, size in tree.totals(()).items())])

  def visible_paths(self) -> list[Path]:
    """The paths of the rows on screen, top to bottom; ``()`` is the whole State.

    >>> import nnx_edu as nnx
    >>> explore(nnx.State({'a': {'b': nnx.Param(1.0)}})).visible_paths()
    [(), ('a',)]
    """
    return list(self._order)

  def row(self, path: Path) -> widgets.HBox:
    """The row of a visible ``path``: an HBox of a Button (open / select) and an HTML.

    >>> import nnx_edu as nnx
    >>> explore(nnx.State({'a': {'b': nnx.Param(1.0)}})).row(('a',)).children[0].description
    '▸ a'
    """
    return self._rows[path]

  # -- actions (what the buttons do) ----------------------------------------
  def toggle(self, path: Path) -> None:
    """Open a closed subtree, or close an open one (what its button does).

    >>> import nnx_edu as nnx
    >>> explorer = explore(nnx.State({'a': {'b': nnx.Param(1.0)}}))
    >>> explorer.toggle(('a',))
    >>> explorer.visible_paths()
    [(), ('a',), ('a', 'b')]
    """
    self.opened.symmetric_difference_update({path})
    self._rows[path].children[0].description = self._button_text(path)
    self._redraw()

  def show_more(self, path: Path) -> None:
    """Show the next ``PAGE`` children of an opened subtree.

    >>> import nnx_edu as nnx
    >>> explorer = explore(nnx.State({f'v{i:02}': nnx.Param(1.0) for i in range(60)}))
    >>> len(explorer.visible_paths()), explorer.show_more(()), len(explorer.visible_paths())
    (51, None, 61)
    """
    self.shown[path] = self.shown.get(path, PAGE) + PAGE
    self._redraw()

  def select(self, path: Path) -> None:
    """Describe the Variable at ``path``: statistics, and a picture of its numbers
    (of its change, when comparing and it changed).  Clicking its button does this.

    >>> import jax.numpy as jnp
    >>> import nnx_edu as nnx
    >>> explorer = explore(nnx.State({'w': nnx.Param(jnp.array([1.0, 3.0]))}))
    >>> explorer.select(('w',))
    >>> '<td>mean</td><td>2</td>' in explorer.info.value
    True
    """
    leaf = self.tree.leaves[path]
    for row_path in (self.selected_path, path):  # move the highlight
      if row_path in self._rows:
        button = self._rows[row_path].children[0]
        (button.add_class if row_path == path else button.remove_class)('nnx-selected')
    self.selected_path = path
    self.info.value = _details_html(leaf)
    numbers = state_facts.as_numbers(leaf.value)
    if leaf.status == 'changed' and leaf.change is not None:
      before = state_facts.as_numbers(state_facts.raw_value(leaf.before))
      self.image.value = pictures.picture(numbers - before, difference=True)
    elif numbers is not None and numbers.size:
      self.image.value = pictures.picture(numbers)
    self.image.layout.display = '' if numbers is not None and numbers.size else 'none'

  # -- building rows -----------------------------------------------------------
  def _refilter(self, change: tp.Any = None) -> None:
    types = {name for name, box in self.type_filters.items() if box.value}
    hide = self.hide_unchanged is not None and self.hide_unchanged.value
    self.tree = self.full_tree.filtered(types, self.path_filter.value, changed_only=hide)
    if self.path_filter.value and self.tree.count(()) <= AUTO_OPEN:
      self.opened.update(self.tree.branches())
    for widget in [*self._rows.values(), *self._more.values()]:
      for part in (*getattr(widget, 'children', ()), widget):
        part.close()  # the totals changed: old rows go, and free their front-end copies
    self._rows.clear()
    self._more.clear()
    self._redraw()

  def _redraw(self) -> None:
    self._order = []
    rows: list[widgets.Widget] = []
    self._add_rows((), rows)
    self.tree_box.children = rows

  def _add_rows(self, path: Path, rows: list) -> None:
    if path not in self._rows:
      self._rows[path] = self._new_row(path)
    rows.append(self._rows[path])
    self._order.append(path)
    if self.tree.is_leaf(path) or path not in self.opened:
      return
    children = self.tree.children(path)
    limit = self.shown.get(path, PAGE)
    for child in children[:limit]:
      self._add_rows(child, rows)
    if len(children) > limit:
      rows.append(self._more_button(path, len(children) - limit))

  def _new_row(self, path: Path) -> widgets.HBox:
    depth = len(path)
    leaf = self.tree.leaves.get(path)
    # Rows share their Layout and Style objects: each is a widget of its own,
    # and making them took most of the time to open a node.
    button = widgets.Button(
        description=self._button_text(path),
        tooltip=state_facts.path_text(path) or 'the whole State',
        layout=self._share(('indent', depth), widgets.Layout, flex='0 0 auto',
                           width=f'{max(8.0, 18 - INDENT_EM * depth):.1f}em',
                           margin=f'1px .6em 1px {INDENT_EM * depth:.1f}em'),
        style=self._share(('color', leaf and leaf.color), widgets.ButtonStyle,
                          button_color=leaf.color if leaf else '#f3f4f6'))
    button.on_click(lambda _: self.select(path) if leaf else self.toggle(path))
    if path == self.selected_path:
      button.add_class('nnx-selected')
    # HTML's Style class differs between ipywidgets 7 and 8: share the first one made.
    style = {'style': self._shared['text style']} if 'text style' in self._shared else {}
    text = widgets.HTML(_leaf_row_html(leaf) if leaf else _branch_row_html(self.tree, path),
                        layout=self._share('text', widgets.Layout, flex='0 0 auto'), **style)
    self._shared.setdefault('text style', text.style)
    return widgets.HBox([button, text], layout=self._share('row', widgets.Layout))

  def _share(self, key: tp.Hashable, make: type, **settings: tp.Any) -> widgets.Widget:
    if key not in self._shared:
      self._shared[key] = make(**settings)
    return self._shared[key]

  def _button_text(self, path: Path) -> str:
    name = state_facts.path_text(path) or 'State'
    if self.tree.is_leaf(path):
      return name
    return ('▾ ' if path in self.opened else '▸ ') + name

  def _more_button(self, path: Path, hidden: int) -> widgets.Button:
    if path not in self._more:
      self._more[path] = widgets.Button(layout=widgets.Layout(
          width='auto', margin=f'1px 0 1px {INDENT_EM * (len(path) + 1):.1f}em'))
      self._more[path].on_click(lambda _: self.show_more(path))
    self._more[path].description = f'show {min(PAGE, hidden)} more ({hidden} hidden)'
    return self._more[path]

  def _legend_html(self, name: str) -> str:
    tree = self.full_tree
    return f'{_chip(name, tree.colors[name])} {tree.totals(())[name]}&emsp;'


# -- HTML pieces: every text from the model goes through html.escape ------------
def _chip(text: str, color: str, width_em: float | None = None) -> str:
  """A type name on its colour (in a fixed width, to line rows up, if given)."""
  box = (f'display:inline-block;width:{width_em}em;overflow:hidden;text-overflow:ellipsis;'
         'vertical-align:bottom;' if width_em else '')
  return (f'<span style="{box}background:{color};padding:0 .4em;border-radius:3px" '
          f'title="{html.escape(text)}">{html.escape(text)}</span>')


def _cell(text: str, width_em: float) -> str:
  return (f'<span style="display:inline-block;width:{width_em}em;overflow:hidden;'
          f'text-overflow:ellipsis;vertical-align:bottom" title="{html.escape(text)}">'
          f'{html.escape(text)}</span>')


def _badge(text: str, color: str) -> str:
  return f' <span style="background:{color};padding:0 .3em">{html.escape(text)}</span>'


def _plural(count: int, noun: str) -> str:
  return f'{count:,} {noun}' + 's' * (count != 1)


def _size_text(size: SizeBytes) -> str:
  return repr(size) if size else '-'


def _leaf_row_html(leaf: state_facts.Leaf) -> str:
  return (_chip(leaf.type_name, leaf.color, width_em=6.5) + '&ensp;' + _cell(leaf.shape, 6)
          + _cell(leaf.dtype, 5.5) + _cell(_size_text(leaf.size), 8) + _status_html(leaf))


def _status_html(leaf: state_facts.Leaf) -> str:
  if leaf.status == 'changed':
    return _badge('changed' if leaf.change is None else f'changed, largest |Δ| = {leaf.change:.3g}',
                  '#fde047')
  if leaf.status in ('added', 'removed'):
    return _badge(leaf.status, '#86efac' if leaf.status == 'added' else '#fca5a5')
  return ''


def _branch_row_html(tree: state_facts.Tree, path: Path) -> str:
  totals = ', '.join(f'{_chip(name, tree.colors[name])} {size}'
                     for name, size in tree.totals(path).items())
  changed = tree.changed(path)
  return (f'{_plural(tree.count(path), "Variable")}: {totals}'
          + (_badge(f'{changed} changed', '#fde047') if changed else ''))


def _details_html(leaf: state_facts.Leaf) -> str:
  """The selected Variable: path, type, shape and size, metadata, statistics."""
  lines = [f'<b style="font-family:monospace">{html.escape(state_facts.path_text(leaf.path))}</b>',
           (f'{_chip(leaf.type_name, leaf.color)} {html.escape(leaf.shape)} '
            f'{html.escape(leaf.dtype)}, {_size_text(leaf.size)}')]
  metadata = leaf.variable.get_metadata() if hasattr(leaf.variable, 'get_metadata') else {}
  lines += [f'{html.escape(str(key))} = {html.escape(repr(value))}'
            for key, value in metadata.items()]
  stats = state_facts.statistics(leaf.value)
  cells = [f'<td>{name}</td><td>{value:.4g}</td>' for name, value in (stats or {}).items()]
  lines.append('<i>no numbers to summarise</i>' if stats is None else  # min max / mean std
               f'<table><tr>{"".join(cells[:2])}</tr><tr>{"".join(cells[2:])}</tr></table>')
  if leaf.status != 'same':
    lines.append(_status_html(leaf).strip())
  if leaf.status == 'changed' and leaf.change is not None:
    lines.append('<small>picture: after minus before</small>')
  return ''.join(f'<div>{line}</div>' for line in lines)
