"""Core -- Modules: the building blocks of models.

A Module is a graph node (``objects.py``) with the conveniences models need:

* ``sow`` records intermediate values as ``Intermediate`` Variables, and
  ``perturb`` adds a zero that ``nnx.grad`` can differentiate (both write
  apart from the attributes while ``nnx.capture``, in ``capture.py``, runs);
* ``train()`` / ``eval()`` flip the ``deterministic`` and
  ``use_running_average`` flags of every Dropout and BatchNorm inside;
* ``iter_modules`` / ``iter_children`` walk the sub-Modules.

``List`` and ``Dict`` are Modules that behave like a list and a dict, for
models that hold a variable number of layers.

>>> import jax.numpy as jnp
>>> import nnx_edu as nnx
>>> class MLP(nnx.Module):
...   def __init__(self, sizes, rngs):
...     self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs)
...                             for a, b in zip(sizes[:-1], sizes[1:])])
...   def __call__(self, x):
...     for layer in self.layers:
...       x = nnx.relu(layer(x))
...     return x
>>> MLP([2, 8, 1], nnx.Rngs(0))(jnp.ones((4, 2))).shape
(4, 1)
"""

from __future__ import annotations

import typing as tp

import jax
import jax.numpy as jnp

from nnx_edu.core import filters as filterlib
from nnx_edu.core.graph import iter_graph
from nnx_edu.core.graph_mode import use_graph
from nnx_edu.core.objects import Pytree
from nnx_edu.core.pytrees import structure_changed
from nnx_edu.core.variable_types import Intermediate, Perturbation, variable_type_from_name
from nnx_edu.core.variables import Variable

M = tp.TypeVar('M', bound='Module')

# While nnx.capture runs, each Module holds what it records under this
# attribute (Flax's name): a ``Captures`` List from ``capture.py``, to which
# ``sow`` and ``perturb`` hand their values.
CAPTURES = '__captures__'


def _append(recorded: tuple, value: tp.Any) -> tuple:
  return (*recorded, value)


def _empty() -> tuple:
  return ()


