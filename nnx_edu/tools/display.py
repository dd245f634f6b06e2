"""Tools -- display: showing models in a notebook.

``nnx.display(model)`` draws a model, a State or a Variable as a foldable
tree (with `treescope <https://treescope.readthedocs.io>`_) when it runs in
a notebook and treescope is installed, and prints the text repr otherwise.

The drawing code lives in ``nnx_edu.widgets`` (the folder ``widgets/``),
which is imported only here, at call time: ``import nnx_edu`` never loads
treescope or ipywidgets.  For an interactive view with filters, statistics
and before/after diffs, see ``nnx_edu.widgets.explore``.
"""

from __future__ import annotations

import importlib.util
import sys
import typing as tp


def display(*objects: tp.Any) -> None:
  """Show each object as a treescope tree in a notebook; print it elsewhere.

  In a notebook each object becomes one output holding both the treescope
  HTML and the text repr, so tools that read notebooks as text still see
  the repr.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> nnx.display(nnx.Param(jnp.ones(2)))
  Param( # 2 (8 B)
    value=Array([1., 1.], dtype=float32)
  )
  """
  if not _in_notebook():
    for obj in objects:
      print(obj)
    return
  import IPython.display

  from nnx_edu.widgets.treescope_view import mimebundle

  for obj in objects:
    IPython.display.display(mimebundle(obj), raw=True)


def _in_notebook() -> bool:
  """Whether an IPython shell is running and treescope can be imported."""
  # A running shell has imported IPython already: never import it just to ask.
  ipython = sys.modules.get('IPython')
  if ipython is None or ipython.get_ipython() is None:
    return False
  return importlib.util.find_spec('treescope') is not None
