"""nnx.jit, grad, value_and_grad, vmap, scan, eval_shape and split_rngs, against Flax 0.12.8.

Each parity test runs the same code with both libraries and compares the
outputs and the whole State afterwards: what a transform changes inside a
Module (BatchNorm statistics, Rngs counts, sown values) must come out the same.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx as fnnx

import nnx_edu as nnx
from nnx_edu import objects

BOTH = [nnx, fnnx]


def summary(state):
  """(path, type name, value) per leaf; keys become their raw data."""
  rows = []
  for path, leaf in state.flat_state():
    value = leaf.get_value() if hasattr(leaf, 'get_value') else leaf
    if isinstance(value, tuple):  # sown values
      value = np.stack([np.asarray(v) for v in value])
    elif jnp.issubdtype(getattr(value, 'dtype', float), jax.dtypes.prng_key):
      value = jax.random.key_data(value)
    rows.append((path, type(leaf).__name__, np.asarray(value)))
  return rows


def assert_same_state(ours, theirs, exact=True):
  a, b = summary(ours), summary(theirs)
  assert [(p, t) for p, t, _ in a] == [(p, t) for p, t, _ in b]
  for (path, _, x), (_, _, y) in zip(a, b):
    if exact:
      np.testing.assert_array_equal(x, y, err_msg=str(path))
    else:
      np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-6, err_msg=str(path))


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


def layered(lib):
  """Real layers: Linear, BatchNorm and Dropout."""
  class Net(lib.Module):
    def __init__(self, rngs):
      self.linear = lib.Linear(3, 4, rngs=rngs)
      self.bn = lib.BatchNorm(4, rngs=rngs)
      self.dropout = lib.Dropout(0.5, rngs=rngs)

    def __call__(self, x):
      return self.dropout(self.bn(self.linear(x)))

  return Net(lib.Rngs(0))


X = jnp.arange(12.0).reshape(4, 3) / 10


# -- jit -----------------------------------------------------------------------------
def test_jit_propagates_batch_stats_rng_counts_and_sown_values_like_flax():
  results = []
  for lib in BOTH:
    model = probe(lib)
    forward = lib.jit(lambda model, x: model(x))
    outs = [forward(model, X) for _ in range(2)]
    results.append((outs, lib.state(model)))
  (ours, our_state), (theirs, their_state) = results
  np.testing.assert_array_equal(ours, theirs)
  assert_same_state(our_state, their_state)


def test_jit_called_again_reuses_its_split_and_its_compilation():
  model = layered(nnx)
  forward = nnx.jit(lambda model, x: model(x))
  outs = [forward(model, X) for _ in range(3)]
  assert len(forward._compiled) == 1 and len(forward._recent) == 1
  assert not np.array_equal(outs[0], outs[1])  # the dropout key moved on
  model.eval()  # a structural change: split again, compile for the new flags
  forward(model, X), forward(model, X)
  (recent,) = forward._recent.values()
  assert len(forward._compiled) == 2 and recent.version == objects.structure_version


def test_jit_sees_train_and_eval_switches_between_calls():
  results = []
  for lib in BOTH:
    model = layered(lib)
    forward = lib.jit(lambda model, x: model(x))
    outs = [forward(model, X)]
    model.eval()
    outs.append(forward(model, X))
    model.train()
    outs.append(forward(model, X))
    results.append((outs, lib.state(model)))
  (ours, our_state), (theirs, their_state) = results
  for a, b in zip(ours, theirs):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
  assert_same_state(our_state, their_state, exact=False)


def test_jit_keeps_references_shared_between_arguments():
  for lib in BOTH:
    a, b = probe(lib), probe(lib, seed=1)
    b.w = a.w  # b now shares a's kernel

    @lib.jit
    def check(a, b, same):
      a.w.value = a.w.value + 1
      return a.w is b.w, a is same

    shared, same = check(a, b, a)
    assert bool(shared) and bool(same)
    assert b.w is a.w and float(b.w.value[0, 0]) == float(a.w.value[0, 0])


def test_jit_returns_the_callers_own_module_and_builds_new_ones():
  for lib in BOTH:
    model = probe(lib)
    assert lib.jit(lambda m: m)(model) is model
    assert lib.jit(lambda m: (m.rngs, 1))(model)[0] is model.rngs
    made = lib.jit(lambda: probe(lib, seed=3))()
    assert_same_state(nnx.state(made) if lib is nnx else fnnx.state(made),
                      lib.state(probe(lib, seed=3)))


def test_jit_brings_out_attributes_added_and_removed_inside():
  results = []
  for lib in BOTH:
    model = probe(lib)

    @lib.jit
    def restructure(model):
      model.extra = lib.BatchStat(jnp.ones(3))
      del model.stat
    restructure(model)
    results.append(lib.state(model))
  assert_same_state(*results)


@pytest.mark.parametrize('make', [
    lambda lib, f: lib.jit(f, static_argnums=2),
    lambda lib, f: lib.jit(f, static_argnames='power'),
    lambda lib, f: lib.jit(static_argnums=(2,))(f),
    lambda lib, f: lib.jit(donate_argnums=0)(f),
])
def test_jit_options_work_as_in_flax(make):
  outs = []
  for lib in BOTH:
    model = probe(lib)
    f = make(lib, lambda model, x, power: model(x) ** power)
    outs.append([f(model, X, 2), f(model, X, power=3)])
    assert model.w.value.shape == (3, 2)  # donated arrays were replaced by fresh ones
  np.testing.assert_allclose(outs[0], outs[1], rtol=1e-6)


def test_jit_works_on_methods_and_on_pytrees_of_modules():
  class Doubler(nnx.Module):
    def __init__(self):
      self.calls = nnx.BatchStat(jnp.array(0))

    @nnx.jit
    def __call__(self, x):
      self.calls.value += 1
      return 2 * x

  doubler = Doubler()
  doubler(jnp.ones(1)), doubler(jnp.ones(1))
  assert int(doubler.calls.value) == 2
  both = nnx.jit(lambda pair, x: pair['a'](x) + pair['b'][0](x))
  pair = {'a': doubler, 'b': [doubler]}
  assert float(both(pair, jnp.ones(1))[0]) == 4.0 and int(doubler.calls.value) == 4


def test_jit_refuses_a_bound_method_and_says_how_to_decorate_it():
  model = probe(nnx)
  with pytest.raises(TypeError, match=r'bound method Probe.__call__.*@nnx.jit'):
    nnx.jit(model.__call__)


def test_jit_refuses_unhashable_static_arguments():
  f = nnx.jit(lambda x, sizes: x, static_argnums=1)
  with pytest.raises(TypeError, match='static arguments must be hashable.*tuples'):
    f(jnp.ones(1), [1, 2])


def test_tuples_stay_containers_after_an_empty_tuple_was_seen_first():
  from nnx_edu import graphwalk

  graphwalk._KINDS.pop(tuple, None)  # forget what tuples are, then meet () first

  class Holder(nnx.Module):
    def __init__(self):
      self.nothing = ()
      self.pair = nnx.data((nnx.Param(jnp.ones(1)), 2))

  assert list(nnx.state(Holder()).flat_state().paths) == [('pair', 0)]


def test_structure_changes_move_the_structure_version():
  model = probe(nnx)
  before = objects.structure_version
  model.w.value = model.w.value + 1  # a new value: not structural
  assert objects.structure_version == before
  model.flag = True
  assert objects.structure_version > before


def test_eval_shape_gives_shape_dtype_structs_and_leaves_arguments_alone():
  for lib in BOTH:
    model = probe(lib)
    abstract = lib.eval_shape(lambda m, x: (m, m(x)), model, X)
    assert isinstance(abstract[0].w.value, jax.ShapeDtypeStruct)
    assert abstract[1].shape == (4, 2) and abstract[0] is not model
    assert not hasattr(model, 'seen') and int(model.rngs.dropout.count.value) == 0


# -- grad ----------------------------------------------------------------------------
def loss_of(model, x):
  return (model(x) ** 2).mean()


ARGNUMS = {
    '0': lambda lib: 0,
    '(0, 1)': lambda lib: (0, 1),
    'DiffState Param': lambda lib: lib.DiffState(0, lib.Param),
    'DiffState BatchStat': lambda lib: lib.DiffState(0, lib.BatchStat),
    'DiffState PathContains': lambda lib: lib.DiffState(0, lib.PathContains('w')),
    '(DiffState w, 1)': lambda lib: (lib.DiffState(0, lib.PathContains('w')), 1),
}


@pytest.mark.parametrize('argnums', list(ARGNUMS))
@pytest.mark.parametrize('transform', ['grad', 'value_and_grad'])
def test_gradients_are_states_of_variables_as_in_flax(argnums, transform):
  results = []
  for lib in BOTH:
    model = probe(lib)
    out = getattr(lib, transform)(loss_of, argnums=ARGNUMS[argnums](lib))(model, X)
    value, grads = out if transform == 'value_and_grad' else (None, out)
    grads = grads if isinstance(grads, tuple) else (grads,)
    results.append((value, grads, lib.state(model)))
  (v1, g1, s1), (v2, g2, s2) = results
  if transform == 'value_and_grad':
    np.testing.assert_allclose(v1, v2, rtol=1e-6)
  for a, b in zip(g1, g2):
    if isinstance(a, jax.Array):
      np.testing.assert_allclose(a, b, rtol=1e-6)
    else:
      assert type(a).__name__ == 'State'
      assert_same_state(a, b, exact=False)
  assert_same_state(s1, s2, exact=False)  # stats, counts and sown values came out


@pytest.mark.parametrize('transform', ['grad', 'value_and_grad'])
def test_has_aux_returns_the_aux_as_flax_does(transform):
  results = []
  for lib in BOTH:
    model = probe(lib)
    f = getattr(lib, transform)(lambda m, x: (loss_of(m, x), {'y': m(x), 'n': 1.0}), has_aux=True)
    out = f(model, X)
    (value, aux), grads = out if transform == 'value_and_grad' else ((None, out[1]), out[0])
    results.append((value, aux, grads))
  (v1, a1, g1), (v2, a2, g2) = results
  np.testing.assert_allclose(a1['y'], a2['y'], rtol=1e-6)
  assert a1['n'] == a2['n'] == 1.0
  assert_same_state(g1, g2, exact=False)
  assert type(g1['w']).__name__ == 'Param'


def test_grad_of_a_variable_passed_directly():
  param = nnx.Param(jnp.arange(3.0))
  grads = nnx.grad(lambda p: (p.value ** 2).sum())(param)
  np.testing.assert_array_equal(grads.value, [0.0, 2.0, 4.0])


def test_has_aux_needs_a_pair():
  with pytest.raises(TypeError, match=r'has_aux=True.*\(loss, aux\)'):
    nnx.grad(loss_of, has_aux=True)(probe(nnx), X)


def test_argnums_beyond_the_arguments_is_explained():
  with pytest.raises(TypeError, match='argument 2 but only 2 positional'):
    nnx.grad(loss_of, argnums=(0, 2))(probe(nnx), X)


def test_argnums_naming_an_argument_twice_is_refused():
  with pytest.raises(ValueError, match='names an argument twice'):
    nnx.grad(loss_of, argnums=(0, nnx.DiffState(0, nnx.Param)))


# -- vmap, scan, split_rngs ------------------------------------------------------------
def stacked_model(lib, layers=3):
  """The Flax guide's pattern: vmap a constructor, scan the forward pass."""
  class Block(lib.Module):
    def __init__(self, rngs):
      self.linear = lib.Linear(4, 4, rngs=rngs)
      self.bn = lib.BatchNorm(4, rngs=rngs)
      self.dropout = lib.Dropout(0.1, rngs=rngs)

    def __call__(self, x):
      return jax.nn.relu(self.dropout(self.bn(self.linear(x))))

  class Model(lib.Module):
    def __init__(self, rngs):
      @lib.split_rngs(splits=layers)
      @lib.vmap(in_axes=(0,), out_axes=0)
      def create_block(rngs):
        return Block(rngs)

      self.blocks = create_block(rngs)

    def __call__(self, x):
      @lib.scan(in_axes=(lib.Carry, 0), out_axes=lib.Carry)
      def forward(x, block):
        return block(x)

      return forward(x, self.blocks)

  return Model(lib.Rngs(0))


