"""Tools -- tabulate: the same table as Flax 0.12.8's, character for character."""

import re

import jax
import jax.numpy as jnp
import pytest
from flax import nnx as fnnx

import nnx_edu as nnx

WIDE = {'width': 10_000, 'force_terminal': False}  # Flax's table as plain, unwrapped text


def block_model(lib):
  class Block(lib.Module):
    def __init__(self, din, dout, rngs):
      self.linear = lib.Linear(din, dout, rngs=rngs)
      self.bn = lib.BatchNorm(dout, rngs=rngs)
      self.dropout = lib.Dropout(0.2, rngs=rngs)

    def __call__(self, x):
      return lib.relu(self.dropout(self.bn(self.linear(x))))

  class Foo(lib.Module):
    def __init__(self, rngs):
      self.block1 = Block(32, 128, rngs=rngs)
      self.block2 = Block(128, 10, rngs=rngs)

    def __call__(self, x):
      return self.block2(self.block1(x))

  return Foo(lib.Rngs(0)), (jnp.ones((1, 32)),), {}


def cnn(lib):
  class CNN(lib.Module):
    def __init__(self, rngs):
      self.conv1 = lib.Conv(1, 8, kernel_size=(3, 3), rngs=rngs)
      self.bn = lib.BatchNorm(8, rngs=rngs)
      self.dropout = lib.Dropout(0.1, rngs=rngs)
      self.conv2 = lib.Conv(8, 4, kernel_size=(3, 3), strides=2, rngs=rngs)
      self.head = lib.Linear(3 * 3 * 4, 10, rngs=rngs)

    def __call__(self, x):
      x = self.conv2(lib.relu(self.bn(self.conv1(x))))
      # dropout on the flat features: XLA compiles a 4-D dropout slowly on CPU, for Flax
      return self.head(self.dropout(x.reshape(x.shape[0], -1)))

  return CNN(lib.Rngs(0)), (jnp.ones((2, 6, 6, 1)),), {}


def nested(lib):
  class Nested(lib.Module):
    def __init__(self, rngs):
      with lib.use_eager_sharding(False):
        init = lib.with_partitioning(lib.initializers.lecun_normal(), ('a', 'b'))
        self.lin = lib.Linear(3, 4, kernel_init=init, rngs=rngs)
      inner = lib.List([lib.Linear(4, 2, rngs=rngs)])
      self.seq = lib.Sequential(lib.Linear(4, 4, rngs=rngs), lib.relu, inner[0])
      self.layers = lib.List([lib.Linear(2, 2, rngs=rngs), lib.Linear(2, 2, rngs=rngs)])
      self.shared = self.layers[1]
      self.heads = lib.Dict(norm=lib.LayerNorm(2, rngs=rngs))
      self.emb = lib.Embed(5, 2, rngs=rngs)

    def __call__(self, x, mask=None, *, train=True):
      h = self.seq(self.lin(x))
      for layer in self.layers:
        h = layer(h)
      h = self.layers[0](self.layers[0](h)[:1])  # the same call twice is one row
      h = self.heads['norm'](self.shared(h))
      return h, {'logits': self.emb.attend(h), 'none': None}, 3

  return Nested(lib.Rngs(0)), (jnp.ones((2, 3)), jnp.ones(4, jnp.int32)), {'train': False}


def mlp(lib):
  rngs = lib.Rngs(0)
  return (lib.Sequential(lib.Linear(784, 64, rngs=rngs), lib.relu, lib.Linear(64, 10, rngs=rngs)),
          (jnp.ones((16, 784)),), {})


MODELS = {'blocks': block_model, 'cnn': cnn, 'nested': nested, 'mlp': mlp}


def parse_table(text):
  """Flax's (or our) table as rows of cells; multi-line cells joined by newlines."""
  rows, current = [], None
  for line in text.splitlines():
    if line[:1] in '┃│':
      cells = [cell.strip() for cell in re.split('[┃│]', line)[1:-1]]
      current = cells if current is None else [f'{a}\n{b}' for a, b in zip(current, cells)]
    elif line[:1] in '┡├└' and current is not None:
      rows.append([cell.strip('\n') for cell in current])
      current = None
  return rows


def both_tables(name, **options):
  tables = []
  for lib in (nnx, fnnx):
    model, args, kwargs = MODELS[name](lib)
    extra = {} if lib is nnx else {'console_kwargs': WIDE}
    tables.append(lib.tabulate(model, *args, **options, **extra, **kwargs))
  return tables


@pytest.mark.parametrize('name, depth', [('blocks', None), ('blocks', 0), ('blocks', 1),
                                         ('blocks', 2), ('nested', None), ('nested', 1),
                                         ('cnn', None), ('mlp', None), ('mlp', 0)])
