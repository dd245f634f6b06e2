"""Core -- filters: saying which Variables you mean.

Many NNX functions take *filters*: ``nnx.state(model, nnx.Param)``,
``nnx.split(model, nnx.Param, ...)``, ``Optimizer(model, tx, wrt=nnx.Param)``.
A filter is anything that can be turned into a *predicate*, a function
``predicate(path, value) -> bool`` asked of every leaf of a State, where
``path`` is the tuple of keys leading to it, such as ``('linear', 'kernel')``.

=====================  ==============================================
filter                 selects
=====================  ==============================================
a Variable type        Variables of that type or a subclass (OfType)
a string               Variables whose ``tag`` metadata equals it (WithTag)
a callable             whatever ``f(path, value)`` says
a tuple or list        anything one of its filters selects (Any)
``...`` or ``True``    everything (Everything)
``None`` or ``False``  nothing (Nothing)
=====================  ==============================================

>>> import jax.numpy as jnp
>>> from nnx_edu import Param, BatchStat, filters
>>> is_param = filters.to_predicate(Param)
>>> is_param(('kernel',), Param(jnp.ones(2))), is_param(('mean',), BatchStat(0.0))
(True, False)
"""

from __future__ import annotations

import dataclasses
import typing as tp

Key = tp.Union[str, int]
Path = tuple[Key, ...]
Predicate = tp.Callable[[Path, tp.Any], bool]
Filter = tp.Any  # a type, str, callable, tuple/list, ..., bool or None



def sort_key(key: Key) -> tuple[bool, Key]:
  """Keys sort with ints (list indices) before strs (attribute names).

  >>> sorted(['b', 1, 'a', 0], key=sort_key)
  [0, 1, 'a', 'b']
  """
  return (isinstance(key, str), key)


def path_sort_key(path: Path) -> tuple[tuple[bool, Key], ...]:
  """Paths sort key by key, each key as ``sort_key`` orders it.

  >>> sorted([('b',), ('a', 'x'), (0,)], key=path_sort_key)
  [(0,), ('a', 'x'), ('b',)]
  """
  return tuple(map(sort_key, path))


FILTER_HELP = (
    'A filter is a Variable type (nnx.Param), a tag string, a function '
    '(path, value) -> bool, a tuple of filters, ..., True, False or None.'
)


def to_predicate(filter: Filter) -> Predicate:
  """Turn any filter into a predicate ``(path, value) -> bool``.

  >>> from nnx_edu.core.filters import to_predicate
  >>> to_predicate(...), to_predicate(None)
  (Everything(), Nothing())
  >>> to_predicate(3.5)
  Traceback (most recent call last):
  ...
  TypeError: 3.5 (a float) is not a filter. A filter is a Variable type (nnx.Param), a tag string, a function (path, value) -> bool, a tuple of filters, ..., True, False or None.
  """
  if isinstance(filter, str):
    return WithTag(filter)
  if isinstance(filter, type):
    return OfType(filter)
  if isinstance(filter, bool):
    return Everything() if filter else Nothing()
  if filter is Ellipsis:
    return Everything()
  if filter is None:
    return Nothing()
  if callable(filter):
    return filter
  if isinstance(filter, (list, tuple)):
    return Any(*filter)
  raise TypeError(f'{filter!r} (a {type(filter).__name__}) is not a filter. {FILTER_HELP}')


def to_predicates(filters: tp.Sequence[Filter]) -> tuple[Predicate, ...]:
  """Predicates for a sequence of filters, where ``...`` may only come last.

  >>> from nnx_edu import Param
  >>> from nnx_edu.core.filters import to_predicates
  >>> to_predicates([Param, ...])
  (OfType(Param), Everything())
  """
  for i, f in enumerate(filters[:-1]):
    if f is Ellipsis or f is True:
      raise ValueError(
          f'`{f!r}` matches everything, so it can only be the last filter; '
          f'it is filter {i} of {len(filters)}. Move it to the end.'
      )
  return tuple(map(to_predicate, filters))


