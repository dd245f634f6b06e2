"""Core -- pytrees: which attributes are data, and how a node becomes a JAX pytree.

In Flax 0.12 a Module *is* a JAX pytree: ``jax.tree.leaves(model)`` lists
its arrays, and ``jax.jit``, ``jax.grad``, ``jax.vmap`` and ``jax.tree.map``
take a Module as they take a dict.  This chapter states the rules that the
next one's ``Pytree`` class (the base of ``Module``) follows:

* **data or static.**  An attribute is *data* when its value is an array, a
  Variable, a graph node, or of a type given to ``register_data_type`` --
  or when it was marked ``nnx.data(...)``.  Everything else is *static*:
  sizes, flags, dtypes, functions, plain lists of numbers.
* **flatten.**  A node's data attributes, sorted by name, are its children
  in the pytree; JAX names them ``GetAttrKey('kernel')`` (a ``List``'s items
  ``SequenceKey(0)``), and a Variable adds ``GetAttrKey('value')``.  The
  static attributes go, with the class, into the treedef, so two models
  with the same configuration have equal treedefs.
* **unflatten.**  JAX rebuilds a node without calling ``__init__``: a new
  object gets the data attributes, then the static ones, each sorted by
  name (the order Flax's rebuilt objects print in).

>>> import jax, jax.numpy as jnp
>>> import nnx_edu as nnx
>>> layer = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
>>> [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_leaves_with_path(layer)]
['.bias.value', '.kernel.value']
>>> jax.jit(lambda layer, x: layer(x))(layer, jnp.ones(2)).shape
(3,)

A pytree carries no identity: the layer that ``jax.jit`` rebuilds inside is
a copy, so what the function changes in it is lost -- ``nnx.jit`` (in
``transforms/``) is the transform that writes changes back.
"""

from __future__ import annotations

import dataclasses
import re
import typing as tp
import weakref

import jax
import numpy as np

from nnx_edu.core.filters import Key, sort_key
from nnx_edu.core.variables import Variable

A = tp.TypeVar('A')
MISSING: tp.Any = dataclasses.MISSING  # "no value given", since None is a value

# The types whose values are data wherever they are assigned; graph nodes
# join in the next chapter, and users with register_data_type.
DATA_TYPES: list[type] = [jax.Array, np.ndarray, Variable]
_data_types = tuple(DATA_TYPES)  # what isinstance takes, kept in step with DATA_TYPES

# Flax's deprecated annotations: ``x: nnx.Data[int]`` marks ``x`` as data.
Data = tp.Annotated[A, '__data__']
Data.__doc__ = """Deprecated, as in Flax: ``x: nnx.Data[T]`` marks ``x`` as data.

Write ``x: T = nnx.data()`` instead.

>>> import nnx_edu as nnx
>>> annotation_kind(nnx.Data[int])
'__data__'
"""
Static = tp.Annotated[A, '__static__']
Static.__doc__ = """Deprecated, as in Flax: ``x: nnx.Static[T]`` marks ``x`` as static.

Write ``x: T = nnx.static()`` instead.

>>> import nnx_edu as nnx
>>> annotation_kind(nnx.Static[list])
'__static__'
"""


# -- data or static ----------------------------------------------------------------
def register_data_type(type_: type) -> type:
  """Make values of ``type_`` data wherever they are assigned (a decorator too).

  >>> import dataclasses, jax
  >>> import nnx_edu as nnx
  >>> @nnx.register_data_type
  ... @dataclasses.dataclass(frozen=True)
  ... class Scale:
  ...   value: float
  >>> class Model(nnx.Module):
  ...   def __init__(self):
  ...     self.scale = Scale(2.0)   # data, without nnx.data(...)
  >>> jax.tree.leaves(Model())
  [Scale(value=2.0)]
  """
  if not isinstance(type_, type):
    raise TypeError(f'register_data_type takes a class, got {type_!r}. Example: '
                    '`nnx.register_data_type(MyType)`, or `@nnx.register_data_type` above it.')
  global _data_types
  if type_ not in DATA_TYPES:
    DATA_TYPES.append(type_)
    _data_types = tuple(DATA_TYPES)
  return type_


