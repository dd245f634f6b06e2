"""Core -- views: the same model in another mode, without changing the original.

``model.train()`` and ``model.eval()`` (``module.py``) flip flags *in place*.
A view is a new graph that shares the model's Variables -- the same arrays,
so training one trains the other -- but has its own Modules, and so its own
flags:

* ``nnx.view(model, deterministic=True)`` -- each Module that defines a
  ``set_view`` method gets the keyword arguments it names (Dropout takes
  ``deterministic``, BatchNorm ``use_running_average``, MultiHeadAttention
  also ``decode``...);
* ``nnx.with_attributes(model, name=value)`` -- plain attribute assignment
  on every Module that has the attribute;
* ``nnx.view_info(model)`` -- what ``view`` accepts, read from the
  ``set_view`` methods' signatures and docstrings;
* ``nnx.with_vars(model)`` -- the Variables in another kind (Flax's hijax or
  ref Variables, which nnx_edu does not have).

All are ``recursive_map`` (``graph_tools.py``) with a function that changes
the copied Modules.

>>> import jax.numpy as jnp
>>> import nnx_edu as nnx
>>> model = nnx.Sequential(nnx.Linear(2, 2, rngs=nnx.Rngs(0)), nnx.Dropout(0.5, rngs=nnx.Rngs(1)))
>>> evaluation = nnx.view(model, deterministic=True)
>>> evaluation.layers[1].deterministic, model.layers[1].deterministic
(True, False)
>>> evaluation.layers[0].kernel is model.layers[0].kernel
True

Writing ``set_view``: give every argument a default of ``None`` (meaning
"leave as it is") and document it in a Google-style ``Args:`` section;
``view_info`` prints that section.
"""

from __future__ import annotations

import inspect
import typing as tp
import warnings

import jax

from nnx_edu.core import filters as filterlib
from nnx_edu.core.graph import iter_graph
from nnx_edu.core.graph_tools import map, recursive_map
from nnx_edu.core.graph_mode import use_graph
from nnx_edu.core.module import Module, assign_attributes
from nnx_edu.core.variables import A, Variable

# ``*args`` and ``**kwargs`` of a set_view: catch-alls, not options to describe.
SKIPPED_PARAMETER_KINDS = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def map_nodes(f: tp.Callable[[filterlib.Path, tp.Any], None], node: A,
              graph: bool | None) -> A:
  """A copy of ``node`` sharing its Variables, after ``f(path, value)`` saw each value.

  ``f`` sees the copy's values, children before their parent, and may
  change the copied Modules in place.

  >>> import nnx_edu as nnx
  >>> seen = []
  >>> _ = map_nodes(lambda path, value: seen.append(path), nnx.Dropout(0.1), None)
  >>> seen[-1]
  ()
  """
  def visit(path: filterlib.Path, value: tp.Any) -> tp.Any:
    f(path, value)
    return value  # the copy's own node, as f left it

  if use_graph(graph, 'view'):
    return recursive_map(visit, node)
  # recursive_map has no tree mode yet (graph_tools.py): a JAX pytree copy, which (as Flax's tree mode) puts the data attributes first.
  copy = jax.tree.map(lambda leaf: leaf, node, is_leaf=lambda x: isinstance(x, Variable))
  for path, value in iter_graph(copy):
    f(path, value)
  return copy


# -- view ---------------------------------------------------------------------------
def view(node: A, /, *, only: filterlib.Filter = ..., raise_if_not_found: bool = True,
         graph: bool | None = None, **kwargs: tp.Any) -> A:
  """A copy of ``node`` whose Modules' ``set_view`` methods got ``kwargs``.

  Each selected Module (``only``) with a ``set_view`` method gets the
  arguments its signature names (all of them if it takes ``**kwargs``).
  The copy shares the Variables of ``node``, which is left as it was.  An
  argument that no ``set_view`` takes raises, unless ``raise_if_not_found``
  is False.

  >>> import nnx_edu as nnx
  >>> class Block(nnx.Module):
  ...   def __init__(self, rngs):
  ...     self.dropout = nnx.Dropout(0.5, rngs=rngs)
  ...     self.norm = nnx.BatchNorm(2, rngs=rngs)
  >>> block = Block(nnx.Rngs(0))
  >>> frozen = nnx.view(block, only=nnx.BatchNorm, use_running_average=True)
  >>> frozen.norm.use_running_average, block.norm.use_running_average
  (True, False)
  >>> nnx.view(block, determinstic=True)
  Traceback (most recent call last):
  ...
  ValueError: Unused keys found in nnx.view: ['determinstic']. The set_view methods of the Modules searched take: BatchNorm(use_running_average), Dropout(deterministic). Check the spelling (nnx.view_info(node) describes each argument), or pass raise_if_not_found=False.
  """
  predicate = filterlib.to_predicate(only)
  unused = set(kwargs)
  accepted: dict[type, set[str] | None] = {}  # class -> the names its set_view takes

  def set_view(path: filterlib.Path, value: tp.Any) -> None:
    if hasattr(value, 'set_view') and predicate(path, value):
      names = set_view_names(value.set_view)
      value.set_view(**{k: v for k, v in kwargs.items() if names is None or k in names})
      unused.difference_update(kwargs if names is None else names)
      accepted[type(value)] = names

  out = map_nodes(set_view, node, graph)
  if unused and raise_if_not_found:
    raise ValueError(unused_keys_message(unused, accepted))
  return out