class Module(Pytree):
  """The base class of all layers and models.

  Set attributes in ``__init__``: Variables and sub-Modules become the
  model's State, everything else its static configuration.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> class Affine(nnx.Module):
  ...   def __init__(self, rngs):
  ...     self.w = nnx.Param(rngs.params.normal((2,)))
  ...     self.b = nnx.Param(jnp.zeros(2))
  ...   def __call__(self, x):
  ...     return x * self.w + self.b
  >>> Affine(nnx.Rngs(0))(jnp.ones(2)).shape
  (2,)
  """

  def sow(self, variable_type: type[Variable] | str, name: str, value: tp.Any,
          reduce_fn: tp.Callable[[tp.Any, tp.Any], tp.Any] = _append,
          init_fn: tp.Callable[[], tp.Any] = _empty) -> bool:
    """Record ``value`` in the Variable ``self.<name>`` of ``variable_type``.

    By default the Variable holds a tuple, and each call appends to it.
    ``variable_type`` may also be a Linen collection name such as
    ``'intermediates'``.  Under ``nnx.capture`` the value goes to the
    capture instead, and ``sow`` returns False if the capture does not
    collect ``variable_type`` (exactly that type); otherwise it returns True.
    Flax warns when ``sow`` runs outside ``nnx.capture``; nnx_edu does not.

    >>> import jax.numpy as jnp
    >>> import nnx_edu as nnx
    >>> class Model(nnx.Module):
    ...   def __call__(self, x):
    ...     self.sow(nnx.Intermediate, 'input', x)
    ...     return 2 * x
    >>> model = Model()
    >>> _ = model(jnp.ones(3)); _ = model(jnp.zeros(3))
    >>> len(model.input.value)
    2
    """
    if isinstance(variable_type, str):
      variable_type = variable_type_from_name(variable_type, base=Intermediate,
                                              allow_register=True)
    if CAPTURES in vars(self):  # inside nnx.capture: record there, not on the Module
      return vars(self)[CAPTURES].sow(variable_type, name, value, reduce_fn, init_fn)
    if hasattr(self, name):
      variable = self._recorded_variable('sow', name, variable_type, exact=True)
      variable.set_value(reduce_fn(variable.get_value(), value))
    else:
      setattr(self, name, variable_type(reduce_fn(init_fn(), value)))
    return True

  def perturb(self, name: str, value: tp.Any,
              variable_type: type[Variable] | str = Perturbation) -> tp.Any:
    """Return ``value`` plus the perturbation stored under ``name`` (zeros at first).

    The sum equals ``value``, but its gradient with respect to the
    perturbation is the gradient with respect to ``value``; use the returned
    value, or no gradient flows through it.  ``capture.py`` gives the recipe.

    >>> import nnx_edu as nnx
    >>> class Model(nnx.Module):
    ...   def __call__(self, x):
    ...     return 3 * self.perturb('x', x)
    >>> y, perturbations = nnx.capture(Model(), nnx.Perturbation)(1.0)
    >>> y, perturbations['x'].value
    (Array(3., dtype=float32, weak_type=True), Array(0., dtype=float32, weak_type=True))
    """
    if isinstance(variable_type, str):
      variable_type = variable_type_from_name(variable_type, base=Perturbation,
                                              allow_register=True)
    if CAPTURES in vars(self):
      return vars(self)[CAPTURES].perturb(variable_type, name, value)
    if hasattr(self, name):
      offset = self._recorded_variable('perturb', name, variable_type, exact=False).get_value()
    else:
      offset = jax.tree.map(jnp.zeros_like, value)
      setattr(self, name, variable_type(offset))
    return add_leaves(offset, value)

  def _recorded_variable(self, method: str, name: str, variable_type: type[Variable],
                         exact: bool) -> Variable:
    """The attribute ``name``, checked to be a Variable that ``method`` may write to."""
    current, cls = getattr(self, name), type(self).__name__
    if not isinstance(current, Variable):
      raise ValueError(  # noqa: TRY004 -- Flax raises a ValueError here
          f"Expected '{name}' to be a Variable, got {type(current).__name__}. "
          f'{cls}.{name} is a plain attribute, which {method} cannot record into: '
          f'{method} under another name, or run the model under nnx.capture, which '
          'records apart from the attributes.'
      )
    fits = (type(current) is variable_type) if exact else isinstance(current, variable_type)
    if not fits:
      raise ValueError(
          f"Expected '{name}' to be of type '{variable_type.__name__}', got "
          f"'{type(current).__name__}'. {cls}.{name} already holds a "
          f'{type(current).__name__}; {method} under another name, or pass '
          f'{type(current).__name__} as the variable type.'
      )
    return current

  def iter_modules(self) -> tp.Iterator[tuple[filterlib.Path, 'Module']]:
    """Yield ``(path, module)`` for this Module and all below it, root last.

    >>> import nnx_edu as nnx
    >>> class Pair(nnx.Module):
    ...   def __init__(self, rngs):
    ...     self.a = nnx.Linear(1, 1, rngs=rngs)
    ...     self.b = nnx.Linear(1, 1, rngs=rngs)
    >>> [path for path, _ in Pair(nnx.Rngs(0)).iter_modules()]
    [('a',), ('b',), ()]
    """
    return iter_modules(self)

  def iter_children(self) -> tp.Iterator[tuple[filterlib.Key, 'Module']]:
    """Yield ``(name, child)`` for the direct sub-Modules, sorted by name.

    >>> import nnx_edu as nnx
    >>> class Pair(nnx.Module):
    ...   def __init__(self, rngs):
    ...     self.b = nnx.Linear(1, 1, rngs=rngs)
    ...     self.a = nnx.Linear(1, 1, rngs=rngs)
    >>> [name for name, _ in Pair(nnx.Rngs(0)).iter_children()]
    ['a', 'b']
    """
    return iter_children(self)

  def set_attributes(self, *filters: filterlib.Filter, raise_if_not_found: bool = True,
                     graph: bool | None = None, **attributes: tp.Any) -> None:
    """Set ``attributes`` on every sub-Module (selected by ``filters``) that has them.

    >>> import nnx_edu as nnx
    >>> model = nnx.Sequential(nnx.Dropout(0.5), nnx.Dropout(0.1))
    >>> model.set_attributes(deterministic=True)
    >>> model.layers[0].deterministic, model.layers[1].deterministic
    (True, True)
    >>> model.set_attributes(rate=0.2, momentum=0.9)
    Traceback (most recent call last):
    ...
    ValueError: Could not find at least one instance of the following attributes: ['momentum']. No Module searched (Dropout, List, Sequential) has them: check the spelling, select other Modules, or pass raise_if_not_found=False to skip them.
    """
    use_graph(graph, 'set_attributes')  # checked; the Modules are found by a graph walk
    predicates = filterlib.to_predicates(filters or (True,))
    selected = [module for path, module in iter_modules(self)
                if any(predicate(path, module) for predicate in predicates)]
    assign_attributes(selected, attributes, raise_if_not_found=raise_if_not_found)

  def train(self: M, **attributes: tp.Any) -> None:
    """Training mode: Dropout drops and BatchNorm uses batch statistics.

    Sets ``deterministic=False`` and ``use_running_average=False`` wherever
    those attributes exist.

    >>> import nnx_edu as nnx
    >>> bn = nnx.BatchNorm(2, use_running_average=True, rngs=nnx.Rngs(0))
    >>> bn.train()
    >>> bn.use_running_average
    False
    """
    self.set_attributes(deterministic=False, use_running_average=False,
                        **attributes, raise_if_not_found=False)

  def eval(self: M, **attributes: tp.Any) -> None:
    """Inference mode: Dropout is off and BatchNorm uses its running averages.

    >>> import nnx_edu as nnx
    >>> bn = nnx.BatchNorm(2, rngs=nnx.Rngs(0))
    >>> bn.eval()
    >>> bn.use_running_average
    True
    """
    self.set_attributes(deterministic=True, use_running_average=True,
                        **attributes, raise_if_not_found=False)