def test_a_vmapped_stack_scanned_forward_matches_flax():
  results = []
  for lib in BOTH:
    model = stacked_model(lib)
    x = jnp.arange(20.0).reshape(5, 4) / 10
    outs = [model(x), lib.jit(lambda m, x: m(x))(model, x)]
    results.append((outs, lib.state(model)))
  (ours, our_state), (theirs, their_state) = results
  np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)
  assert_same_state(our_state, their_state, exact=False)
  assert our_state['blocks']['linear']['kernel'].value.shape == (3, 4, 4)


@pytest.mark.parametrize('in_axes', ['(None, 0)', '(StateAxes, 0)', '(0, None)'])
def test_vmap_axes_per_argument_and_per_variable_type(in_axes):
  results = []
  for lib in BOTH:
    model = probe(lib)
    axes = {'(None, 0)': (None, 0), '(0, None)': (0, None),
            '(StateAxes, 0)': (lib.StateAxes({lib.BatchStat: 0, ...: None}), 0)}[in_axes]
    if in_axes == '(0, None)':  # four copies, stacked
      model = lib.vmap(lambda m: lib.clone(m), in_axes=(None,), out_axes=0, axis_size=4)(model)
    if in_axes == '(StateAxes, 0)':
      model.stat.value = jnp.zeros((4, 2))
    f = lib.vmap(lambda m, x: m.w.value.sum() + x.sum() + m.stat.value.sum(), in_axes=axes)
    results.append((f(model, X), lib.state(model)))
  np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-6)
  assert_same_state(results[0][1], results[1][1])