def set_view_names(method: tp.Callable) -> set[str] | None:
  """The keyword arguments ``method`` takes by name; None if it takes ``**kwargs``.

  >>> import nnx_edu as nnx
  >>> set_view_names(nnx.Dropout(0.1).set_view)
  {'deterministic'}
  """
  parameters = inspect.signature(method).parameters.values()
  if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
    return None
  return {p.name for p in parameters
          if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}


def unused_keys_message(unused: set[str], accepted: dict[type, set[str] | None]) -> str:
  """Flax's sentence, then what the ``set_view`` methods searched do take."""
  message = f'Unused keys found in nnx.view: {sorted(unused)}.'
  if not accepted:
    return (f'{message} None of the Modules searched has a set_view method; to set plain '
            'attributes, use nnx.with_attributes, or pass raise_if_not_found=False.')
  takes = ', '.join(f'{cls.__qualname__}({", ".join(sorted(names))})'
                    for cls, names in sorted(accepted.items(), key=lambda item: item[0].__qualname__))
  return (f'{message} The set_view methods of the Modules searched take: {takes}. Check the '
          'spelling (nnx.view_info(node) describes each argument), or pass '
          'raise_if_not_found=False.')


# -- with_attributes ------------------------------------------------------------------
def with_attributes(node: A, /, *, only: filterlib.Filter = ..., raise_if_not_found: bool = True,
                    graph: bool | None = None, **attributes: tp.Any) -> A:
  """A copy of ``node`` with ``attributes`` set on each selected Module that has them.

  ``set_attributes`` without changing ``node``: the copy shares its Variables.

  >>> import nnx_edu as nnx
  >>> model = nnx.Sequential(nnx.Dropout(0.5), nnx.BatchNorm(2, rngs=nnx.Rngs(0)))
  >>> new = nnx.with_attributes(model, only=nnx.Dropout, rate=0.1)
  >>> new.layers[0].rate, model.layers[0].rate
  (0.1, 0.5)
  >>> new.layers[1].mean is model.layers[1].mean
  True
  """
  predicate = filterlib.to_predicate(only)
  selected: list[Module] = []

  def select(path: filterlib.Path, value: tp.Any) -> None:
    if isinstance(value, Module) and predicate(path, value):
      selected.append(value)

  out = map_nodes(select, node, graph)
  assign_attributes(selected, attributes, raise_if_not_found=raise_if_not_found)
  return out


# -- view_info ------------------------------------------------------------------------
def view_info(node: Module, /, *, only: filterlib.Filter = ..., graph: bool | None = None) -> str:
  """What ``nnx.view`` accepts for ``node``: each class's ``set_view`` arguments, documented.

  Classes come sorted by name.  Each argument is given as in the signature,
  followed by its description from the docstring's ``Args:`` section; a
  ``set_view`` without a docstring is shown by its signature.

  >>> import nnx_edu as nnx
  >>> model = nnx.Sequential(nnx.Dropout(0.5), nnx.BatchNorm(2, rngs=nnx.Rngs(0)))
  >>> print(nnx.view_info(model))
  BatchNorm:
    use_running_average: bool | None = None
      if True, the stored batch statistics will be
      used instead of computing the batch statistics on the input.
  Dropout:
    deterministic: bool | None = None
      if True, disables dropout masking.
  """
  predicate = filterlib.to_predicate(only)
  classes: set[type] = set()

  def collect(path: filterlib.Path, value: tp.Any) -> None:
    if hasattr(value, 'set_view') and predicate(path, value):
      classes.add(type(value))

  map_nodes(collect, node, graph)
  lines = []
  for cls in sorted(classes, key=lambda cls: cls.__qualname__):
    lines += [f'{cls.__qualname__}:', *set_view_lines(cls.set_view)]
  return '\n'.join(lines)


