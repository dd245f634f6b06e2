"""Core -- Variables: boxes that hold a model's arrays.

A Variable wraps one value (usually a ``jax.Array``) together with a *type*
and some *metadata*.  The type says what the value is for:

* ``Param``        -- learnable parameters, what an optimizer updates;
* ``BatchStat``    -- running statistics such as BatchNorm's mean and var;
* ``Cache``        -- autoregressive caches of attention layers;
* ``Intermediate`` -- values recorded with ``Module.sow``;
* your own types   -- ``class Counter(nnx.Variable): pass``.

Filters (``filters.py``, after the Variable types) select Variables by
type, which is how one model's state is split into "what to train" and
"what to keep".

A Variable is a mutable box: layers read ``self.kernel.value`` (or
``self.kernel[...]``) and update ``self.mean.value = ...`` in place.  It is
also a JAX pytree whose single child is its value, so ``jax.tree.map`` over a
State maps the values and keeps the types:

>>> import jax, jax.numpy as jnp
>>> from nnx_edu import Param
>>> jax.tree.map(jnp.shape, Param(jnp.ones(3)))
Param(
  value=(3,)
)
"""

from __future__ import annotations

import typing as tp

import jax

from nnx_edu.core import reprs
from nnx_edu.core.array_like import ArrayLike
from nnx_edu.core.variable_defaults import shard_value, using_eager_sharding

A = tp.TypeVar('A')
Hook = tp.Callable[..., tp.Any]
HOOK_KINDS = ('set_value', 'get_value', 'create_value', 'add_axis', 'remove_axis')
MISSING = object()  # marks "no default given", since None is a valid default


class VariableMetadata(tp.NamedTuple):
  """A value plus the metadata and hooks its Variable should get.

  Initializers wrapped with ``with_metadata`` return one; a Variable built
  from it takes the value and adopts the rest.

  >>> from nnx_edu import Param, VariableMetadata
  >>> Param(VariableMetadata(1.0, metadata={'sharding': ('data',)}))
  Param(
    value=1.0,
    sharding=('data',)
  )
  """

  raw_value: tp.Any
  set_value_hooks: tuple = ()
  get_value_hooks: tuple = ()
  create_value_hooks: tuple = ()
  add_axis_hooks: tuple = ()
  remove_axis_hooks: tuple = ()
  metadata: tp.Mapping[str, tp.Any] = {}


