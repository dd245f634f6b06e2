"""Core -- capture: what a forward pass computed, and the gradients of its steps.

``Module.sow`` (``module.py``) keeps a value on the Module, as an attribute.
``nnx.capture(fn, *var_types)`` keeps the Module as it is instead: while
``fn`` runs, every Module below hands what it sows to a ``Captures`` object
held under the attribute ``CAPTURES``; afterwards ``capture`` gathers the
values into one State per Variable type, keyed by the Modules' paths, and
takes the ``Captures`` away again.

>>> import jax.numpy as jnp
>>> import nnx_edu as nnx
>>> class Block(nnx.Module):
...   def __init__(self, rngs):
...     self.linear = nnx.Linear(2, 3, rngs=rngs)
...   def __call__(self, x):
...     h = self.linear(x)
...     self.sow(nnx.Intermediate, 'features', h)
...     return h.sum()
>>> model = Block(nnx.Rngs(0))
>>> y, recorded = nnx.capture(model, nnx.Intermediate)(jnp.ones(2))
>>> recorded['features'].value[0].shape, hasattr(model, 'features')
((3,), False)

The recorded values are Variables, so they travel through ``nnx.jit``,
``nnx.grad`` and ``nnx.vmap`` like any other state.  That makes a recipe for
the gradient of a loss with respect to an *intermediate* value:
``Module.perturb`` adds a zero to it; a first run under
``capture(model, nnx.Perturbation)`` makes the zeros; differentiating a run
started with ``init=`` those zeros gives the gradients.

>>> class Scale(nnx.Module):
...   def __call__(self, x):
...     return 3 * self.perturb('x', x)
>>> model = Scale()
>>> _, zeros = nnx.capture(model, nnx.Perturbation)(1.0)
>>> def loss(model, zeros, x):
...   return nnx.capture(model, nnx.Intermediate, init=zeros)(x)
>>> (_, grads), _ = nnx.grad(loss, argnums=(0, 1), has_aux=True)(model, zeros, 1.0)
>>> grads['x'].value   # d(3x)/dx
Array(3., dtype=float32, weak_type=True)

``method_outputs=nnx.Intermediate`` also sows what each method of each
Module returns, under the method's name.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import typing as tp

import jax
import jax.numpy as jnp

from nnx_edu.core.module import CAPTURES, Module, add_leaves, iter_modules
from nnx_edu.core.objects import Pytree
from nnx_edu.core.pytrees import data
from nnx_edu.core.state import State, flat_pairs
from nnx_edu.core.state_tools import split_state
from nnx_edu.core.variables import Variable

R = tp.TypeVar('R')
RECORDS_OUTPUT = '_records_output'  # marks a method that method_outputs wrapped


class Captures(Pytree):
  """What one Module records while ``nnx.capture`` runs.

  One Variable per Variable type, each holding ``{name: value}``.  A value
  goes to the Variable of exactly the type given (as in Flax), so a
  capture of ``Intermediate`` does not collect a ``Perturbation``.

  >>> import nnx_edu as nnx
  >>> captures = Captures([nnx.Intermediate({})])
  >>> captures.sow(nnx.Intermediate, 'h', 1.0, lambda xs, x: xs + (x,), tuple)
  True
  >>> captures.sow(nnx.Perturbation, 'h', 1.0, lambda xs, x: xs + (x,), tuple)
  False
  >>> captures.stores[0].value
  {'h': (1.0,)}
  """

  def __init__(self, stores: tp.Iterable[Variable]):
    self.stores = data(tuple(stores))

  def store(self, variable_type: type[Variable]) -> Variable | None:
    """The Variable that collects ``variable_type``, or None if none does."""
    return next((v for v in self.stores if type(v) is variable_type), None)

  def sow(self, variable_type: type[Variable], name: str, value: tp.Any,
          reduce_fn: tp.Callable, init_fn: tp.Callable) -> bool:
    """``Module.sow`` under capture: True if ``variable_type`` is collected."""
    store = self.store(variable_type)
    if store is None:
      return False
    recorded = store.get_value()
    previous = recorded[name] if name in recorded else init_fn()
    store.set_value({**recorded, name: reduce_fn(previous, value)})
    return True

  def perturb(self, variable_type: type[Variable], name: str, value: tp.Any) -> tp.Any:
    """``Module.perturb`` under capture: ``value`` plus the stored perturbation."""
    store = self.store(variable_type)
    if store is None:
      return value
    recorded = store.get_value()
    if name not in recorded:
      recorded = {**recorded, name: jax.tree.map(jnp.zeros_like, value)}
      store.set_value(recorded)
    return add_leaves(recorded[name], value)


def capture(fn: tp.Callable[..., R] | type[Variable], *var_types: type[Variable],
            init: tp.Mapping | None = None,
            method_outputs: type[Variable] | None = None) -> tp.Callable:
  """Wrap ``fn`` to return ``(result, State, ...)``: what its Modules sowed, per type.

  ``fn`` is a Module (its ``__call__`` runs), a bound method of one, or a
  function whose first argument is the Module to record from.  With no
  ``var_types`` the wrapper returns the result alone; with one, ``(result,
  state)``; with more, one State per type (a type catches its subclasses
  too, the first that matches wins).  ``init`` is a State of starting
  values, usually perturbations; ``method_outputs`` sows each method's
  output.  ``capture(nnx.Intermediate)`` is a decorator.

  >>> import nnx_edu as nnx
  >>> class Model(nnx.Module):
  ...   def __call__(self, x):
  ...     self.sow(nnx.Intermediate, 'input', x)
  ...     return 2 * x
  >>> @nnx.capture(nnx.Intermediate)
  ... def forward(model, x):
  ...   return model(x)
  >>> forward(Model(), 1.0)
  (2.0, State({
    'input': Intermediate(
      value=(1.0,)
    )
  }))
  """
  if isinstance(fn, type) and issubclass(fn, Variable):
    return lambda actual: capture(actual, fn, *var_types, init=init,
                                  method_outputs=method_outputs)
  check_variable_types(var_types)
  owner = getattr(fn, '__self__', None) if inspect.ismethod(fn) else fn
  owner = owner if isinstance(owner, Module) else None

  def captured(*args: tp.Any, **kwargs: tp.Any):
    module = owner if owner is not None else first_module(fn, args)
    outer = start_capture(module, var_types, init)
    try:
      with recording_outputs(module, method_outputs):
        result = fn(*args, **kwargs)
      recorded = gather_captures(module, var_types)
    finally:  # also after an error: the Modules must not keep what was recorded
      for node, captures in outer:
        if captures is not None:  # a capture inside a capture: the outer one goes on
          setattr(node, CAPTURES, captures)
        elif CAPTURES in vars(node):
          delattr(node, CAPTURES)
    if not var_types:
      return result
    states = split_state(recorded, *var_types)
    return (result, states) if len(var_types) == 1 else (result, *states)

  return captured


def check_variable_types(var_types: tp.Sequence[tp.Any]) -> None:
  """Refuse anything but Variable types: ``capture`` collects by type.

  >>> check_variable_types(['intermediates'])
  Traceback (most recent call last):
  ...
  TypeError: nnx.capture collects Variable types, such as nnx.Intermediate, got 'intermediates' (str). For a Linen collection name, pass nnx.variable_type_from_name('intermediates').
  """
  for var_type in var_types:
    if not (isinstance(var_type, type) and issubclass(var_type, Variable)):
      hint = (f" For a Linen collection name, pass nnx.variable_type_from_name({var_type!r})."
              if isinstance(var_type, str) else '')
      raise TypeError(
          'nnx.capture collects Variable types, such as nnx.Intermediate, got '
          f'{var_type!r} ({type(var_type).__name__}).{hint}'
      )


def first_module(fn: tp.Callable, args: tuple) -> Module:
  """The Module a captured plain function records from: its first argument."""
  if args and isinstance(args[0], Module):
    return args[0]
  got = type(args[0]).__name__ if args else 'no positional argument'
  raise TypeError(
      f'nnx.capture({getattr(fn, "__name__", "fn")}) records from the Module passed as '
      f'the first argument, got {got}. Call it as captured(model, ...), or capture the '
      'Module or a bound method itself: nnx.capture(model, ...), nnx.capture(model.method, ...).'
  )


def start_capture(module: Module, var_types: tp.Sequence[type[Variable]],
                  init: tp.Mapping | None) -> list[tuple[Module, Captures | None]]:
  """Give every Module below ``module`` its ``Captures``, filled from ``init``.

  Returns each Module with the ``Captures`` of an outer capture it held, if any.

  ``init`` may hold types not in ``var_types`` (the perturbations of a
  capture of Intermediates): perturb reads them, but they are not returned.
  """
  starting = values_by_module(init)
  modules = list(iter_modules(module))  # walked first: the loop adds attributes
  outer = [(node, vars(node).get(CAPTURES)) for _, node in modules]
  for path, node in modules:
    values: dict[type[Variable], dict[str, tp.Any]] = {t: {} for t in var_types}
    for name, variable in starting.get(path, {}).items():
      values.setdefault(type(variable), {})[name] = variable.get_value()
    setattr(node, CAPTURES, Captures(t(v) for t, v in values.items()))
  return outer


def values_by_module(init: tp.Mapping | None) -> dict[tuple, dict[str, Variable]]:
  """``{module path: {name: Variable}}`` from a State like the ones capture returns.

  >>> import nnx_edu as nnx
  >>> values_by_module({'block': {'x': nnx.Perturbation(0.0)}})
  {('block',): {'x': Perturbation(
    value=0.0
  )}}
  """
  by_path: dict[tuple, dict[str, Variable]] = {}
  for path, leaf in flat_pairs(init or {}):
    if isinstance(leaf, Variable):
      by_path.setdefault(path[:-1], {})[path[-1]] = leaf
  return by_path


def gather_captures(module: Module, var_types: tp.Sequence[type[Variable]]) -> State:
  """One State of what every Module below ``module`` recorded of ``var_types``."""
  pairs = []
  for path, node in iter_modules(module):
    for store in vars(node)[CAPTURES].stores if CAPTURES in vars(node) else ():
      if type(store) in var_types:
        pairs += [((*path, name), type(store)(value)) for name, value in store.get_value().items()]
  return State.from_flat_path(pairs)


@contextlib.contextmanager
def recording_outputs(module: Module, variable_type: type[Variable] | None):
  """While inside, each method of each Module class below ``module`` sows its output.

  Only methods a class defines itself are wrapped (not inherited ones):
  public ones and ``__call__``.  The classes get their methods back on exit.
  """
  wrapped: list[tuple[type, str, tp.Any]] = []
  try:
    classes = {type(node) for _, node in iter_modules(module)} if variable_type else ()
    for cls in classes:
      for name, method in list(vars(cls).items()):
        if records_output(name, method):
          setattr(cls, name, sowing_output(method, name, variable_type))
          wrapped.append((cls, name, method))
    yield
  finally:
    for cls, name, method in wrapped:
      setattr(cls, name, method)


def records_output(name: str, method: tp.Any) -> bool:
  """Whether ``method_outputs`` wraps the class attribute ``name``.

  >>> records_output('__call__', lambda self: 1), records_output('_helper', lambda self: 1)
  (True, False)
  """
  plain_method = callable(method) and not isinstance(method, (type, staticmethod, classmethod))
  return (plain_method and (name == '__call__' or not name.startswith('_'))
          and not getattr(method, RECORDS_OUTPUT, False))  # wrapped by an outer capture


def sowing_output(method: tp.Callable, name: str, variable_type: type[Variable]) -> tp.Callable:
  """``method``, sowing what it returns as ``variable_type`` under ``name``."""
  @functools.wraps(method)
  def sowing(self, *args: tp.Any, **kwargs: tp.Any) -> tp.Any:
    output = method(self, *args, **kwargs)
    self.sow(variable_type, name, output)
    return output

  setattr(sowing, RECORDS_OUTPUT, True)
  return sowing
