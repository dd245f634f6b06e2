"""Core -- traversals: nested dicts, flattened to ``{path: leaf}`` and back.

A State is a nested mapping, and a checkpoint is usually one too.  Many
questions about them are easier on the *flat* form, where each leaf sits
under the tuple of keys that leads to it::

  {'foo': 1, 'bar': {'a': 2}}   <->   {('foo',): 1, ('bar', 'a'): 2}

``flatten_mapping`` goes one way and ``unflatten_mapping`` the other.  An
empty nested dict has no leaf, so flattening drops it, unless
``keep_empty_nodes=True`` puts the marker ``empty_node`` in its place.  With
``sep='/'`` the paths are joined into strings, as in ``'bar/a'``.

This chapter is ``nnx.traversals`` (Flax's ``flax.nnx.traversals``): plain
dict manipulation, knowing nothing of Variables.

>>> from nnx_edu import traversals
>>> flat = traversals.flatten_mapping({'foo': 1, 'bar': {'a': 2, 'b': {}}})
>>> flat
{('foo',): 1, ('bar', 'a'): 2}
>>> traversals.unflatten_mapping(flat)
{'foo': 1, 'bar': {'a': 2}}
"""

from __future__ import annotations

import dataclasses
import typing as tp
from collections import abc

import jax

IsLeafCallable = tp.Callable[[tuple[tp.Any, ...], tp.Mapping[tp.Any, tp.Any]], bool]


@dataclasses.dataclass(frozen=True)
class _EmptyNode:
  """The marker for an empty nested dict in a flat mapping; ``empty_node`` is the one instance.

  It is a JAX pytree with no leaves, as in Flax.

  >>> from nnx_edu import traversals
  >>> traversals.flatten_mapping({'a': {}}, keep_empty_nodes=True)
  {('a',): _EmptyNode()}
  """


jax.tree_util.register_dataclass(_EmptyNode, data_fields=[], meta_fields=[])
empty_node = _EmptyNode()


def _require_mapping(xs: tp.Any, function: str) -> None:
  if not isinstance(xs, abc.Mapping):
    raise TypeError(
        f'{function} expects a mapping (a dict, a State, a FrozenDict), got '
        f'{type(xs).__name__}. Pass the nested dict itself, for example '
        f'{function}({{"a": {{"b": 1}}}}).'
    )


def flatten_mapping(xs: tp.Mapping, /, *, keep_empty_nodes: bool = False,
                    is_leaf: IsLeafCallable | None = None, sep: str | None = None) -> dict:
  """``{path: leaf}`` for every leaf of the nested mapping ``xs``, in its order.

  ``is_leaf(path, mapping)`` may stop the descent at a nested mapping, which
  then is a leaf itself.  With ``sep``, paths are joined into strings (their
  keys must be strings then).

  >>> from nnx_edu import traversals
  >>> xs = {'foo': 1, 'bar': {'a': 2, 'b': {}}}
  >>> traversals.flatten_mapping(xs, sep='/')
  {'foo': 1, 'bar/a': 2}
  >>> traversals.flatten_mapping(xs, is_leaf=lambda path, x: path == ('bar',))
  {('foo',): 1, ('bar',): {'a': 2, 'b': {}}}
  """
  _require_mapping(xs, 'flatten_mapping')
  flat = {}
  for path, leaf in _walk(xs, (), is_leaf, keep_empty_nodes):
    flat[path if sep is None else _join(path, sep)] = leaf
  return flat


def _walk(xs: tp.Any, prefix: tuple, is_leaf: IsLeafCallable | None, keep_empty: bool):
  """Yield ``(path, leaf)`` depth first; an empty mapping yields ``empty_node`` if asked."""
  if not isinstance(xs, abc.Mapping) or (is_leaf is not None and is_leaf(prefix, xs)):
    yield prefix, xs
    return
  if not xs and keep_empty and prefix:  # the whole input being empty gives {}
    yield prefix, empty_node
  for key, value in xs.items():
    yield from _walk(value, (*prefix, key), is_leaf, keep_empty)


def _join(path: tuple, sep: str) -> str:
  not_str = [key for key in path if not isinstance(key, str)]
  if not_str:
    raise TypeError(
        f'flatten_mapping(sep={sep!r}) joins the keys of each path into one string, but '
        f'the path {path} has the key {not_str[0]!r} ({type(not_str[0]).__name__}). '
        'Leave sep=None to get tuple paths.'
    )
  return sep.join(path)


def flatten_to_sequence(xs: tp.Mapping, /, *,
                        is_leaf: IsLeafCallable | None = None) -> list[tuple[tuple, tp.Any]]:
  """Like ``flatten_mapping``, but a list of ``(path, leaf)`` pairs.

  >>> from nnx_edu import traversals
  >>> traversals.flatten_to_sequence({'foo': 1, 'bar': {'a': 2, 'b': {}}})
  [(('foo',), 1), (('bar', 'a'), 2)]
  """
  _require_mapping(xs, 'flatten_to_sequence')
  return list(_walk(xs, (), is_leaf, keep_empty=False))


def unflatten_mapping(xs: tp.Mapping | tp.Iterable[tuple[tp.Any, tp.Any]], /, *,
                      sep: str | None = None) -> dict:
  """Nested dicts from ``{path: leaf}`` (or ``(path, leaf)`` pairs): the inverse of flattening.

  ``empty_node`` becomes an empty dict again.  With ``sep``, each path is a
  string split at ``sep``.

  >>> from nnx_edu import traversals
  >>> traversals.unflatten_mapping({'foo': 1, 'bar/a': 2}, sep='/')
  {'foo': 1, 'bar': {'a': 2}}
  >>> traversals.unflatten_mapping({('a',): 1, ('a', 'b'): 2})
  Traceback (most recent call last):
  ...
  TypeError: unflatten_mapping: the path ('a', 'b') goes through ('a',), which holds the leaf 1, not a dict. A path cannot lead both to a leaf and through it.
  """
  items = xs.items() if isinstance(xs, abc.Mapping) else xs
  if not isinstance(items, abc.Iterable):
    raise TypeError(
        f'unflatten_mapping expects a mapping {{path: leaf}} or (path, leaf) pairs, got '
        f'{type(xs).__name__}.'
    )
  result: dict = {}
  for path, leaf in items:
    path = _split(path, sep)
    node = result
    for depth, key in enumerate(path[:-1]):
      node = node.setdefault(key, {})
      if not isinstance(node, dict):  # Flax fails here with a TypeError too
        raise TypeError(
            f'unflatten_mapping: the path {path} goes through {path[:depth + 1]}, which '
            f'holds the leaf {node!r}, not a dict. A path cannot lead both to a leaf and '
            'through it.'
        )
    node[path[-1]] = {} if leaf is empty_node else leaf
  return result


def _split(path: tp.Any, sep: str | None) -> tuple | list:
  if sep is not None:
    if not isinstance(path, str):
      raise TypeError(
          f'unflatten_mapping(sep={sep!r}) splits string paths, got the path {path!r} '
          f'({type(path).__name__}). Leave sep=None for tuple paths.'
      )
    return path.split(sep)
  if not isinstance(path, tuple) or not path:
    hint = f' For string paths like {path!r}, pass sep=.' if isinstance(path, str) else ''
    raise TypeError(
        f'unflatten_mapping expects each path to be a non-empty tuple of keys, such as '
        f"('bar', 'a'); got {path!r} ({type(path).__name__}).{hint}"
    )
  return path