def is_data(value: tp.Any, /) -> bool:
  """Whether ``value`` is data by its type alone: an array, a Variable, a graph node...

  A list or dict is never data by itself, even one holding arrays: mark it
  with ``nnx.data(...)``, or use ``nnx.List`` / ``nnx.Dict``.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> [nnx.is_data(x) for x in (jnp.ones(1), nnx.Param(1.0), nnx.Rngs(0), 42, [jnp.ones(1)])]
  [True, True, True, False, False]
  """
  return isinstance(value, _data_types)


def has_data(value: tp.Any, /) -> list[tp.Any]:
  """The data found anywhere inside ``value`` (a list, dict, tuple...), outermost first.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> nnx.has_data([1, 'a', {'w': jnp.zeros(2)}])
  [Array([0., 0.], dtype=float32)]
  >>> nnx.has_data((1, 'a'))
  []
  """
  return [leaf for leaf in jax.tree.leaves(value, is_leaf=is_data) if is_data(leaf)]


@dataclasses.dataclass(frozen=True)
class Marked:
  """A value wrapped by ``nnx.data`` or ``nnx.static`` on its way to an attribute.

  >>> import nnx_edu as nnx
  >>> nnx.static(3)
  Marked(value=3, is_data=False)
  """

  value: tp.Any
  is_data: bool


def data(value: tp.Any = MISSING, /, **field_options: tp.Any) -> tp.Any:
  """Mark an attribute as data: its arrays and Variables go to the State.

  Assign ``nnx.data(value)``; or, in the class body, declare
  ``name: type = nnx.data()`` (``field_options`` are those of
  ``dataclasses.field``, for ``nnx.dataclass``).  Needed for plain lists,
  tuples and dicts that hold Modules or Variables (or use ``nnx.List`` /
  ``nnx.Dict``), and for numbers that should be traced.

  >>> import jax
  >>> import nnx_edu as nnx
  >>> class Stack(nnx.Module):
  ...   def __init__(self, rngs):
  ...     self.layers = nnx.data([nnx.Linear(1, 1, rngs=rngs)])
  ...     self.count = nnx.data(0)
  >>> sorted(nnx.state(Stack(nnx.Rngs(0))).flat_state().paths)   # the count too
  [('count',), ('layers', 0, 'bias'), ('layers', 0, 'kernel')]
  >>> len(jax.tree.leaves(Stack(nnx.Rngs(0))))   # two arrays and the count
  3
  """
  if value is MISSING:
    return dataclasses.field(metadata={'nnx_data': True}, **field_options)
  _refuse_field_options('data', field_options)
  return Marked(value, is_data=True)


def static(value: tp.Any = MISSING, /, **field_options: tp.Any) -> tp.Any:
  """Mark an attribute as static: it goes to the GraphDef, never to the State.

  >>> import jax
  >>> import nnx_edu as nnx
  >>> class Scaled(nnx.Module):
  ...   def __init__(self):
  ...     self.scale = nnx.static(2.0)   # a setting, even if later code would trace it
  >>> len(nnx.state(Scaled())), jax.tree.leaves(Scaled())
  (0, [])
  """
  if value is MISSING:
    return dataclasses.field(metadata={'nnx_data': False}, **field_options)
  _refuse_field_options('static', field_options)
  return Marked(value, is_data=False)


def _refuse_field_options(name: str, options: dict) -> None:
  if options:
    raise TypeError(
        f'nnx.{name}(value, {", ".join(options)}=...): field options such as '
        f'{sorted(options)} are for declarations in the class body, '
        f'`x: int = nnx.{name}(default=0)`; an assignment takes the value alone.')


def class_marks(cls: type) -> dict[str, bool]:
  """What a class body declares: ``{attribute: is_data}`` from fields and annotations.

  ``x: int = nnx.data()`` and ``nnx.dataclass`` fields give a mark; so do
  Flax's deprecated ``nnx.Data[...]`` / ``nnx.Static[...]`` annotations.

  >>> import nnx_edu as nnx
  >>> class Model(nnx.Module):
  ...   count: int = nnx.data()
  ...   name: str = nnx.static(default='m')
  >>> class_marks(Model)
  {'count': True, 'name': False}
  """
  marks: dict[str, bool] = {}
  for klass in reversed(cls.__mro__):
    for name, annotation in own_annotations(klass).items():
      kind = annotation_kind(annotation)
      if kind:
        marks[name] = kind == '__data__'
    for name, value in vars(klass).items():
      if isinstance(value, dataclasses.Field) and 'nnx_data' in value.metadata:
        marks[name] = value.metadata['nnx_data']
    for name, field in vars(klass).get('__dataclass_fields__', {}).items():
      if 'nnx_data' in field.metadata:
        marks[name] = field.metadata['nnx_data']
  return marks


