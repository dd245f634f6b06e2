"""Widgets, part 2 -- States, Variables and Modules as treescope trees.

`treescope <https://treescope.readthedocs.io>`_ draws a Python object as a
foldable tree in a notebook: click a node to open or close it.  It asks an
object how to draw itself through the method ``__treescope_repr__(path,
subtree_renderer)``.  The core classes (``Variable``, ``State``, ``Pytree``)
have a two-line version of that method that imports this file and calls one
of the three ``render_*`` functions below, so the core never imports
treescope itself.

Each tree looks like the text repr (``core/reprs.py``): the same names, brackets and
size comments (``Param( # 6 (24 B)``, ``Linear( # Param: 9 (36 B)``), with
each Variable coloured by its type (see ``state_facts.TYPE_COLORS``) and each
Module tinted by its class.  As in Flax's own treescope rendering, ``List``
and ``Dict`` show their totals too, which their text repr leaves out.  Treescope escapes every piece of text it draws,
so names and metadata can never inject HTML.

``mimebundle`` renders an object for a notebook cell (``nnx.display`` shows
it): the treescope HTML *and* the text repr, so that a notebook checker
(nbval) has plain text to compare while a browser shows the tree.
"""

from __future__ import annotations

import typing as tp

import treescope
from treescope import rendering_parts as parts

from nnx_edu.core import objects
from nnx_edu.core.filters import sort_key
from nnx_edu.core.module import Module
from nnx_edu.core.reprs import SizeBytes
from nnx_edu.core.state import State
from nnx_edu.core.variables import Variable

from . import state_facts

Renderer = tp.Callable[..., tp.Any]
# One child line of a tree: (label before the value, the child's path, value).
Entry = tuple[str, str | None, tp.Any]


def render_variable(variable: Variable, path: str | None, subtree_renderer: Renderer):
  """``Param( # 6 (24 B)`` / ``value=...`` / metadata, on the type's colour.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx, treescope
  >>> html = treescope.render_to_html(nnx.Param(jnp.ones((2, 3))), compressed=False)
  >>> '6 (24 B)' in html and state_facts.TYPE_COLORS['Param'] in html
  True
  """
  value = variable.get_value()
  size = SizeBytes.of(value)
  attributes = {'value': value, **variable.get_metadata()}
  return _foldable(type(variable).__name__, '()', _attribute_entries(attributes, path),
                   path, subtree_renderer, color=state_facts.type_color(type(variable)),
                   comment=f' # {size}' if size else '')


def render_state(state: State, path: str | None, subtree_renderer: Renderer,
                 type_name: str = 'State'):
  """``State({`` ... ``})`` sorted by key; nested States draw as plain ``{...}``.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx, treescope
  >>> state = nnx.State({'layer': {'bias': nnx.Param(jnp.zeros(3))}})
  >>> html = treescope.render_to_html(state, compressed=False)
  >>> 'State' in html and 'bias' in html
  True
  """
  brackets = '({})' if type_name else '{}'
  entries = [
      (f'{key!r}: ', _child(path, f'[{key!r}]'),
       _NestedState(value) if isinstance(value, State) else value)
      for key, value in sorted(state.items(), key=lambda item: sort_key(item[0]))
  ]
  return _foldable(type_name, brackets, entries, path, subtree_renderer)


class _NestedState:
  """Draws a State inside a State as ``{...}``, as the text repr prints it."""

  def __init__(self, state: State):
    self.state = state

  def __treescope_repr__(self, path: str | None, subtree_renderer: Renderer):
    return render_state(self.state, path, subtree_renderer, type_name='')


# The per-type counts of the outermost node being drawn, shared with the nodes
# below it, so that a node shared by two parents is counted once, as in repr.
_node_stats: dict[int, dict[str, SizeBytes]] | None = None