class Variable(ArrayLike, tp.Generic[A]):
  """The base class of all Variable types; subclass it to make your own.

  Args:
    value: the value to hold, usually a ``jax.Array``.
    set_value_hooks, get_value_hooks, create_value_hooks: functions
      ``hook(variable, value) -> value`` run when the value is set, read or
      first created.
    add_axis_hooks, remove_axis_hooks: functions ``hook(variable, axis_index,
      axis_name)`` run by ``nnx.vmap`` and ``nnx.scan`` when they add or
      remove a stacked axis.
    **metadata: anything else to keep beside the value, such as sharding
      names; read it back with ``get_metadata`` or as an attribute.
      ``out_sharding`` names place the value on the device mesh unless
      ``eager_sharding=False`` is given (``variable_defaults.py``).

  >>> import jax.numpy as jnp
  >>> from nnx_edu import Variable
  >>> class Counter(Variable):
  ...   pass
  >>> count = Counter(jnp.array(0), description='steps taken')
  >>> count.value += 1
  >>> count
  Counter( # 1 (4 B)
    value=Array(1, dtype=int32, weak_type=True),
    description='steps taken'
  )
  >>> count.description
  'steps taken'
  """

  # Instance fields live in __dict__ under these names; every other attribute
  # name is metadata (see __getattr__ / __setattr__).
  _FIELDS = ('_value', '_metadata', '_hooks')

  def __init__(
      self,
      value: A,
      *,
      set_value_hooks: Hook | tp.Sequence[Hook] = (),
      get_value_hooks: Hook | tp.Sequence[Hook] = (),
      create_value_hooks: Hook | tp.Sequence[Hook] = (),
      add_axis_hooks: Hook | tp.Sequence[Hook] = (),
      remove_axis_hooks: Hook | tp.Sequence[Hook] = (),
      **metadata: tp.Any,
  ):
    if isinstance(value, Variable):
      raise TypeError(
          f'{type(self).__name__}(...) got a {type(value).__name__} as its '
          'value; a Variable cannot hold another Variable. Pass its value '
          'instead: `variable.value`.'
      )
    given = (set_value_hooks, get_value_hooks, create_value_hooks,
             add_axis_hooks, remove_axis_hooks)
    if isinstance(value, VariableMetadata):  # from a with_metadata initializer
      given = tuple(g or v for g, v in zip(given, value[1:6]))
      metadata = {**value.metadata, **metadata}
      value = value.raw_value
    if not metadata.pop('eager_sharding', using_eager_sharding()):
      metadata['eager_sharding'] = False  # made with eager sharding off
    hooks = {kind: as_hook_tuple(h) for kind, h in zip(HOOK_KINDS, given) if h}
    _init_fields(self, value, metadata, hooks)
    for hook in hooks.get('create_value', ()):
      value = hook(self, value)
    self._check_value(value)
    if metadata.get('out_sharding') and 'eager_sharding' not in metadata:
      value = shard_value(value, metadata, type(self).__name__)  # variable_defaults.py
    vars(self)['_value'] = value

  # -- the value ---------------------------------------------------------
  def _check_value(self, value: tp.Any) -> None:
    """Raise if ``value`` cannot be held; subclasses such as Param narrow it."""

  def get_value(self) -> A:
    """Return the value, after running any get-value hooks.

    >>> from nnx_edu import Variable
    >>> Variable(3).get_value()
    3
    """
    value = vars(self)['_value']
    for hook in self._hooks.get('get_value', ()):
      value = hook(self, value)
    return value

  def set_value(self, value: A) -> None:
    """Replace the value, after running any set-value hooks.

    >>> from nnx_edu import Variable
    >>> v = Variable(3)
    >>> v.set_value(4)
    >>> v.value
    4
    """
    if isinstance(value, Variable):
      value = value.get_value()
    for hook in self._hooks.get('set_value', ()):
      value = hook(self, value)
    self._check_value(value)
    vars(self)['_value'] = value

  def get_raw_value(self) -> A:
    """The stored value, without running the get-value hooks.

    >>> from nnx_edu import Variable
    >>> v = Variable(3, get_value_hooks=lambda var, value: value * 10)
    >>> v.get_value(), v.get_raw_value()
    (30, 3)
    """
    return vars(self)['_value']

  def set_raw_value(self, value: A) -> None:
    """Store ``value`` as it is: no hooks run, nothing checked.

    The graph chapters use it to put arrays back into a model.

    >>> from nnx_edu import Variable
    >>> v = Variable(3, set_value_hooks=lambda var, value: value * 10)
    >>> v.set_raw_value(4)
    >>> v.get_raw_value()
    4
    """
    vars(self)['_value'] = value

  # ``.value`` is what the documentation pages use; unlike Flax 0.12.8 it is
  # not deprecated here (see the README's table of differences).
  value = property(get_value, set_value, doc='The value held (same as get_value).')

  @property
  def type(self) -> type['Variable']:
    """The Variable's class, for example ``Param``."""
    return type(self)

  # -- metadata ----------------------------------------------------------
  def get_metadata(self, name: str | None = None, default: tp.Any = MISSING):
    """Return all metadata as a dict, or the entry ``name``.

    >>> from nnx_edu import Param
    >>> p = Param(1.0, sharding=('data',))
    >>> p.get_metadata()
    {'sharding': ('data',)}
    >>> p.get_metadata('color', 'none given')
    'none given'
    """
    if name is None:
      return dict(self._metadata)
    if name in self._metadata:
      return self._metadata[name]
    if default is MISSING:
      raise KeyError(
          f'{type(self).__name__} has no metadata {name!r}; it has '
          f'{sorted(self._metadata)}. Pass a default to get_metadata to '
          'avoid this error.'
      )
    return default

  def set_metadata(self, *args: tp.Any, **kwargs: tp.Any) -> None:
    """Set metadata in one of three ways.

    ``set_metadata({...})`` replaces all of it, ``set_metadata(name, value)``
    sets one entry, and ``set_metadata(name=value, ...)`` updates entries.

    >>> from nnx_edu import Param
    >>> p = Param(1.0)
    >>> p.set_metadata({'a': 1})
    >>> p.set_metadata('b', 2)
    >>> p.set_metadata(c=3)
    >>> p.get_metadata()
    {'a': 1, 'b': 2, 'c': 3}
    """
    if len(args) == 1 and not kwargs and isinstance(args[0], tp.Mapping):
      vars(self)['_metadata'] = dict(args[0])
    elif len(args) == 2 and not kwargs and isinstance(args[0], str):
      self._metadata[args[0]] = args[1]
    elif not args and kwargs:
      self._metadata.update(kwargs)
    else:
      raise TypeError(
          'set_metadata takes a dict, a (name, value) pair, or keyword '
          f'arguments; got {len(args)} positional and {len(kwargs)} keyword '
          'arguments. Example: `variable.set_metadata(sharding=("data",))`.'
      )

  def has_metadata(self, name: str) -> bool:
    """Whether the metadata entry ``name`` exists.

    >>> from nnx_edu import Param
    >>> Param(1.0, tag='x').has_metadata('tag')
    True
    """
    return name in self._metadata

  def del_metadata(self, name: str) -> None:
    """Delete the metadata entry ``name``.

    >>> from nnx_edu import Param
    >>> p = Param(1.0, tag='x')
    >>> p.del_metadata('tag')
    >>> p.get_metadata()
    {}
    """
    del self._metadata[name]

  def __getattr__(self, name: str) -> tp.Any:
    # Only reached when normal lookup fails: metadata, then the value's own
    # attributes, so that ``param.shape`` and ``param.dtype`` work.
    if name.startswith('__') or name in Variable._FIELDS:
      raise AttributeError(name)
    metadata = vars(self).get('_metadata', {})
    if name in metadata:
      return metadata[name]
    return getattr(vars(self)['_value'], name)

  def __setattr__(self, name: str, value: tp.Any) -> None:
    if name == 'value' or name in Variable._FIELDS:
      object.__setattr__(self, name, value)
    else:
      self._metadata[name] = value

  def replace(self, value: tp.Any = MISSING, **metadata: tp.Any) -> 'Variable':
    """A new Variable of the same type, with a new value and/or metadata.

    >>> from nnx_edu import Param
    >>> Param(1.0, tag='x').replace(2.0)
    Param(
      value=2.0,
      tag='x'
    )
    """
    new = rebuild_variable(
        type(self),
        vars(self)['_value'] if value is MISSING else value,
        {**self._metadata, **metadata},
        self._hooks,
    )
    return new

  def add_axis(self, axis_index: int, axis_name: tp.Any) -> None:
    """Run the add-axis hooks (called by ``nnx.vmap`` / ``nnx.scan``).

    >>> from nnx_edu import Variable
    >>> v = Variable(0.0, add_axis_hooks=lambda var, i, name: print('axis', i, name))
    >>> v.add_axis(0, 'layers')
    axis 0 layers
    """
    for hook in self._hooks.get('add_axis', ()):
      hook(self, axis_index, axis_name)

  def remove_axis(self, axis_index: int, axis_name: tp.Any) -> None:
    """Run the remove-axis hooks (called by ``nnx.vmap`` / ``nnx.scan``).

    >>> from nnx_edu import Variable
    >>> v = Variable(0.0, remove_axis_hooks=lambda var, i, name: print('removed', i))
    >>> v.remove_axis(0, 'layers')
    removed 0
    """
    for hook in self._hooks.get('remove_axis', ()):
      hook(self, axis_index, axis_name)

  # -- printing ----------------------------------------------------------
  def __repr__(self) -> str:
    value = vars(self)['_value']
    size = reprs.SizeBytes.of(value)
    return reprs.render(
        type(self).__name__,
        [('value', value), *self._metadata.items()],
        comment=f' # {size}' if size else '',
    )

  def __treescope_repr__(self, path, subtree_renderer):
    # The notebook display lives in nnx_edu.widgets; imported only when asked.
    from nnx_edu.widgets import treescope_view

    return treescope_view.render_variable(self, path, subtree_renderer)

  def __copy__(self) -> 'Variable':
    return rebuild_variable(type(self), vars(self)['_value'], self._metadata, self._hooks)

  def __deepcopy__(self, memo: dict) -> 'Variable':
    import copy

    return rebuild_variable(
        type(self),
        copy.deepcopy(vars(self)['_value'], memo),
        copy.deepcopy(self._metadata, memo),
        self._hooks,
    )

  # Every Variable type is its own pytree node: registered once per class.
  def __init_subclass__(cls, **kwargs: tp.Any) -> None:
    super().__init_subclass__(**kwargs)
    _register_pytree(cls)


