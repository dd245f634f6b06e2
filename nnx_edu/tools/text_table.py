"""Tools -- a table as text: YAML-like cells in a box, for ``nnx.tabulate``.

``nnx.tabulate`` (the next chapter) collects, for each row of its table, a
path, a type, the inputs and outputs of a call and the Variables of a
Module.  This chapter turns them into the text Flax prints.  Flax writes
each cell as YAML (with PyYAML, then removes the quotes) and draws the table
with ``rich``; nnx_edu does both with plain string formatting, by the same
rules:

* arrays print as ``dtype[shape]``, classes as ``type[Name]``, anything
  else as its ``repr``; a graph node (such as ``Rngs``) prints its State;
* a mapping prints one ``key: value`` per line, sorted by key; a sequence
  one ``- item`` per line; ``None`` inside a mapping is left out;
* a line is folded, as YAML folds, at the first space past column 80;
* the box has a heavy header, a line between rows, ``Total`` right-aligned
  in the footer, the title above and the caption below, centred.

>>> import jax.numpy as jnp
>>> print(cell_text({'kernel': jnp.ones((2, 3)), 'bias': jnp.ones(3)}))
bias: float32[3]
kernel: float32[2,3]
>>> print(draw_table('T', ['a', 'b'], [['1', 'x\\ny']], ['', 'Total'], 'end'), end='')
       T
┏━━━┳━━━━━━━┓
┃ a ┃ b     ┃
┡━━━╇━━━━━━━┩
│ 1 │ x     │
│   │ y     │
├───┼───────┤
│   │ Total │
└───┴───────┘
<BLANKLINE>
     end
"""

from __future__ import annotations

import re
import typing as tp

import jax
import numpy as np

from nnx_edu.core import graph
from nnx_edu.core.objects import Pytree

# A plain YAML scalar may not start with these; YAML quotes such strings.
_INDICATORS = set('-?:,[]{}#&*!|>\'"%@`')
_FOLD_AFTER = 80  # PyYAML's default line width


def is_array(x: tp.Any) -> bool:
  """Whether ``x`` has a shape and dtype to print: an array or a ShapeDtypeStruct.

  >>> import jax, jax.numpy as jnp
  >>> is_array(jnp.ones(2)), is_array(jax.ShapeDtypeStruct((2,), jnp.int8)), is_array(2.0)
  (True, True, False)
  """
  return isinstance(x, (jax.Array, np.ndarray, jax.ShapeDtypeStruct))


def inputs_text(args: tuple, kwargs: dict) -> str:
  """The inputs of a call: one argument alone, several as a list, then the keywords.

  >>> import jax.numpy as jnp
  >>> print(inputs_text((jnp.ones((1, 2)),), {}))
  float32[1,2]
  >>> print(inputs_text((jnp.ones(2), 3), {'train': True}))
  - float32[2]
  - 3
  train: True
  """
  text = ''
  if args:
    text += cell_text(args[0] if len(args) == 1 and not kwargs else args)
    text += '\n' if kwargs else ''
  if kwargs:
    text += cell_text(kwargs)
  return text


def cell_text(value: tp.Any) -> str:
  """``value`` as the YAML lines of a table cell, without quotes.

  >>> import jax.numpy as jnp
  >>> print(cell_text((jnp.ones((1, 2)), {'scale': 2.0, 'skip': None}, 'name')))
  - float32[1,2]
  - scale: 2.0
  - name
  """
  if value is None or (isinstance(value, tp.Sized) and not is_array(value) and not len(value)):
    return ''
  lines = _yaml_lines(_simplify(_texts(value), top=True), 0)
  return '\n'.join(lines).replace("'", '').strip()


def _texts(value: tp.Any) -> tp.Any:
  """``value`` with each leaf replaced by its text."""
  def text(x: tp.Any) -> tp.Any:
    if isinstance(x, Pytree):  # a graph node shows its State, as Flax's pytree nodes do
      return _texts(graph.state(x))
    if is_array(x):
      return f'{x.dtype}[{",".join(map(str, x.shape))}]'
    if isinstance(x, type):
      return f'type[{x.__name__}]'
    return repr(x)

  return jax.tree.map(text, value, is_leaf=lambda x: isinstance(x, Pytree))


def _has_leaves(x: tp.Any) -> bool:
  return bool(jax.tree.leaves(x))