@pytest.mark.parametrize('reverse', [False, True])
def test_scan_carries_stacks_and_reverses_like_flax(reverse):
  outs = []
  for lib in BOTH:
    f = lib.scan(lambda total, x: (total + x, total * x), reverse=reverse)
    outs.append(f(jnp.zeros(2), jnp.arange(8.0).reshape(4, 2)))
  np.testing.assert_array_equal(outs[0][0], outs[1][0])
  np.testing.assert_array_equal(outs[0][1], outs[1][1])


def test_scan_in_axes_and_out_axes_must_agree_on_the_carry():
  with pytest.raises(ValueError, match='must both have nnx.Carry'):
    nnx.scan(lambda x, y: x, in_axes=(nnx.Carry, 0), out_axes=0)


def test_scan_refuses_a_carry_of_another_shape():
  f = nnx.scan(lambda carry, x: ((carry, carry), x))
  with pytest.raises(ValueError, match='carry of 1 arrays but returned one of 2'):
    f(jnp.zeros(()), jnp.ones(3))


def test_scan_refuses_to_return_a_new_module():
  f = nnx.scan(lambda x, y: (x, nnx.Linear(1, 1, rngs=nnx.Rngs(0))))
  with pytest.raises(ValueError, match='returned a new Module'):
    f(jnp.zeros(()), jnp.ones(2))