def set_view_lines(method: tp.Callable) -> list[str]:
  """The lines ``view_info`` prints for one ``set_view`` method."""
  signature, doc = inspect.signature(method), inspect.getdoc(method)
  if doc is None or 'Args:\n' not in doc:
    return [f'  set_view{signature}']
  described = docstring_args(doc)
  lines = []
  for name, parameter in signature.parameters.items():
    if name == 'self' or parameter.kind in SKIPPED_PARAMETER_KINDS:
      continue
    default = '' if parameter.default is inspect.Parameter.empty else f' = {parameter.default}'
    # As Flax prints it: the annotation as written (a string, under
    # ``from __future__ import annotations``), the default by str().
    lines.append(f'  {name}: {parameter.annotation}{default}')
    if name in described:
      lines.append(described[name])
  return lines


def docstring_args(doc: str) -> dict[str, str]:
  """``{argument: description}`` from the ``Args:`` section of a Google-style docstring.

  An argument's line is indented by two spaces; its description starts
  after the colon and goes on over the lines indented further.  Each
  description comes back indented by four spaces, as ``view_info`` prints it.

  >>> doc = '''Set the mode.
  ...
  ... Args:
  ...   train: if True,
  ...     the layer trains.
  ...   rate: the rate.
  ...
  ... Returns:
  ...   nothing.'''
  >>> docstring_args(doc)
  {'train': '    if True,\\n    the layer trains.', 'rate': '    the rate.'}
  """
  section = doc[doc.index('Args:\n') + len('Args:\n'):]
  described: dict[str, list[str]] = {}
  for line in section.split('\n'):
    if line and not line.startswith(' '):
      break  # the next section (Returns:, Raises:, ...)
    if line.startswith('  ') and not line.startswith('    '):
      name, _, first = line.partition(':')
      described[name.strip()] = ['    ' + first.strip()]
    elif described:
      described[next(reversed(described))].append(line)
  return {name: '\n'.join(lines).rstrip('\n') for name, lines in described.items()}


# -- with_vars --------------------------------------------------------------------------
def with_vars(node: A, /, *, hijax: bool | None = None, ref: bool | None = None,
              mutable: bool | None = None, only: filterlib.Filter = ...,
              allow_duplicates: bool = False) -> A:
  """A copy of ``node`` with its Variables turned into another kind, where they differ.

  Flax turns Variables into hijax Variables (JAX types of their own) or
  ref Variables (holding mutable array references).  nnx_edu has neither:
  every Variable is already ``hijax=False, ref=False``, so those work and
  return a copy that shares all the Variables; asking for True, or for
  ``mutable`` (a property of hijax Variables), raises.  ``only`` and
  ``allow_duplicates`` concern Variables that would change, so here none.

  >>> import nnx_edu as nnx
  >>> model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
  >>> nnx.with_vars(model, ref=False).kernel is model.kernel
  True
  >>> nnx.with_vars(model, ref=True)
  Traceback (most recent call last):
  ...
  NotImplementedError: with_vars(ref=True): nnx_edu has no ref Variables (Variables holding mutable array references). Its Variables are all hijax=False, ref=False; pass Modules to the nnx transforms (nnx.jit, nnx.grad, ...), which write every change back.
  """
  del only, allow_duplicates  # they select among Variables that change; none can here
  kinds = {'hijax': 'hijax Variables (Variables that are JAX types of their own)',
           'ref': 'ref Variables (Variables holding mutable array references)',
           'mutable': 'hijax Variables, the only ones mutable= applies to'}
  for name, value in (('hijax', hijax), ('ref', ref), ('mutable', mutable)):
    if value or (name == 'mutable' and value is not None):
      raise NotImplementedError(
          f'with_vars({name}={value}): nnx_edu has no {kinds[name]}. Its Variables are all '
          'hijax=False, ref=False; pass Modules to the nnx transforms (nnx.jit, nnx.grad, '
          '...), which write every change back.'
      )
  return map(lambda path, variable: variable, node)


def vars_as(node: A, /, **options: tp.Any) -> A:
  """Deprecated, as in Flax: the old name of ``with_vars``.

  >>> import warnings
  >>> import nnx_edu as nnx
  >>> with warnings.catch_warnings(record=True) as caught:
  ...   warnings.simplefilter('always')
  ...   copy = nnx.vars_as(nnx.Linear(1, 1, rngs=nnx.Rngs(0)))
  >>> type(copy).__name__, str(caught[0].message)
  ('Linear', 'This function is deprecated. Use with_vars instead.')
  """
  warnings.warn('This function is deprecated. Use with_vars instead.', DeprecationWarning,
                stacklevel=2)
  return with_vars(node, **options)
