"""nnx_edu.widgets: seeing a model's State in a notebook.

This folder sits on top of the core chapters, which never import it.  Read
it in this order:

1. ``state_facts.py``    -- the facts shown: paths, types, sizes, totals, diffs;
2. ``treescope_view.py`` -- States, Variables and Modules as treescope trees
   (what ``nnx.display`` draws);
3. ``pictures.py``       -- a histogram or heatmap of one array, as a PNG;
4. ``explorer.py``       -- ``explore``: an ipywidgets browser with filters,
   statistics and before/after diffs.

Each part imports only what it needs (treescope, or ipywidgets and
matplotlib), so this package itself imports neither until asked:

>>> import nnx_edu as nnx
>>> from nnx_edu.widgets import explore
>>> explore(nnx.Rngs(0))
Explorer(State: 2 Variables, RngCount: 1 (4 B), RngKey: 1 (8 B))
"""

from __future__ import annotations

import typing as tp

__all__ = ['Explorer', 'explore']


def __getattr__(name: str) -> tp.Any:
  # Lazy, so that treescope_view (needed by nnx.display) works without
  # ipywidgets installed.
  if name in __all__:
    from . import explorer

    return getattr(explorer, name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