def add_leaves(offset: tp.Any, value: tp.Any) -> tp.Any:
  """``offset + value`` leaf by leaf, so that a tuple of arrays is added, not concatenated.

  >>> add_leaves((1, 2), (10, 20))
  (11, 22)
  """
  return jax.tree.map(lambda a, b: a + b, offset, value)


def assign_attributes(modules: tp.Sequence[Module], attributes: dict[str, tp.Any], *,
                      raise_if_not_found: bool = True) -> None:
  """Set each of ``attributes`` on each of ``modules`` that has it.

  Raises (unless told not to) when some attribute is on none of them: a
  misspelt name would otherwise change nothing, silently.

  >>> import nnx_edu as nnx
  >>> layer = nnx.Dropout(0.5)
  >>> assign_attributes([layer], {'rate': 0.1})
  >>> layer.rate
  0.1
  """
  not_found = set(attributes)
  for module in modules:
    for name, value in attributes.items():
      if hasattr(module, name):
        setattr(module, name, value)
        not_found.discard(name)
  if not_found and raise_if_not_found:
    searched = ', '.join(sorted({type(module).__name__ for module in modules}))
    where = (f'No Module searched ({searched}) has them: check the spelling, select '
             'other Modules' if modules else 'The filters selected no Module: check them')
    raise ValueError(
        'Could not find at least one instance of the following attributes: '
        f'{sorted(not_found)}. {where}, or pass raise_if_not_found=False to skip them.'
    )


def iter_modules(module: Module) -> tp.Iterator[tuple[filterlib.Path, Module]]:
  """Yield ``(path, module)`` for ``module`` and every Module below it, root last.

  >>> import nnx_edu as nnx
  >>> [type(m).__name__ for _, m in nnx.iter_modules(nnx.Sequential(nnx.Dropout(0.1)))]
  ['Dropout', 'List', 'Sequential']
  """
  for path, value in iter_graph(module):
    if isinstance(value, Module):
      yield path, value