def own_annotations(cls: type) -> dict[str, tp.Any]:
  """The annotations written in ``cls``'s own body, evaluated where they can be.

  Under ``from __future__ import annotations`` they are strings; evaluating
  them finds ``nnx.Data[...]`` there too.

  >>> class Point:
  ...   x: 'int'
  >>> own_annotations(Point)
  {'x': <class 'int'>}
  """
  own = vars(cls).get('__annotations__', {})
  if not own:
    return {}
  try:
    hints = tp.get_type_hints(cls, include_extras=True)
  except Exception:  # a forward reference not defined yet: keep the raw annotations
    return dict(own)
  return {name: hints.get(name, annotation) for name, annotation in own.items()}


def annotation_kind(annotation: tp.Any) -> str | None:
  """``'__data__'`` for ``nnx.Data[...]``, ``'__static__'`` for ``nnx.Static[...]``, else None.

  An annotation left as a string (it named something not importable here)
  is read as text.

  >>> import nnx_edu as nnx
  >>> annotation_kind(nnx.Data[int]), annotation_kind('nnx.Static[list]'), annotation_kind(int)
  ('__data__', '__static__', None)
  """
  if isinstance(annotation, str):
    for kind, name in (('__data__', 'Data'), ('__static__', 'Static')):
      if re.search(rf'(^|\.){name}\[', annotation):
        return kind
    return None
  metadata = getattr(annotation, '__metadata__', ())
  return next((kind for kind in ('__data__', '__static__') if kind in metadata), None)


def warn_deprecated_annotations(cls: type) -> None:
  """Warn, as Flax does, for ``nnx.Data[...]`` / ``nnx.Static[...]`` in ``cls``'s body.

  >>> import warnings
  >>> import nnx_edu as nnx
  >>> with warnings.catch_warnings(record=True) as caught:
  ...   warnings.simplefilter('always')
  ...   class Model(nnx.Module):
  ...     count: nnx.Data[int]
  >>> print(caught[0].message)
  'Data' is deprecated, please replace:
  <BLANKLINE>
    some_field: nnx.Data[SomeType]
  <BLANKLINE>
  with:
  <BLANKLINE>
    some_field: SomeType = nnx.data()
  <BLANKLINE>
  <BLANKLINE>
  """
  import warnings

  for annotation in own_annotations(cls).values():
    kind = annotation_kind(annotation)
    if kind:
      name = 'Data' if kind == '__data__' else 'Static'
      warnings.warn(f"'{name}' is deprecated, please replace:\n\n"
                    f'  some_field: nnx.{name}[SomeType]\n\nwith:\n\n'
                    f'  some_field: SomeType = nnx.{name.lower()}()\n\n',
                    DeprecationWarning, stacklevel=3)


def dataclass(cls: type | None = None, /, **options: tp.Any) -> tp.Any:
  """``dataclasses.dataclass`` for a Pytree: fields say data or static with their default.

  ``options`` are ``dataclasses.dataclass``'s (``init``, ``eq``, ``kw_only``...);
  the repr stays the Pytree's.

  >>> import jax, jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> @nnx.dataclass
  ... class Point(nnx.Pytree):
  ...   xy: jax.Array
  ...   label: str = nnx.static(default='origin')
  ...   weight: float = nnx.data(default=1.0)
  >>> jax.tree.leaves(Point(jnp.zeros(2)))   # data fields, sorted by name
  [1.0, Array([0., 0.], dtype=float32)]
  """
  if cls is None:
    return lambda cls: dataclass(cls, **options)
  return dataclasses.dataclass(cls, repr=False, **options)


# -- static values in a treedef --------------------------------------------------------
def hashable(x: tp.Any) -> tp.Any:
  """A hashable stand-in for a static value (dicts and lists become tuples).

  >>> hashable({'sizes': [2, 3]})
  ('dict', (('sizes', ('list', (2, 3))),))
  """
  if isinstance(x, dict):
    return ('dict', tuple((k, hashable(v)) for k, v in x.items()))
  if isinstance(x, (list, tuple)):
    return (type(x).__name__, tuple(map(hashable, x)))
  try:
    hash(x)
    return x
  except TypeError:
    return ('id', id(x))  # unhashable and not a container: compare by identity