def render_node(node: objects.Pytree, path: str | None, subtree_renderer: Renderer):
  """A Module, Rngs or other graph node, with per-type counts on its first line.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx, treescope
  >>> class Scale(nnx.Module):
  ...   def __init__(self):
  ...     self.w = nnx.Param(jnp.ones(3))
  ...     self.mean = nnx.BatchStat(jnp.zeros(3))
  >>> html = treescope.render_to_html(Scale(), compressed=False)
  >>> 'BatchStat: 3 (12 B), Param: 3 (12 B), Total: 6 (24 B)' in html
  True
  """
  global _node_stats
  outer_stats = _node_stats
  if outer_stats is None or id(node) not in outer_stats:
    _node_stats = {}
    objects.collect_stats(node, _node_stats)
  try:
    name, brackets, entries = _node_layout(node, path)
    color = state_facts.hashed_color(type(node).__name__, 94) if isinstance(node, Module) else None
    # Unlike their text repr, List and Dict get counts too, as in Flax's treescope.
    return _foldable(name, brackets, entries, path, subtree_renderer, color=color,
                     comment=objects.stats_comment(_node_stats[id(node)]))
  finally:
    _node_stats = outer_stats


def _node_layout(node: objects.Pytree, path: str | None) -> tuple[str, str, list[Entry]]:
  """The name, brackets and child lines of a node: ``List([...])``, ``Dict({...})``, ``T(...)``."""
  name = type(node).__name__
  if isinstance(node, tp.Sequence):  # nnx.List
    return name, '([])', [('', _child(path, f'[{i}]'), item) for i, item in enumerate(node)]
  if isinstance(node, tp.Mapping):  # nnx.Dict
    return name, '({})', [(f'{key!r}: ', _child(path, f'[{key!r}]'), value)
                          for key, value in node.items()]
  return name, '()', _attribute_entries(dict(node._repr_attributes()), path)


def _attribute_entries(attributes: tp.Mapping[str, tp.Any], path: str | None) -> list[Entry]:
  return [(f'{name}=', _child(path, f'.{name}'), value) for name, value in attributes.items()]


def _child(path: str | None, suffix: str) -> str | None:
  return None if path is None else path + suffix


def _foldable(name: str, brackets: str, entries: list[Entry], path: str | None,
              subtree_renderer: Renderer, color: str | None = None, comment: str = ''):
  """One foldable node: ``name`` + opening bracket, a line per entry, closing bracket.

  ``brackets`` is the opening and closing text run together, split in half:
  ``'()'``, ``'({})'`` or ``'([])'``.
  """
  opening, closing = brackets[:len(brackets) // 2], brackets[len(brackets) // 2:]
  lines = []
  for index, (label, child_path, value) in enumerate(entries):
    if index < len(entries) - 1:  # a comma always; a space too when folded
      comma = parts.siblings(',', parts.fold_condition(collapsed=parts.text(' ')))
    else:  # the last line has a comma only when unfolded, like the text repr's layout
      comma = parts.fold_condition(expanded=parts.text(','))
    lines.append(parts.build_full_line_with_annotations(
        parts.siblings_with_annotations(label, subtree_renderer(value, path=child_path)),
        comma))
  return parts.build_foldable_tree_node_from_children(
      prefix=parts.siblings(parts.text(name), opening),
      children=lines,
      suffix=closing,
      path=path,
      background_color=color,
      first_line_annotation=parts.comment_color(parts.text(comment)) if comment else None,
  )


def mimebundle(obj: tp.Any) -> dict[str, str]:
  """The notebook output of ``obj``: treescope HTML plus the text repr as plain text.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> bundle = mimebundle(nnx.Param(jnp.ones(2)))
  >>> print(bundle['text/plain'])
  Param( # 2 (8 B)
    value=Array([1., 1.], dtype=float32)
  )
  >>> '<treescope-run-here>' in bundle['text/html']
  True
  """
  # ignore_exceptions: as in Flax, one odd attribute must not hide the whole tree.
  html = treescope.render_to_html(obj, ignore_exceptions=True, compressed=True)
  return {'text/plain': repr(obj), 'text/html': html}

