"""Tools: looking at models, and checking exercises.

- ``text_table.py`` -- a table drawn as text, cell by cell, as Flax draws it;
- ``tabulate.py`` -- ``nnx.tabulate``: a summary table of a Module's calls;
- ``display.py`` -- ``nnx.display``: treescope in a notebook, text elsewhere;
- ``exercises.py`` -- ``check()`` for the exercise notebooks (imported by name,
  not by ``import nnx_edu``).
"""
