"""Core -- Rngs: where random keys come from.

JAX random functions need an explicit key, and using a key twice gives the
same numbers twice.  ``Rngs`` hands out a fresh key on every call, from
named *streams*:

>>> import nnx_edu as nnx
>>> rngs = nnx.Rngs(0, dropout=1)
>>> key_a = rngs.params()     # no 'params' stream: falls back to 'default'
>>> key_b = rngs.dropout()    # the 'dropout' stream
>>> int(rngs.default.count.value), int(rngs.dropout.count.value)
(1, 1)

Each stream keeps a root ``key`` and a ``count``; the n-th key it gives out
is ``jax.random.fold_in(key, n)``.  Both are Variables (``RngKey`` and
``RngCount``, subclasses of ``RngState``), so they live in the model's State
and a stream's count advances through ``nnx.jit`` like any other state.
These are the exact keys Flax derives, so the same seed gives the same
parameters in both libraries.
"""

from __future__ import annotations

import typing as tp

import jax
import jax.numpy as jnp
import numpy as np

from nnx_edu.core import filters as filterlib
from nnx_edu.core.objects import Pytree
from nnx_edu.core.variables import Variable

RngSeed = tp.Union[int, jax.Array, 'RngStream']

# The jax.random samplers that streams (and Rngs, through 'default') offer as
# methods, each with the arguments of its docstring example and the shape that
# example returns: ``rngs.normal((2,))`` is ``jax.random.normal(rngs(), (2,))``.
RANDOM_FUNCTIONS = {
    'bits': ('(2,)', '(2,)'), 'uniform': ('(2,)', '(2,)'), 'normal': ('(2,)', '(2,)'),
    'truncated_normal': ('-1.0, 1.0, (2,)', '(2,)'), 'bernoulli': ('0.5, (2,)', '(2,)'),
    'randint': ('(2,), 0, 10', '(2,)'), 'permutation': ('4', '(4,)'),
    'choice': ('4, (2,)', '(2,)'), 'categorical': ('jnp.zeros(3), shape=(2,)', '(2,)'),
    'gumbel': ('(2,)', '(2,)'), 'exponential': ('(2,)', '(2,)'), 'laplace': ('(2,)', '(2,)'),
    'logistic': ('(2,)', '(2,)'), 'cauchy': ('(2,)', '(2,)'), 'orthogonal': ('3', '(3, 3)'),
    'multivariate_normal': ('jnp.zeros(2), jnp.eye(2)', '(2,)'),
}


class RngState(Variable):
  """The base type of the Variables that hold random-number state.

  >>> import nnx_edu as nnx
  >>> len(nnx.state(nnx.Rngs(0), nnx.RngState).flat_state())
  2
  """


class RngKey(RngState):
  """The root key of a stream.

  >>> import nnx_edu as nnx
  >>> type(nnx.Rngs(0).default.key).__name__
  'RngKey'
  """


class RngCount(RngState):
  """How many keys a stream has handed out.

  >>> import nnx_edu as nnx
  >>> rngs = nnx.Rngs(0); _ = rngs()
  >>> rngs.default.count.value
  Array(1, dtype=uint32)
  """


def as_key(seed: tp.Any, tag: str) -> jax.Array:
  """A typed PRNG key from an int seed, a key, or raw uint32 key data."""
  if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
    return jax.random.key(seed)
  if isinstance(seed, (jax.Array, np.ndarray)):
    if jnp.issubdtype(seed.dtype, jax.dtypes.prng_key):
      return seed
    if seed.dtype == jnp.uint32 and seed.shape[-1:] == (2,):  # jax.random.PRNGKey
      return jax.random.wrap_key_data(seed)
    if seed.shape == () and jnp.issubdtype(seed.dtype, jnp.integer):
      return jax.random.key(seed)
  raise TypeError(
      f"Rngs: the seed of stream '{tag}' must be an int or a jax.random.key, "
      f'got {type(seed).__name__} {seed!r}. Example: nnx.Rngs(0) or '
      'nnx.Rngs(params=0, dropout=jax.random.key(1)).'
  )


class RngStream(Pytree):
  """One named stream of keys: call it for the next key.

  >>> import nnx_edu as nnx
  >>> stream = nnx.RngStream(0, tag='params')
  >>> stream().dtype
  key<fry>
  >>> stream.normal((2,)).shape   # samplers draw from the next key
  (2,)
  """

  def __init__(self, key: RngSeed, *, tag: str):
    key = as_key(key, tag)
    self.tag = tag
    self.key = RngKey(key, tag=tag)
    self.count = RngCount(jnp.zeros(key.shape, dtype=jnp.uint32), tag=tag)

  def __call__(self) -> jax.Array:
    key = jax.random.fold_in(self.key.value, self.count.value)
    self.count.value = self.count.value + 1
    return key

  def fork(self) -> 'RngStream':
    """A new, independent stream seeded by this stream's next key.

    >>> import nnx_edu as nnx
    >>> stream = nnx.RngStream(0, tag='dropout')
    >>> child = stream.fork()
    >>> bool((jax.random.key_data(child()) != jax.random.key_data(stream())).any())
    True
    """
    return type(self)(self(), tag=self.tag)

  def split(self, k: int | tuple[int, ...]) -> 'RngStream':
    """A stream of ``k`` keys at once (for ``nnx.vmap`` over a stack of layers).

    >>> import nnx_edu as nnx
    >>> nnx.RngStream(0, tag='params').split(3).key.value.shape
    (3,)
    """
    return type(self)(jax.random.split(self(), k), tag=self.tag)