def iter_children(module: Module) -> tp.Iterator[tuple[filterlib.Key, Module]]:
  """Yield ``(name, child)`` for the direct sub-Modules of ``module``.

  >>> import nnx_edu as nnx
  >>> [name for name, _ in nnx.iter_children(nnx.Sequential(nnx.Dropout(0.1)))]
  ['layers']
  """
  children = module._graph_children()
  for key in sorted(children, key=filterlib.sort_key):
    if isinstance(children[key], Module):
      yield key, children[key]


class List(Module, tp.MutableSequence):
  """A Module that is a list: its items may be Modules, Variables or values.

  >>> import nnx_edu as nnx
  >>> layers = nnx.List([nnx.Linear(1, 2, rngs=nnx.Rngs(0))])
  >>> layers.append(nnx.Linear(2, 1, rngs=nnx.Rngs(0)))
  >>> [path for path in nnx.state(layers).flat_state().paths]
  [(0, 'bias'), (0, 'kernel'), (1, 'bias'), (1, 'kernel')]
  """

  _key_entry = jax.tree_util.SequenceKey  # JAX names an item by its index: ``[0]``

  def __init__(self, items: tp.Iterable[tp.Any] = ()):
    vars(self)['_items'] = list(items)

  def __getitem__(self, index):
    items = self._items[index]
    return List(items) if isinstance(index, slice) else items

  def __setitem__(self, index, value) -> None:
    self._items[index] = value
    structure_changed()

  def __delitem__(self, index) -> None:
    del self._items[index]
    structure_changed()

  def __len__(self) -> int:
    return len(self._items)

  def insert(self, index: int, value: tp.Any) -> None:
    """Insert ``value`` before ``index``, as ``list.insert`` does.

    >>> import nnx_edu as nnx
    >>> items = nnx.List([1, 3])
    >>> items.insert(1, 2)
    >>> list(items)
    [1, 2, 3]
    """
    self._items.insert(index, value)
    structure_changed()

  def _graph_children(self) -> dict[int, tp.Any]:
    return dict(enumerate(self._items))

  def _graph_restore(self, children: dict) -> None:
    vars(self)['_items'] = [children[i] for i in range(len(children))]

  def _graph_set(self, key, value) -> None:
    self._items[key] = value

  def _graph_del(self, key) -> None:
    del self._items[key]

  def _repr_attributes(self):
    return [('', item) for item in self._items]

  def _repr_layout(self) -> dict:
    return {'brackets': ('([', '])'), 'key_sep': '', 'comment': ''}


class Dict(Module, tp.MutableMapping):
  """A Module that is a dict from string keys to Modules, Variables or values.

  >>> import nnx_edu as nnx
  >>> heads = nnx.Dict(a=nnx.Linear(1, 1, rngs=nnx.Rngs(0)))
  >>> heads['b'] = nnx.Linear(1, 1, rngs=nnx.Rngs(1))
  >>> sorted(nnx.state(heads))
  ['a', 'b']
  """

  def __init__(self, *args: tp.Any, **kwargs: tp.Any):
    vars(self)['_items'] = dict(*args, **kwargs)

  def __getitem__(self, key):
    return self._items[key]

  def __setitem__(self, key, value) -> None:
    self._items[key] = value
    structure_changed()

  def __delitem__(self, key) -> None:
    del self._items[key]
    structure_changed()

  def __iter__(self):
    return iter(self._items)

  def __len__(self) -> int:
    return len(self._items)

  def __getattr__(self, name: str):
    items = vars(self).get('_items', {})
    if name in items:
      return items[name]
    raise AttributeError(f'{type(self).__name__} has no key or attribute {name!r}')

  def _graph_children(self) -> dict:
    return self._items

  def _graph_restore(self, children: dict) -> None:
    vars(self)['_items'] = dict(children)

  def _graph_set(self, key, value) -> None:
    self._items[key] = value

  def _graph_del(self, key) -> None:
    del self._items[key]

  def _repr_attributes(self):
    return [(repr(key), value) for key, value in self._items.items()]

  def _repr_layout(self) -> dict:
    return {'brackets': ('({', '})'), 'key_sep': ': ', 'comment': ''}