# A plain (not frozen) dataclass: frozen ones are about three times slower to
# create, and the graph walk creates one per static attribute.
@dataclasses.dataclass(eq=False)
class StaticValue:
  """A static value, compared and hashed by content, as JAX needs a treedef's parts.

  >>> StaticValue([1, 2]) == StaticValue([1, 2]), hash(StaticValue({'a': 1})) is not None
  (True, True)
  """

  value: tp.Any

  def __eq__(self, other: object) -> bool:
    return isinstance(other, StaticValue) and (
        self.value is other.value or hashable(self.value) == hashable(other.value))

  def __hash__(self) -> int:
    return hash(hashable(self.value))


# -- noticing structural changes ---------------------------------------------------
# nnx.jit keeps the flattened form of its arguments from one call to the next,
# and each node keeps how it flattens as a pytree.  Both stay valid while no
# graph node gains, loses or replaces an attribute, so every such change
# bumps this counter.  (A new *value* in a Variable is
# not a structural change.)
structure_version = 0


def structure_changed() -> None:
  """Note that a graph node's attributes changed: bumps ``structure_version``.

  >>> from nnx_edu.core import pytrees
  >>> before = pytrees.structure_version
  >>> pytrees.structure_changed()
  >>> pytrees.structure_version == before + 1
  True
  """
  global structure_version
  structure_version += 1


# -- a node as a JAX pytree ---------------------------------------------------------------
def data_and_static(node: tp.Any) -> tuple[list[Key], list[tuple[Key, tp.Any]]]:
  """A node's data attribute names and its static ``(name, value)`` pairs, sorted.

  >>> import nnx_edu as nnx
  >>> names, static = data_and_static(nnx.Linear(2, 3, rngs=nnx.Rngs(0)))
  >>> names, [name for name, _ in static][:3]
  (['bias', 'kernel'], ['dot_general', 'dtype', 'in_features'])
  """
  children = node._graph_children()
  marks = node._data_marks()
  names, static = [], []
  for key in sorted(children, key=sort_key):
    value = children[key]
    if marks.get(key, is_data(value)):
      names.append(key)
    else:
      static.append((key, value))
  return names, static


# id(node) -> (weak reference, structure_version, names, StaticValue): how each
# node flattened last time.  JAX flattens a Module on every jax.jit call; with
# this, the sorting and the static values' hash are worked out once per
# structure, not once per call.
_PARTS: dict[int, tuple] = {}


def pytree_parts(node: tp.Any) -> tuple[tuple[Key, ...], StaticValue]:
  """``(data attribute names, StaticValue of the static pairs)``, remembered per structure.

  >>> import nnx_edu as nnx
  >>> layer = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
  >>> pytree_parts(layer)[0], pytree_parts(layer) is pytree_parts(layer)
  (('bias', 'kernel'), True)
  """
  key = id(node)
  cached = _PARTS.get(key)
  if cached is not None and cached[0]() is node and cached[1] == structure_version:
    return cached[2]
  names, static = data_and_static(node)
  parts = (tuple(names), StaticValue(tuple(static)))
  _PARTS[key] = (weakref.ref(node, lambda _, key=key: _PARTS.pop(key, None)),
                 structure_version, parts)
  return parts


def register_as_pytree(cls: type) -> None:
  """Register the node class ``cls`` with JAX (``Pytree`` does it for every subclass).

  >>> import jax
  >>> import nnx_edu as nnx
  >>> class Pair(nnx.Pytree):   # registered when the class is made
  ...   def __init__(self):
  ...     self.a, self.b = nnx.data(1.0), 'static'
  >>> jax.tree.map(lambda x: 2 * x, Pair()).a
  2.0
  """
  def flatten_with_keys(node):
    parts = pytree_parts(node)
    children = node._graph_children()
    return [(node._key_entry(key), children[key]) for key in parts[0]], parts

  def flatten(node):
    parts = pytree_parts(node)
    children = node._graph_children()
    return [children[key] for key in parts[0]], parts

  def unflatten(aux, values):
    names, static = aux
    node = object.__new__(cls)
    node._graph_restore({**dict(zip(names, values)), **dict(static.value)})
    return node

  jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten, flatten)