def as_hook_tuple(hooks: Hook | tp.Sequence[Hook]) -> tuple[Hook, ...]:
  """One hook or several, as a tuple of hooks.

  >>> as_hook_tuple(print)
  (<built-in function print>,)
  """
  return (hooks,) if callable(hooks) else tuple(hooks)


def _init_fields(var: Variable, value: tp.Any, metadata: dict, hooks: dict) -> None:
  fields = vars(var)
  fields['_value'] = value
  fields['_metadata'] = dict(metadata)
  fields['_hooks'] = hooks


def rebuild_variable(cls: type[Variable], value: tp.Any, metadata: dict, hooks: dict) -> Variable:
  """Build a Variable without ``__init__``: no hooks run, no checks made.

  JAX rebuilds pytrees with placeholder leaves (shapes, tracers, ``None``),
  which ``__init__`` would rightly reject.

  >>> from nnx_edu import Param
  >>> rebuild_variable(Param, None, {'tag': 'x'}, {}).get_metadata()
  {'tag': 'x'}
  """
  var = object.__new__(cls)
  _init_fields(var, value, metadata, hooks)
  return var


def metadata_and_hooks(var: Variable) -> tuple[dict, dict]:
  """A Variable's metadata and hooks, the dicts themselves: what a GraphDef records.

  >>> from nnx_edu import Param
  >>> metadata_and_hooks(Param(1.0, tag='x'))
  ({'tag': 'x'}, {})
  """
  fields = vars(var)
  return fields['_metadata'], fields['_hooks']


def _register_pytree(cls: type[Variable]) -> None:
  def static_part(var):
    # metadata sorted by name, as in Flax: equal metadata give equal treedefs
    metadata = tuple(sorted(var._metadata.items(), key=lambda item: item[0]))
    return metadata, tuple(var._hooks.items())

  def flatten_with_keys(var):
    return ((jax.tree_util.GetAttrKey('value'), vars(var)['_value']),), static_part(var)

  def unflatten(aux, children):
    metadata, hooks = aux
    return rebuild_variable(cls, children[0], dict(metadata), dict(hooks))

  def flatten(var):
    return (vars(var)['_value'],), static_part(var)

  jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten, flatten)


_register_pytree(Variable)


def __getattr__(name: str) -> tp.Any:
  # VariableState was removed in Flax 0.11; like Flax we keep the name as a
  # deprecated alias so that older code keeps running.
  if name == 'VariableState':
    import warnings

    warnings.warn(
        "'VariableState' was removed: States now hold Variables directly. "
        "Use 'Variable' instead.",
        DeprecationWarning,
        stacklevel=2,
    )
    return Variable
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