def split_by_filters(flat: tp.Iterable[tuple[Path, tp.Any]], filters: tp.Sequence[Filter]
                     ) -> tuple[list[list[tuple[Path, tp.Any]]], list[tuple[Path, tp.Any]]]:
  """Sort ``(path, leaf)`` pairs into one group per filter, plus the rest.

  A leaf goes to the first filter that selects it, so the groups never
  overlap; ``split`` and ``State.split`` raise when the rest is not empty.

  >>> from nnx_edu import Param, BatchStat
  >>> groups, rest = split_by_filters([(('w',), Param(1.0)), (('n',), 0)], [Param, BatchStat])
  >>> [[path for path, _ in group] for group in groups], rest
  ([[('w',)], []], [(('n',), 0)])
  """
  predicates = to_predicates(filters)
  groups: list[list] = [[] for _ in predicates]
  rest = []
  for path, leaf in flat:
    for group, predicate in zip(groups, predicates):
      if predicate(path, leaf):
        group.append((path, leaf))
        break
    else:
      rest.append((path, leaf))
  return groups, rest


@dataclasses.dataclass(frozen=True)
class OfType:
  """Selects values that are instances of ``type`` (Variables by their class).

  >>> from nnx_edu import Param, Variable, filters
  >>> filters.OfType(Variable)((), Param(1.0))
  True
  """

  type: type

  def __call__(self, path: Path, value: tp.Any) -> bool:
    return isinstance(value, self.type)

  def __repr__(self) -> str:
    return f'OfType({self.type.__name__})'


@dataclasses.dataclass(frozen=True)
class WithTag:
  """Selects values whose ``tag`` equals ``tag`` (for example an Rngs stream's).

  >>> from nnx_edu import Variable, filters
  >>> filters.WithTag('params')((), Variable(1, tag='params'))
  True
  """

  tag: str

  def __call__(self, path: Path, value: tp.Any) -> bool:
    return getattr(value, 'tag', None) == self.tag


@dataclasses.dataclass(frozen=True)
class PathContains:
  """Selects values whose path contains ``key`` (or a part containing it).

  >>> from nnx_edu.core.filters import PathContains
  >>> PathContains('linear')(('linear', 'kernel'), None)
  True
  >>> PathContains('lin', exact=False)(('linear', 'kernel'), None)
  True
  """

  key: Key
  exact: bool = True

  def __call__(self, path: Path, value: tp.Any) -> bool:
    if self.exact:
      return self.key in path
    return any(str(self.key) in str(part) for part in path)

  def __repr__(self) -> str:  # as Flax prints it (e.g. in WeightNorm's repr)
    return f'PathContains({self.key!r}, exact={self.exact})'


class Any:
  """Selects what any of ``filters`` selects.

  >>> from nnx_edu import Param, BatchStat, filters
  >>> filters.Any(Param, BatchStat)((), BatchStat(1.0))
  True
  """

  def __init__(self, *filters: Filter):
    self.predicates = tuple(map(to_predicate, filters))

  def __call__(self, path: Path, value: tp.Any) -> bool:
    return any(p(path, value) for p in self.predicates)

  def __eq__(self, other: object) -> bool:
    return type(other) is type(self) and other.predicates == self.predicates

  def __hash__(self) -> int:
    return hash((type(self), self.predicates))

  def __repr__(self) -> str:
    return f'{type(self).__name__}({", ".join(map(repr, self.predicates))})'


class All(Any):
  """Selects what all of ``filters`` select.

  >>> from nnx_edu import Param, filters
  >>> filters.All(Param, filters.PathContains('bias'))(('bias',), Param(1.0))
  True
  """

  def __call__(self, path: Path, value: tp.Any) -> bool:
    return all(p(path, value) for p in self.predicates)


class Not:
  """Selects what ``filter`` does not select.

  >>> from nnx_edu import Param, BatchStat, filters
  >>> filters.Not(Param)((), BatchStat(1.0))
  True
  """

  def __init__(self, filter: Filter, /):
    self.predicate = to_predicate(filter)

  def __call__(self, path: Path, value: tp.Any) -> bool:
    return not self.predicate(path, value)

  def __eq__(self, other: object) -> bool:
    return isinstance(other, Not) and other.predicate == self.predicate

  def __hash__(self) -> int:
    return hash((Not, self.predicate))

  def __repr__(self) -> str:
    return f'Not({self.predicate!r})'


@dataclasses.dataclass(frozen=True)
class Everything:
  """Selects everything; the filter ``...`` means this.

  >>> from nnx_edu.core.filters import Everything
  >>> Everything()(('any', 'path'), 42)
  True
  """

  def __call__(self, path: Path, value: tp.Any) -> bool:
    return True


@dataclasses.dataclass(frozen=True)
class Nothing:
  """Selects nothing; the filters ``None`` and ``False`` mean this.

  >>> from nnx_edu.core.filters import Nothing
  >>> Nothing()(('any', 'path'), 42)
  False
  """

  def __call__(self, path: Path, value: tp.Any) -> bool:
    return False