class Rngs(Pytree):
  """Named RNG streams; missing names fall back to ``default``.

  Args:
    default: seed of the ``default`` stream (an int or a key), or a mapping
      of stream names to seeds.
    **rngs: seeds of other streams, such as ``params=0, dropout=1``.

  >>> import nnx_edu as nnx
  >>> rngs = nnx.Rngs(params=0, dropout=1)
  >>> sorted(rngs)
  ['dropout', 'params']
  >>> nnx.Rngs(0.5)
  Traceback (most recent call last):
  ...
  TypeError: Rngs: the seed of stream 'default' must be an int or a jax.random.key, got float 0.5. Example: nnx.Rngs(0) or nnx.Rngs(params=0, dropout=jax.random.key(1)).
  """

  def __init__(self, default: RngSeed | tp.Mapping[str, RngSeed] | None = None,
               **rngs: RngSeed):
    if isinstance(default, tp.Mapping):
      rngs = {**default, **rngs}
    elif default is not None:
      rngs['default'] = default
    for tag, seed in rngs.items():
      if isinstance(seed, RngStream):
        seed = seed.key.value
      setattr(self, tag, RngStream(seed, tag=tag))

  def _stream(self, name: str, error: type[Exception]) -> RngStream:
    streams = vars(self)
    if name in streams:
      return streams[name]
    if 'default' in streams:
      return streams['default']
    raise error(
        f"Rngs has no stream {name!r} and no 'default' stream to fall back on; "
        f'its streams are {sorted(streams)}. Create it with nnx.Rngs({name}=0) '
        'or give a default seed: nnx.Rngs(0).'
    )

  def __getattr__(self, name: str) -> RngStream:
    if name.startswith('_'):
      raise AttributeError(name)
    return self._stream(name, AttributeError)

  def __getitem__(self, name: str) -> RngStream:
    return self._stream(name, KeyError)

  def __call__(self) -> jax.Array:
    return self._stream('default', AttributeError)()

  def __iter__(self) -> tp.Iterator[str]:
    return (name for name, _ in self.items())

  def __len__(self) -> int:
    return sum(1 for _ in self.items())

  def __contains__(self, name: object) -> bool:
    return name in vars(self)

  def items(self) -> tp.Iterator[tuple[str, RngStream]]:
    """``(name, stream)`` pairs.

    >>> import nnx_edu as nnx
    >>> [name for name, _ in nnx.Rngs(0, params=1).items()]
    ['params', 'default']
    """
    return ((n, s) for n, s in vars(self).items() if isinstance(s, RngStream))

  def fork(self, *, split: tp.Any = None) -> 'Rngs':
    """New, independent streams, each seeded from the matching stream here.

    ``split`` (an int, a shape, or a mapping from filters to those) makes
    the selected streams hand out that many keys at once.

    >>> import nnx_edu as nnx
    >>> sorted(nnx.Rngs(params=0, dropout=1).fork())
    ['dropout', 'params']
    """
    if split is None:
      split = {}
    elif not isinstance(split, tp.Mapping):
      split = {...: split}
    streams = {}
    for name, stream in self.items():
      k = _split_size(stream, split)
      streams[name] = stream.fork() if k is None else stream.split(k)
    return Rngs(**streams)

  def split(self, k: tp.Any) -> 'Rngs':
    """Streams that each hand out ``k`` keys at once (for ``nnx.vmap``).

    ``k`` may be a mapping from filters (such as a stream's name) to sizes;
    streams no filter selects are kept as they are.

    >>> import nnx_edu as nnx
    >>> nnx.Rngs(0).split(4).default.key.value.shape
    (4,)
    """
    split = k if isinstance(k, tp.Mapping) else {...: k}
    streams = {}
    for name, stream in self.items():
      size = _split_size(stream, split)
      # unselected streams keep their key (and restart their count), as in Flax
      streams[name] = stream if size is None else stream.split(size)
    return Rngs(**streams)


def _split_size(stream: RngStream, split: tp.Mapping) -> tp.Any:
  """The split size of the first filter in ``split`` that selects ``stream``."""
  for filter, k in split.items():
    if filterlib.to_predicate(filter)((), stream):
      return k
  return None


def _sampler(name: str, of: str):
  sample = getattr(jax.random, name)
  args, shape = RANDOM_FUNCTIONS[name]

  def method(self, *args: tp.Any, **kwargs: tp.Any) -> jax.Array:
    return sample(self(), *args, **kwargs)

  method.__name__ = name
  method.__doc__ = (
      f'``jax.random.{name}`` with the next key of the {of}.\n\n'
      '>>> import jax.numpy as jnp\n>>> import nnx_edu as nnx\n'
      f'>>> nnx.Rngs(0).{"default." if of == "stream" else ""}{name}({args}).shape\n{shape}\n'
  )
  return method


for _name in RANDOM_FUNCTIONS:
  setattr(RngStream, _name, _sampler(_name, of='stream'))
  setattr(Rngs, _name, _sampler(_name, of="'default' stream"))