def test_tabulate_gives_flax_table(name, depth):
  ours, theirs = both_tables(name, depth=depth)
  for mine, flax_row in zip(parse_table(ours), parse_table(theirs), strict=True):
    assert mine == flax_row  # path, type, inputs, outputs, shapes, counts and bytes
  assert ours.splitlines()[-1] == theirs.splitlines()[-1]  # Total Parameters
  assert ours == theirs  # the very same text, box and all


@pytest.mark.parametrize('case', ['other method', 'all rows'])
def test_tabulate_rows_of_another_method_and_of_a_row_filter_as_in_flax(case):
  tables = []
  for lib in (nnx, fnnx):
    extra = {} if lib is nnx else {'console_kwargs': WIDE}
    if case == 'other method':
      model, x, options = lib.Embed(4, 3, rngs=lib.Rngs(0)), jnp.ones((2, 3)), {'method': 'attend'}
    else:  # the RNG stream's row too
      model, x = lib.Dropout(0.5, rngs=lib.Rngs(0)), jnp.ones(3)
      options = {'row_filter': lambda r: True}
    tables.append(lib.tabulate(model, x, **options, **extra))
  assert tables[0] == tables[1]
  assert len(parse_table(tables[0])) == (3 if case == 'other method' else 4)


def takes_rngs(lib):
  class Model(lib.Module):
    def __init__(self):
      self.seq = lib.Sequential(lib.Linear(2, 2, rngs=lib.Rngs(0)), lib.Dropout(0.5))

    def __call__(self, x, extra, *, scale, rngs):
      y = self.seq(x, rngs=rngs) * scale[...]
      return y, {'pair': (y, None), 'empty': ()}, [y, None]

  return Model


def test_tabulate_shows_rngs_variables_and_containers_given_as_inputs_like_flax():
  tables, counts = [], []
  for lib in (nnx, fnnx):
    Model = takes_rngs(lib)
    rngs = lib.Rngs(1)
    extra = {'b': jnp.ones(1), 'a': [jnp.ones(2), None, jnp.ones(3)]}
    kwargs = {} if lib is nnx else {'console_kwargs': WIDE}
    tables.append(lib.tabulate(Model(), jnp.ones((1, 2)), extra, scale=lib.Param(jnp.ones(2)),
                               rngs=rngs, **kwargs))
    counts.append(int(rngs.default.count[...]))
  assert tables[0] == tables[1]
  assert counts == [0, 0]  # the Rngs given were not advanced


@pytest.mark.parametrize('name', ['blocks', 'cnn'])
def test_tabulate_flops_match_flax(name):
  ours, theirs = both_tables(name, compute_flops=True, compute_vjp_flops=True)
  assert ours == theirs


def test_tabulate_runs_abstractly_and_leaves_the_model_as_it_was():
  model, (x,), _ = block_model(nnx)
  before = nnx.clone(nnx.state(model))
  table = nnx.tabulate(model, jax.ShapeDtypeStruct(x.shape, x.dtype))  # shapes are enough
  assert table == nnx.tabulate(model, x)
  for (path, now), (_, then) in zip(nnx.to_flat_state(nnx.state(model)), nnx.to_flat_state(before)):
    assert now[...] is then[...], path  # not even a new array: nothing ran on the model


# -- errors that teach -------------------------------------------------------------------
def test_tabulate_with_inputs_of_the_wrong_shape_raises_the_layers_error_with_the_path():
  model, _, _ = block_model(nnx)
  with pytest.raises(ValueError, match=r'Linear: inputs of shape \(1, 31\)') as info:
    nnx.tabulate(model, jnp.ones((1, 31)))
  assert info.value.__notes__[0] == (
      'nnx.tabulate: raised in the call of block1/linear (Linear) with inputs float32[1,31]')
  assert nnx.Linear.__call__.__name__ == '__call__' and 'recorded' not in repr(nnx.Linear.__call__)
  assert 'sow' not in vars(nnx.Linear)  # the wrappers are gone


def test_tabulate_refuses_flax_rich_options_and_non_modules():
  with pytest.raises(TypeError, match="options of the 'rich' library"):
    nnx.tabulate(nnx.Linear(1, 1, rngs=nnx.Rngs(0)), jnp.ones((1, 1)), console_kwargs={'width': 80})
  with pytest.raises(TypeError, match='tabulate summarises a Module'):
    nnx.tabulate(lambda x: x, jnp.ones(1))
  with pytest.raises(AttributeError, match="Linear has no method 'forward'"):
    nnx.tabulate(nnx.Linear(1, 1, rngs=nnx.Rngs(0)), jnp.ones((1, 1)), method='forward')
