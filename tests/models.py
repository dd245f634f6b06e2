"""Small models written once and built with either library (nnx_edu or flax.nnx).

Each builder takes the library as ``lib`` so that parity tests construct the
very same model, attribute by attribute, with both.  ``MODELS`` are plain
graphs (blocks, containers, sharing, Rngs); ``probe`` is a Module whose call
touches every kind of state, for the transforms.
"""

import jax
import jax.numpy as jnp

import nnx_edu as nnx
from tests.parity import flax_nnx


def custom_types(lib):
  """A user Variable type, made once per library (class identity matters)."""
  if not hasattr(lib, '_test_counter_type'):
    lib._test_counter_type = type('Counter', (lib.Variable,), {})
  return lib._test_counter_type


def block_class(lib):
  class Block(lib.Module):
    def __init__(self, din, dout, rngs):
      self.w = lib.Param(rngs.params.normal((din, dout)))
      self.b = lib.Param(jnp.zeros(dout))
      self.stat = lib.BatchStat(jnp.zeros(dout))
      self.din, self.dout = din, dout

    def __call__(self, x):
      y = x @ self.w + self.b
      self.stat.value = 0.9 * self.stat.value + 0.1 * y.mean(0)
      return y

  return Block


def single_block(lib, seed=0):
  return block_class(lib)(2, 3, lib.Rngs(seed))


def nested(lib, seed=0):
  Block = block_class(lib)
  Counter = custom_types(lib)

  class Model(lib.Module):
    def __init__(self, rngs):
      self.first = Block(2, 4, rngs)
      self.second = Block(4, 1, rngs)
      self.count = Counter(jnp.array(0))
      self.activation = 'relu'
      self.sizes = (2, 4, 1)

    def __call__(self, x):
      self.count.value += 1
      return self.second(self.first(x))

  return Model(lib.Rngs(seed))


def with_containers(lib, seed=0):
  Block = block_class(lib)

  class Model(lib.Module):
    def __init__(self, rngs):
      self.blocks = lib.List([Block(2, 2, rngs) for _ in range(3)])
      self.heads = lib.Dict({'b': Block(2, 1, rngs), 'a': Block(2, 1, rngs)})
      self.raw = jnp.arange(3.0)
      self.options = {'k': 1}

  return Model(lib.Rngs(seed))


def with_sharing(lib, seed=0):
  Block = block_class(lib)

  class Model(lib.Module):
    def __init__(self, rngs):
      self.zeta = Block(2, 2, rngs)
      self.alpha = self.zeta            # the same block, reachable twice
      self.tied = lib.Param(jnp.ones(2))
      self.tied_again = self.tied       # the same Variable, twice

  return Model(lib.Rngs(seed))


def with_rngs(lib, seed=0):
  Block = block_class(lib)

  class Model(lib.Module):
    def __init__(self, rngs):
      self.block = Block(2, 2, rngs)
      self.rngs = rngs

  return Model(lib.Rngs(seed, dropout=seed + 1))


MODELS = {
    'single_block': single_block,
    'nested': nested,
    'with_containers': with_containers,
    'with_sharing': with_sharing,
    'with_rngs': with_rngs,
}


def both(name, seed=0):
  """The model ``MODELS[name]`` built by nnx_edu and by Flax: ours first."""
  return MODELS[name](nnx, seed), MODELS[name](flax_nnx(), seed)


def probe(lib, seed=0):
  """A Module that touches every kind of state: Params, a BatchStat, Rngs, sow."""
  class Probe(lib.Module):
    def __init__(self, rngs):
      self.w = lib.Param(rngs.params.normal((3, 2)))
      self.b = lib.Param(jnp.zeros(2))
      self.stat = lib.BatchStat(jnp.zeros(2))
      self.rngs = rngs

    def __call__(self, x):
      y = x @ self.w + self.b
      self.stat.value = 0.9 * self.stat.value + 0.1 * y.mean(0)
      self.sow(lib.Intermediate, 'seen', y)
      return y + 0.01 * jax.random.normal(self.rngs.dropout(), y.shape)

  return Probe(lib.Rngs(seed, dropout=seed + 1))


PROBE_X = jnp.arange(12.0).reshape(4, 3) / 10  # a batch for probe: 4 rows of 3 features
