"""The helpers real models use: var_defaults, eager sharding, set_metadata,
with_partitioning / get_partition_spec / get_named_sharding, and tabulate --
each against Flax 0.12.8."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx as fnnx

import nnx_edu as nnx
from tests.parity import normalize_repr

jax.config.update('jax_default_matmul_precision', 'highest')

FLAGS = ('hijax', 'ref', 'eager_sharding')  # Flax's internal metadata flags
WIDE = {'width': 10_000, 'force_terminal': False}  # Flax's table as plain, unwrapped text


def user_metadata(variable):
  return {k: v for k, v in variable.get_metadata().items() if k not in FLAGS}


def mesh_1d():
  return jax.make_mesh((1,), ('data',))


# -- var_defaults ---------------------------------------------------------------------
def test_var_defaults_reports_the_same_defaults_as_flax():
  ours, theirs = nnx.var_defaults(), fnnx.var_defaults()
  assert repr(ours) == repr(theirs) == 'VarDefaults(hijax=False, ref=False)'
  assert dict(ours) == dict(theirs) and len(ours) == len(theirs)
  assert (ours.hijax, ours['ref']) == (theirs.hijax, theirs['ref'])


@pytest.mark.parametrize('setting', [{'hijax': False}, {'ref': False}, {'hijax': False, 'ref': False}])
@pytest.mark.parametrize('use', ['with', 'decorator'])
def test_var_defaults_set_to_false_works_as_with_block_and_decorator_as_in_flax(setting, use):
  def seen(lib):
    if use == 'with':
      with lib.var_defaults(**setting):
        inside = dict(lib.var_defaults())
    else:
      inside = lib.var_defaults(**setting)(lambda: dict(lib.var_defaults()))()
    return inside, dict(lib.var_defaults())

  assert seen(nnx) == seen(fnnx)


@pytest.mark.parametrize('name', ['hijax', 'ref'])
def test_var_defaults_true_raises_and_says_what_to_use_instead(name):
  with pytest.raises(NotImplementedError, match=rf'var_defaults\({name}=True\): nnx_edu has no '
                     rf'{name} Variables .* Pass Modules and Variables to the nnx transforms'):
    nnx.var_defaults(**{name: True})


# -- eager sharding switch --------------------------------------------------------------
@pytest.mark.parametrize('use', ['call', 'with', 'decorator'])
def test_use_eager_sharding_changes_the_setting_like_flax(use):
  def trace(lib):
    seen = [lib.using_eager_sharding()]
    if use == 'call':
      lib.use_eager_sharding(False)
      seen.append(lib.using_eager_sharding())
      lib.use_eager_sharding(True)
    elif use == 'with':
      with lib.use_eager_sharding(False):
        seen.append(lib.using_eager_sharding())
    else:
      seen.append(lib.use_eager_sharding(False)(lib.using_eager_sharding)())
    return seen + [lib.using_eager_sharding()]

  assert trace(nnx) == trace(fnnx) != [True] * 3


def test_a_variable_made_with_eager_sharding_off_remembers_it_in_its_repr_like_flax():
  def make(lib):
    with lib.use_eager_sharding(False):
      return lib.Param(jnp.ones(2), out_sharding=('data',)), lib.BatchStat(jnp.zeros(1))

  for ours, theirs in zip(make(nnx), make(fnnx)):
    assert repr(ours) == repr(theirs)
  assert repr(nnx.Param(1.0)) == repr(fnnx.Param(1.0))  # on: nothing shown


# -- set_metadata --------------------------------------------------------------------
@pytest.mark.parametrize('only', ['Variable', 'Param', 'BatchStat', 'Cache', 'Everything',
                                  'kernel_or_mean', 'not_param'])
def test_set_metadata_sets_the_selected_variables_like_flax(only):
  def run(lib):
    filters = {'Variable': lib.Variable, 'Param': lib.Param, 'BatchStat': lib.BatchStat,
               'Cache': lib.Cache, 'Everything': ..., 'not_param': lib.Not(lib.Param),
               'kernel_or_mean': lib.Any(lib.PathContains('kernel'), lib.PathContains('mean'))}
    model = lib.Sequential(lib.Linear(2, 3, rngs=lib.Rngs(0)), lib.BatchNorm(3, rngs=lib.Rngs(0)))
    lib.set_metadata(model, only=filters[only], frozen=True, note='x')
    return {path: user_metadata(v) for path, v in lib.to_flat_state(lib.state(model))}

  assert run(nnx) == run(fnnx)


def test_set_metadata_is_seen_by_a_jitted_function_called_before():
  model = nnx.Linear(2, 2, rngs=nnx.Rngs(0))
  scaled = nnx.jit(lambda m: m.kernel.get_metadata().get('scale', 1) * m.kernel[...])
  before = scaled(model)
  nnx.set_metadata(model, only=nnx.Param, scale=3)
  np.testing.assert_allclose(scaled(model), 3 * before)


# -- with_partitioning ------------------------------------------------------------------
LAYERS = {
    'linear': (lambda lib, init: lib.Linear(4, 6, kernel_init=init, rngs=lib.Rngs(0)), 'kernel'),
    'conv': (lambda lib, init: lib.Conv(2, 3, (3, 3), kernel_init=init, rngs=lib.Rngs(1)), 'kernel'),
    'embed': (lambda lib, init: lib.Embed(5, 4, embedding_init=init, rngs=lib.Rngs(2)), 'embedding'),
}
NAMES = {'linear': [('data', None), (None, 'data'), ('data',)],
         'conv': [(None, None, None, 'data'), ('data', None)],
         'embed': [('data', None)]}
GRID = [(layer, names) for layer in LAYERS for names in NAMES[layer]]


def build(lib, layer, names, how):
  make, attr = LAYERS[layer]
  if how == 'names only':
    with lib.use_eager_sharding(False):
      return make(lib, lib.with_partitioning(lib.initializers.lecun_normal(), names)), attr
  if how == 'mesh argument':
    return make(lib, lib.with_partitioning(lib.initializers.lecun_normal(), names, mesh=mesh_1d())), attr
  with jax.set_mesh(mesh_1d()):  # 'set_mesh'
    return make(lib, lib.with_partitioning(lib.initializers.lecun_normal(), names)), attr


@pytest.mark.parametrize('how', ['names only', 'mesh argument', 'set_mesh'])
@pytest.mark.parametrize('layer, names', GRID)
def test_with_partitioning_gives_the_param_flax_gives(layer, names, how):
  (ours, attr), (theirs, _) = build(nnx, layer, names, how), build(fnnx, layer, names, how)
  mine, flax_param = getattr(ours, attr), getattr(theirs, attr)
  np.testing.assert_array_equal(mine[...], flax_param[...])
  assert user_metadata(mine) == user_metadata(flax_param)
  assert normalize_repr(repr(mine)) == normalize_repr(repr(flax_param))
  assert mine[...].sharding == flax_param[...].sharding  # placed on the mesh, or not, alike


@pytest.mark.parametrize('how', ['names only', 'set_mesh'])
@pytest.mark.parametrize('layer, names', GRID)
def test_get_partition_spec_and_named_sharding_read_the_names_like_flax(layer, names, how):
  (ours, _), (theirs, _) = build(nnx, layer, names, how), build(fnnx, layer, names, how)
  specs = [lib.to_flat_state(lib.get_partition_spec(lib.state(m)))
           for lib, m in ((nnx, ours), (fnnx, theirs))]
  assert [(p, v.get_value()) for p, v in specs[0]] == [(p, v.get_value()) for p, v in specs[1]]
  named = [lib.to_flat_state(lib.get_named_sharding(lib.state(m), mesh_1d()))
           for lib, m in ((nnx, ours), (fnnx, theirs))]
  assert [(p, v.get_value()) for p, v in named[0]] == [(p, v.get_value()) for p, v in named[1]]


def test_get_partition_spec_of_a_module_and_of_a_plain_pytree():
  with nnx.use_eager_sharding(False):
    model = nnx.Linear(2, 3, rngs=nnx.Rngs(0), kernel_metadata={'out_sharding': ('a', 'b')})
  specs = nnx.get_partition_spec(model)
  assert isinstance(specs, nnx.Linear)
  assert specs.kernel.get_value() == jax.P('a', 'b') and specs.bias.get_value() == jax.P()
  tree = {'w': jnp.ones(3), 'n': 3}
  assert nnx.get_partition_spec(tree) == fnnx.get_partition_spec(tree) == {'w': jax.P(), 'n': None}


def test_sharding_metadata_survives_split_merge_clone_and_jit():
  with jax.set_mesh(mesh_1d()):
    model = nnx.Linear(2, 3, kernel_init=nnx.with_partitioning(nnx.initializers.lecun_normal(),
                                                               ('data', None)), rngs=nnx.Rngs(0))
  expected = {'out_sharding': ('data', None), 'mesh': None}
  assert nnx.merge(*nnx.split(model)).kernel.get_metadata() == expected
  assert nnx.clone(model).kernel.get_metadata() == expected

  seen_inside = []

  @nnx.jit
  def step(m):
    seen_inside.append(m.kernel.get_metadata())
    m.kernel[...] = m.kernel[...] * 2

  step(model)
  assert seen_inside == [expected]
  assert model.kernel.get_metadata() == expected
  assert model.kernel[...].sharding.spec == jax.P('data', None)


def test_an_optimizer_of_a_model_with_names_only_keeps_them_without_a_mesh():
  with nnx.use_eager_sharding(False):
    model = nnx.Linear(2, 3, kernel_init=nnx.with_partitioning(nnx.initializers.lecun_normal(),
                                                               ('data', None)), rngs=nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
  mu = optimizer.opt_state[0].mu['kernel']
  assert mu.get_metadata() == {'out_sharding': ('data', None), 'mesh': None, 'eager_sharding': False}


def test_with_partitioning_raises_when_there_are_more_names_than_axes():
  init = nnx.with_partitioning(nnx.initializers.lecun_normal(), ('data', None, None))
  expected = re.escape(
      "with_partitioning(init, ('data', None, None)): 3 sharding names ('data', None, None) "
      'for an array of shape (4, 6), which has 2 axes. Give one name (or None) per axis')
  with pytest.raises(ValueError, match=expected), nnx.use_eager_sharding(False):
    nnx.Linear(4, 6, kernel_init=init, rngs=nnx.Rngs(0))


def test_a_sharded_variable_without_a_mesh_raises_and_says_how_to_give_one():
  init = nnx.with_partitioning(nnx.initializers.lecun_normal(), ('data', None))
  with pytest.raises(ValueError, match='no mesh is set. Make the model inside `with jax.set_mesh'):
    nnx.Linear(4, 6, kernel_init=init, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError):  # Flax refuses too
    fnnx.Linear(4, 6, kernel_init=fnnx.with_partitioning(fnnx.initializers.lecun_normal(),
                                                          ('data', None)), rngs=fnnx.Rngs(0))


# -- tabulate -------------------------------------------------------------------------------
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
      model, x, options = lib.Dropout(0.5, rngs=lib.Rngs(0)), jnp.ones(3), {'row_filter': lambda r: True}
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
