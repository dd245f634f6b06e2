"""Core -- graph mode and tree mode: two ways to see a model.

A model is a graph of Python objects, and NNX can take it apart in two ways:

* **graph mode** (the default, ``graph=True``): walk the objects
  themselves, Module by Module.  A Module or Variable reached along two
  paths -- tied weights, a shared layer -- is visited once and recorded as
  shared, so ``merge`` rebuilds the sharing.  This is the full NNX:
  ``graphwalk.py`` and ``graph.py``.
* **tree mode** (``graph=False``): treat the model as the JAX pytree it is
  (``objects.py``) and let ``jax.tree_util`` flatten it.  It is quicker and
  is exactly what ``jax.jit`` sees, but a pytree is a *tree*: an object met
  twice is an error that names both paths (``treewalk.py``).

Each graph function takes ``graph=``; left out, it follows the setting of
this chapter's two switches, which work as Flax's do (call, ``with``,
decorator, ``current_value()``; ``Setting`` in ``variable_defaults.py``):

* ``nnx.set_graph_mode(True | False)`` -- graph or tree mode by default;
* ``nnx.set_graph_updates(True | False)`` -- whether the transforms write
  changes of a Module's *structure* (new attributes, swapped layers) back
  to the caller, or only new Variable values.

Both start from the environment variables ``NNX_GRAPH_MODE`` and
``NNX_GRAPH_UPDATES`` (``true``/``false``, ``1``/``0``, ...), or True.

>>> import nnx_edu as nnx
>>> nnx.set_graph_mode.current_value()
True
>>> with nnx.set_graph_mode(False):
...   print(use_graph(None))
False
>>> use_graph(True)
True
"""

from __future__ import annotations

import os
import typing as tp

from nnx_edu.core.variable_defaults import Setting

_TRUE = ('y', 'yes', 't', 'true', 'on', '1')
_FALSE = ('n', 'no', 'f', 'false', 'off', '0')


def bool_from_environment(name: str, default: bool) -> bool:
  """The switch ``name`` as set in the environment, read as Flax reads it.

  >>> bool_from_environment('NNX_EDU_UNSET_VARIABLE', True)
  True
  """
  text = os.environ.get(name, str(default)).lower()
  if text in _TRUE:
    return True
  if text in _FALSE:
    return False
  raise ValueError(
      f'The environment variable {name}={os.environ[name]!r} is not a truth value. '
      f'Set it to one of {_TRUE + _FALSE}, or unset it.'
  )


class _BoolSwitch(Setting):
  """A Setting that holds True or False and refuses anything else."""

  @classmethod
  def check(cls, value: tp.Any) -> bool:
    if not isinstance(value, bool):
      raise TypeError(
          f'nnx.{cls.__name__} takes True or False, got {value!r} '
          f'({type(value).__name__}). For example nnx.{cls.__name__}(False).'
      )
    return value


class set_graph_mode(_BoolSwitch):
  """Graph mode (True) or tree mode (False) for graph functions called without ``graph=``.

  >>> import nnx_edu as nnx
  >>> model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
  >>> with nnx.set_graph_mode(False):
  ...   graphdef, state = nnx.split(model)   # tree mode: jax.tree_util's walk
  >>> graphdef
  GraphDef(Linear, tree mode, 2 leaves)
  >>> nnx.set_graph_mode('yes')
  Traceback (most recent call last):
  ...
  TypeError: nnx.set_graph_mode takes True or False, got 'yes' (str). For example nnx.set_graph_mode(False).
  """

  now = bool_from_environment('NNX_GRAPH_MODE', True)


class set_graph_updates(_BoolSwitch):
  """Whether transforms write structural changes of Modules back (True) or only values.

  >>> import nnx_edu as nnx
  >>> @nnx.set_graph_updates(False)
  ... def inside():
  ...   return nnx.set_graph_updates.current_value()
  >>> inside(), nnx.set_graph_updates.current_value()
  (False, True)
  """

  now = bool_from_environment('NNX_GRAPH_UPDATES', True)


def use_graph(graph: bool | None, function: str = 'graph') -> bool:
  """``graph`` as given, or the current graph mode when it is None.

  >>> use_graph(None)
  True
  >>> use_graph('no', 'split')
  Traceback (most recent call last):
  ...
  TypeError: split: graph must be True, False or None (the current nnx.set_graph_mode), got 'no'.
  """
  if graph is None:
    return set_graph_mode.now
  if not isinstance(graph, bool):
    raise TypeError(
        f'{function}: graph must be True, False or None (the current '
        f'nnx.set_graph_mode), got {graph!r}.'
    )
  return graph


def tree_mode_advice(function: str) -> str:
  """What to do when tree mode refuses something: the sentence errors end with.

  >>> print(tree_mode_advice('split'))
  Tree mode (graph=False) does not support shared references: it sees a model as a JAX pytree. Either make the model a tree (one path to each object), or use graph mode: nnx.split(..., graph=True), or nnx.compat.split(...).
  """
  return (
      'Tree mode (graph=False) does not support shared references: it sees a model as a '
      'JAX pytree. '
      f'Either make the model a tree (one path to each object), or use graph mode: '
      f'nnx.{function}(..., graph=True), or nnx.compat.{function}(...).'
  )