def test_state_axes_are_for_modules_only():
  f = nnx.vmap(lambda x: x, in_axes=(nnx.StateAxes({...: 0}),))
  with pytest.raises(ValueError, match='StateAxes is for Module arguments'):
    f(jnp.ones(3))


def test_state_axes_without_a_filter_for_a_variable_say_so():
  f = nnx.vmap(lambda m: m.w.value, in_axes=(nnx.StateAxes({nnx.BatchStat: 0}),), axis_size=2)
  with pytest.raises(ValueError, match=r"has no filter for the Param at \('b',\)"):
    f(probe(nnx))


@pytest.mark.parametrize('only', [..., 'params'])
@pytest.mark.parametrize('splits', [3, (2, 3)])
def test_split_rngs_splits_and_restores_like_flax(only, splits):
  results = []
  for lib in BOTH:
    rngs = lib.Rngs(params=0, dropout=1)
    backups = lib.split_rngs(rngs, splits=splits, only=only)
    during = lib.state(rngs)
    lib.restore_rngs(backups)
    results.append((during, lib.state(rngs)))
  assert_same_state(results[0][0], results[1][0])
  assert_same_state(results[0][1], results[1][1])


def test_vmap_refuses_to_give_a_module_two_axes():
  f = nnx.vmap(lambda m: m, in_axes=(None,), out_axes=0, axis_size=2)
  with pytest.raises(ValueError, match='passed with in_axes None is returned with out_axes 0'):
    f(probe(nnx))
