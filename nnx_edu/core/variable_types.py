"""Core -- the Variable types, and their names in Linen.

``variables.py`` built the ``Variable`` box.  Its subclasses say what a value is
for, and that is what filters select on:

=================  ==============================================
``Param``          learnable parameters -- what the optimizer updates
``BatchStat``      running statistics (BatchNorm's mean and var)
``Cache``          autoregressive caches of attention layers
``Intermediate``   values recorded with ``Module.sow``
``Perturbation``   zero stand-ins used to take gradients of intermediates
=================  ==============================================

Linen, Flax's older API, stored the same things in named *collections*
(``'params'``, ``'batch_stats'``, ...); the table at the end translates
between the two.  ``with_metadata`` lets an initializer attach metadata
(such as sharding names) to the Variable it fills.
"""

from __future__ import annotations

import typing as tp

import jax
import numpy as np

from nnx_edu.core.variables import MISSING, A, Variable, VariableMetadata, as_hook_tuple


def _is_numeric_leaf(x: tp.Any) -> bool:
  return isinstance(x, (jax.Array, np.ndarray, np.generic, int, float, complex,
                        jax.ShapeDtypeStruct))


class Param(Variable[A]):
  """The canonical learnable parameter; optimizers update Params.

  A Param must hold numbers (an array, a scalar, or a pytree of them),
  because gradients are taken with respect to it.

  >>> import jax.numpy as jnp
  >>> from nnx_edu import Param
  >>> Param(jnp.zeros(2))
  Param( # 2 (8 B)
    value=Array([0., 0.], dtype=float32)
  )
  """

  def _check_value(self, value: tp.Any) -> None:
    bad = [leaf for leaf in jax.tree.leaves(value) if not _is_numeric_leaf(leaf)]
    if bad:
      raise TypeError(
          f'A Param holds learnable numbers, but got {type(bad[0]).__name__} '
          f'{bad[0]!r}. Convert it with jnp.asarray(...), or use '
          'nnx.Variable(...) (or a subclass) for non-numeric state.'
      )


class BatchStat(Variable[A]):
  """Running statistics, such as BatchNorm's mean and variance.

  They are updated during training but not by the optimizer.

  >>> import jax.numpy as jnp
  >>> from nnx_edu import BatchStat
  >>> BatchStat(jnp.zeros(3)).type.__name__
  'BatchStat'
  """


class Cache(Variable[A]):
  """Autoregressive caches, such as the keys and values of attention.

  >>> import jax.numpy as jnp
  >>> from nnx_edu import Cache
  >>> Cache(jnp.array(0, dtype=jnp.uint32))
  Cache( # 1 (4 B)
    value=Array(0, dtype=uint32)
  )
  """


class Intermediate(Variable[A]):
  """Values recorded during a forward pass, usually with ``Module.sow``.

  >>> from nnx_edu import Intermediate
  >>> Intermediate((1.0,))
  Intermediate(
    value=(1.0,)
  )
  """


class Perturbation(Intermediate[A]):
  """Zero-valued stand-ins added to intermediates to take their gradients.

  >>> import jax.numpy as jnp
  >>> from nnx_edu import Perturbation
  >>> issubclass(Perturbation, Intermediate)
  True
  """


# -- Linen collection names --------------------------------------------------
# Linen (Flax's older API) keeps variables in named "collections".  This
# two-way table lets checkpoints and bridges translate between the two.
_NAME_TO_TYPE: dict[str, type[Variable]] = {}


def register_variable_name(name: str, typ: tp.Any = MISSING, *, overwrite: bool = False):
  """Pair a Linen collection name with a Variable type.

  Without ``typ`` it returns a class decorator.

  >>> from nnx_edu import Variable, register_variable_name, variable_name_from_type
  >>> @register_variable_name('counters')
  ... class Counter(Variable):
  ...   pass
  >>> variable_name_from_type(Counter)
  'counters'
  """
  if typ is MISSING:
    return lambda cls: register_variable_name(name, cls, overwrite=overwrite)
  if not overwrite and name in _NAME_TO_TYPE:
    raise ValueError(
        f'The name {name!r} is already registered for '
        f'{_NAME_TO_TYPE[name].__name__}. Pass overwrite=True to replace it.'
    )
  _NAME_TO_TYPE[name] = typ
  return typ


def variable_type_from_name(name: str, /, *, base: type[Variable] = Variable,
                            allow_register: bool = False) -> type[Variable]:
  """The Variable type of a Linen collection name.

  >>> from nnx_edu import variable_type_from_name
  >>> variable_type_from_name('params').__name__
  'Param'
  >>> variable_type_from_name('my_stats', allow_register=True).__name__
  'my_stats'
  """
  if name not in _NAME_TO_TYPE:
    if not allow_register:
      raise ValueError(
          f'No Variable type is registered for the collection name {name!r}. '
          'Register one with register_variable_name(name, type), or pass '
          'allow_register=True to create one.'
      )
    _NAME_TO_TYPE[name] = type(name, (base,), {})
  return _NAME_TO_TYPE[name]


def variable_name_from_type(typ: type[Variable], /, *, allow_register: bool = False) -> str:
  """The Linen collection name of a Variable type (inverse of the above).

  >>> from nnx_edu import BatchStat, variable_name_from_type
  >>> variable_name_from_type(BatchStat)
  'batch_stats'
  """
  for name, registered in _NAME_TO_TYPE.items():
    if registered is typ:
      return name
  if not allow_register:
    raise ValueError(
        f'{typ.__name__} has no registered collection name. Register one '
        'with register_variable_name(name, type), or pass allow_register=True '
        'to use the class name.'
    )
  register_variable_name(typ.__name__, typ)
  return typ.__name__


for _name, _type in (('params', Param), ('batch_stats', BatchStat), ('cache', Cache),
                     ('intermediates', Intermediate), ('perturbations', Perturbation)):
  register_variable_name(_name, _type)


# -- metadata through initializers ------------------------------------------
def with_metadata(initializer: tp.Callable[..., tp.Any], set_value_hooks=(),
                  get_value_hooks=(), create_value_hooks=(), add_axis_hooks=(),
                  remove_axis_hooks=(), **metadata: tp.Any):
  """Wrap an initializer so that the Variable it fills gets ``metadata``.

  >>> import jax, jax.numpy as jnp
  >>> from nnx_edu import Param, with_metadata
  >>> init = with_metadata(jax.nn.initializers.zeros, sharding=('in', 'out'))
  >>> Param(init(jax.random.key(0), (1, 2)))
  Param( # 2 (8 B)
    value=Array([[0., 0.]], dtype=float32),
    sharding=('in', 'out')
  )
  """
  hooks = tuple(map(as_hook_tuple, (set_value_hooks, get_value_hooks,
                                create_value_hooks, add_axis_hooks,
                                remove_axis_hooks)))

  def wrapped(*args: tp.Any, **kwargs: tp.Any) -> VariableMetadata:
    return VariableMetadata(initializer(*args, **kwargs), *hooks, metadata=metadata)

  return wrapped