def _simplify(x: tp.Any, top: bool = False) -> tp.Any:
  """Dicts and lists of strings, as YAML will print them.

  A pytree node becomes a list if its children are numbered, else a dict
  (a Variable is ``{'value': ...}``).  A dict leaves out children with
  nothing in them (``None``, empty); a list keeps their place, as ``None``,
  ``[]`` or ``{}``, up to its last non-empty item (at the top, to its end).
  """
  if isinstance(x, str):
    return x
  if not _has_leaves(x):
    return _plain(x)
  children = [(_key(path[0]), child) for path, child
              in jax.tree_util.tree_flatten_with_path(x, is_leaf=lambda y: y is not x)[0]]
  if all(isinstance(key, int) for key, _ in children):
    last = max(i for i, (_, child) in enumerate(children) if _has_leaves(child))
    items = [_simplify(child) if _has_leaves(child) else _placeholder(child)
             for _, child in children[:last + 1]]
    return items + ([_plain(child) for _, child in children[last + 1:]] if top else [])
  return {key: _simplify(child) for key, child in children if _has_leaves(child)}


def _key(entry: tp.Any) -> tp.Any:
  """The name or index in one step of a JAX key path."""
  for field in ('key', 'idx', 'name'):
    if hasattr(entry, field):
      return getattr(entry, field)
  return str(entry)


def _placeholder(x: tp.Any) -> tp.Any:
  return [] if isinstance(x, (list, tuple)) else {} if isinstance(x, tp.Mapping) else None


def _plain(x: tp.Any) -> tp.Any:
  if isinstance(x, tp.Mapping):
    return {key: _plain(value) for key, value in x.items()}
  if isinstance(x, (list, tuple)):
    return [_plain(item) for item in x]
  return x


def _yaml_lines(x: tp.Any, indent: int) -> list[str]:
  pad = ' ' * indent
  if isinstance(x, dict) and x:
    lines = []
    for key, value in x.items():
      if isinstance(value, dict) and value:
        lines += [f'{pad}{key}:', *_yaml_lines(value, indent + 2)]
      elif isinstance(value, list) and value:  # YAML does not indent a list under a key
        lines += [f'{pad}{key}:', *_yaml_lines(value, indent)]
      else:
        lines += _folded(f'{pad}{key}: ', value, indent)
    return lines
  if isinstance(x, list) and x:
    lines = []
    for item in x:
      if isinstance(item, (dict, list)) and item:
        inner = _yaml_lines(item, indent + 2)
        lines += [f'{pad}- {inner[0][indent + 2:]}', *inner[1:]]
      else:
        lines += _folded(f'{pad}- ', item, indent)
    return lines
  return _folded(pad, x, indent)


def _folded(start: str, value: tp.Any, indent: int) -> list[str]:
  """``start`` then ``value``; a single space past column 80 becomes a line break.

  Quotes count here, as they do for YAML: they are removed only afterwards.
  """
  text = '{}' if value == {} else '[]' if value == [] else str(value)
  if text[:1] in _INDICATORS or ': ' in text or ' #' in text:
    text = "'" + text.replace("'", "''") + "'"
  lines, line = [], start
  for piece in re.split('( +)', text):
    if piece == ' ' and len(line) > _FOLD_AFTER:
      lines.append(line)
      line = ' ' * (indent + 2)
    else:
      line += piece
  return [*lines, line]


# -- the box -----------------------------------------------------------------------
def draw_table(title: str, header: list[str], body: list[list[str]], footer: list[str],
               caption: str) -> str:
  """A box-drawn table; cells may hold several lines; ``Total`` is right-aligned.

  >>> print(draw_table('Demo', ['n'], [['1']], ['Total'], 'the end'), end='')
     Demo
  ┏━━━━━━━┓
  ┃ n     ┃
  ┡━━━━━━━┩
  │ 1     │
  ├───────┤
  │ Total │
  └───────┘
  <BLANKLINE>
   the end
  """
  rows = [header, *body, footer]
  widths = [max(len(line) for row in rows for line in row[i].split('\n'))
            for i in range(len(header))]
  width = sum(widths) + 3 * len(widths) + 1

  def rule(left: str, fill: str, middle: str, right: str) -> str:
    return left + middle.join(fill * (w + 2) for w in widths) + right

  def lines(row: list[str], bar: str) -> list[str]:
    cells = [cell.split('\n') for cell in row]
    out = []
    for i in range(max(map(len, cells))):
      texts = [cell[i] if i < len(cell) else '' for cell in cells]
      out.append(bar + bar.join(
          f' {text:>{w}} ' if text == 'Total' and row is footer else f' {text:<{w}} '
          for text, w in zip(texts, widths)) + bar)
    return out

  out = [_centre(title, width), rule('┏', '━', '┳', '┓'), *lines(header, '┃'),
         rule('┡', '━', '╇', '┩')]
  for row in body:
    out += [*lines(row, '│'), rule('├', '─', '┼', '┤')]
  out += [*lines(footer, '│'), rule('└', '─', '┴', '┘'), ' ' * width, _centre(caption, width)]
  return '\n'.join(out) + '\n'


def _centre(text: str, width: int) -> str:
  left = (width - len(text)) // 2  # the odd space goes to the right, as rich does
  return ' ' * left + text + ' ' * (width - len(text) - left)
