"""Core -- switches for new Variables: ``var_defaults`` and eager sharding.

Two chapters on, ``variables.py`` builds ``Variable``.  Two switches decide
how a *new* Variable is made, and ``Variable.__init__`` reads them when it
makes one, so they come first, here:

* ``nnx.var_defaults()`` reports Flax's ``hijax`` and ``ref`` defaults.
  Flax can make Variables that are JAX types of their own (``hijax``) or
  that hold mutable array references (``ref``), so that plain ``jax.jit``
  can take and update them.  nnx_edu has neither: its transforms split
  Modules into arrays and write the changes back (``transforms/lifting.py``),
  which is what both features are for.  So both defaults are always False, and
  asking for True explains this.
* ``nnx.use_eager_sharding`` decides whether a Variable whose metadata has
  sharding names (``out_sharding``, which ``nnx.with_partitioning`` sets,
  ``sharding/partitioning.py``) is placed on the device mesh when it is made -- by
  ``shard_value`` below.  It is on by default, as in Flax.  With it off
  the names are only metadata, and the Variable notes that in its metadata
  (``eager_sharding=False``).

Both work like Flax's: call one to change the setting from now on, use it
in a ``with`` block to change it for the block, or as a decorator to change
it while the decorated function runs.

>>> import nnx_edu as nnx
>>> nnx.var_defaults()
VarDefaults(hijax=False, ref=False)
>>> with nnx.use_eager_sharding(False):
...   print(nnx.using_eager_sharding())
False
>>> nnx.using_eager_sharding()
True
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import typing as tp

import jax
from jax.sharding import NamedSharding, PartitionSpec

F = tp.TypeVar('F', bound=tp.Callable[..., tp.Any])

# -- hijax and ref: reported, always False ----------------------------------------
@dataclasses.dataclass(frozen=True)
class VarDefaults(tp.Mapping[str, bool]):
  """The defaults for new Variables that ``nnx.var_defaults()`` reports.

  It reads like a frozen dataclass and like a mapping.

  >>> import nnx_edu as nnx
  >>> defaults = nnx.var_defaults()
  >>> defaults.hijax, defaults['ref'], dict(defaults)
  (False, False, {'hijax': False, 'ref': False})
  """

  hijax: bool
  ref: bool

  def __getitem__(self, name: str) -> bool:
    return getattr(self, name)

  def __iter__(self) -> tp.Iterator[str]:
    return iter(field.name for field in dataclasses.fields(self))

  def __len__(self) -> int:
    return len(dataclasses.fields(self))


class VarDefaultsContext(contextlib.ContextDecorator):
  """What ``var_defaults(hijax=False, ...)`` returns: a ``with`` block or decorator.

  In nnx_edu the defaults cannot change, so it changes nothing.

  >>> import nnx_edu as nnx
  >>> @nnx.var_defaults(hijax=False)
  ... def make():
  ...   return nnx.Param(1.0)
  >>> make().value
  1.0
  """

  def __enter__(self) -> None:
    return None

  def __exit__(self, *exc_info: object) -> bool:
    return False


_NOT_HERE = {
    'hijax': 'Variables that are JAX types of their own, which plain jax.jit '
             'and jax.grad can take and update in place',
    'ref': 'Variables that hold mutable array references (jax.new_ref)',
}


def var_defaults(*, hijax: bool | None = None,
                 ref: bool | None = None) -> VarDefaults | VarDefaultsContext:
  """Report the defaults for new Variables, or set them (only to False here).

  Without arguments it returns the defaults.  With ``hijax=`` or ``ref=``
  it returns a context manager that also works as a decorator, as in Flax;
  nnx_edu has neither feature, so asking for True raises and says what to
  use instead.

  >>> import nnx_edu as nnx
  >>> nnx.var_defaults()
  VarDefaults(hijax=False, ref=False)
  >>> with nnx.var_defaults(ref=False):
  ...   nnx.var_defaults().ref
  False
  >>> nnx.var_defaults(hijax=True)
  Traceback (most recent call last):
  ...
  NotImplementedError: var_defaults(hijax=True): nnx_edu has no hijax Variables (Variables that are JAX types of their own, which plain jax.jit and jax.grad can take and update in place). Pass Modules and Variables to the nnx transforms instead (nnx.jit, nnx.grad, nnx.vmap, ...): they split them into arrays and write every change back.
  """
  if hijax is None and ref is None:
    return VarDefaults(hijax=False, ref=False)
  for name, value in (('hijax', hijax), ('ref', ref)):
    if value:
      raise NotImplementedError(
          f'var_defaults({name}=True): nnx_edu has no {name} Variables '
          f'({_NOT_HERE[name]}). Pass Modules and Variables to the nnx '
          'transforms instead (nnx.jit, nnx.grad, nnx.vmap, ...): they split '
          'them into arrays and write every change back.'
      )
  return VarDefaultsContext()


# -- eager sharding: on by default ------------------------------------------------
class Setting:
  """A switch: call it, use it in a ``with`` block, or use it as a decorator.

  Calling it changes the setting at once; in a ``with`` block the old
  setting comes back at the end; as a decorator the setting applies only
  while the decorated function runs.  ``current_value()`` reads it.  Each
  switch is a subclass that holds its setting in the class attribute
  ``now`` and may ``check`` the values it is given.  A plain class
  attribute, not a per-thread stack as in Flax: JAX traces on the calling
  thread, and a classroom does not build models from several threads.

  >>> class verbose(Setting):
  ...   now = False
  >>> with verbose(True):
  ...   print(verbose.current_value())
  True
  >>> verbose.current_value()
  False
  """

  now: tp.ClassVar[tp.Any]

  def __init__(self, value: tp.Any, /):
    cls = type(self)
    self.value = cls.check(value)
    self.previous = cls.now
    cls.now = self.value

  @classmethod
  def check(cls, value: tp.Any) -> tp.Any:
    """The value to store; subclasses refuse what makes no sense."""
    return value

  @classmethod
  def current_value(cls) -> tp.Any:
    return cls.now

  def __enter__(self) -> None:
    return None

  def __exit__(self, *exc_info: object) -> bool:
    type(self).now = self.previous
    return False

  def __call__(self, f: F) -> F:
    cls = type(self)
    cls.now = self.previous  # as a decorator: only while f runs

    @functools.wraps(f)
    def with_setting(*args: tp.Any, **kwargs: tp.Any) -> tp.Any:
      with cls(self.value):
        return f(*args, **kwargs)

    return tp.cast(F, with_setting)


class use_eager_sharding(Setting):  # a class with a function's name, as in Flax
  """Turn eager sharding of new Variables on or off (a ``Setting``).

  >>> import nnx_edu as nnx
  >>> with nnx.use_eager_sharding(False):
  ...   nnx.Param(1.0, out_sharding=('data',))   # no mesh needed: names only
  Param(
    value=1.0,
    out_sharding=('data',),
    eager_sharding=False
  )
  >>> nnx.using_eager_sharding()
  True
  """

  now = True

  @classmethod
  def check(cls, value: tp.Any) -> bool:
    return bool(value)


def using_eager_sharding() -> bool:
  """Whether new Variables with sharding names are placed on the mesh.

  >>> import nnx_edu as nnx
  >>> nnx.using_eager_sharding()
  True
  """
  return use_eager_sharding.now


# -- placing a new Variable on the mesh ----------------------------------------------
def check_rank(names: tp.Any, value: tp.Any, where: str) -> None:
  """Refuse more sharding names than the array has axes.

  Fewer are fine: JAX leaves the remaining axes uncut.

  >>> import jax.numpy as jnp
  >>> check_rank(('a', 'b', 'c'), jnp.ones((2, 3)), 'here')
  Traceback (most recent call last):
  ...
  ValueError: here: 3 sharding names ('a', 'b', 'c') for an array of shape (2, 3), which has 2 axes. Give one name (or None) per axis, e.g. ('a', 'b').
  """
  spec = names.spec if isinstance(names, NamedSharding) else tuple(names)
  shape = tuple(getattr(value, 'shape', ()))
  if len(spec) > len(shape):
    example = tuple(spec[:len(shape)])
    raise ValueError(
        f'{where}: {len(spec)} sharding names {tuple(spec)!r} for an array of '
        f'shape {shape}, which has {len(shape)} axes. Give one name (or None) '
        f'per axis, e.g. {example!r}.'
    )


def shard_value(value: tp.Any, metadata: tp.Mapping[str, tp.Any], kind: str) -> tp.Any:
  """Place the value of a new ``kind`` Variable on the mesh its ``metadata`` names.

  ``Variable.__init__`` calls this when eager sharding is on and the
  metadata has ``out_sharding``.  The mesh is the ``mesh`` metadata, or
  else the one set with ``jax.set_mesh``.

  >>> import jax, jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> mesh = jax.make_mesh((1,), ('data',))
  >>> param = nnx.Param(jnp.ones((2, 3)), out_sharding=(None, 'data'), mesh=mesh)
  >>> tuple(param.value.sharding.spec)  # a PartitionSpec, as a tuple
  (None, 'data')
  """
  names = metadata['out_sharding']
  check_rank(names, value, f'{kind}(..., out_sharding={names!r})')
  if isinstance(names, NamedSharding):
    sharding = names
  else:
    mesh = metadata.get('mesh')
    mesh = _mesh_in_context() if mesh is None else mesh
    if mesh is None:
      raise ValueError(
          f'A {kind} with out_sharding={names!r} is placed on a device mesh '
          'when it is made (eager sharding, as in Flax), but no mesh is set. '
          'Make the model inside `with jax.set_mesh(mesh):`, pass mesh=... to '
          'nnx.with_partitioning, or keep the names as metadata only with '
          '`nnx.use_eager_sharding(False)`.'
      )
    sharding = NamedSharding(mesh, PartitionSpec(*names))
  axis_types = set(sharding.mesh.axis_types)
  if axis_types == {jax.sharding.AxisType.Explicit}:
    return jax.sharding.reshard(value, sharding)
  if axis_types == {jax.sharding.AxisType.Auto}:
    return jax.lax.with_sharding_constraint(value, sharding)
  raise ValueError(
      f'Eager sharding of a {kind} needs a mesh whose axes are all Explicit or '
      f'all Auto; this one has {sharding.mesh.axis_types}.'
  )


def _mesh_in_context() -> tp.Any:
  mesh = jax.sharding.get_abstract_mesh()  # the one jax.set_mesh set, if any
  return None if mesh.empty else mesh
