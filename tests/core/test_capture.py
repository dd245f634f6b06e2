"""Core -- capture: nnx.capture, Module.sow and Module.perturb against Flax 0.12.8.

Grids over models (Linear, Dropout, BatchNorm, nested Modules, Lists, custom reductions)
and over the Variable types captured and the ways to call capture: the same outputs, the
same captured States (paths, types, values, reprs), the Module left without what was sown.
Then the gradient recipe through nnx.jit, nnx.grad and nnx.vmap, method_outputs, and every
error.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx_edu as nnx
from nnx_edu.core.module import CAPTURES
from tests.parity import assert_same_state, normalize_repr

# Flax warns for sow and perturb outside nnx.capture; the oracle runs them too.
pytestmark = pytest.mark.filterwarnings('ignore::DeprecationWarning:tests.core.test_capture')

X = jnp.arange(8.0).reshape(2, 4) / 8


def sower(lib, seed=0):
  class Sower(lib.Module):
    def __init__(self, rngs):
      self.linear = lib.Linear(4, 4, rngs=rngs)
      self.norm = lib.BatchNorm(4, rngs=rngs)
      self.drop = lib.Dropout(0.5, deterministic=True)

    def __call__(self, x):
      y = self.norm(self.linear(x))
      self.sow(lib.Intermediate, 'summary', y.mean())
      self.sow(lib.Intermediate, 'summary', y.max())
      self.sow(lib.Perturbation, 'seen', y)
      return self.drop(y) * 2

  return Sower(lib.Rngs(seed))


def nested(lib, seed=0):
  class Inner(lib.Module):
    def __init__(self, rngs):
      self.linear = lib.Linear(4, 4, rngs=rngs)

    def __call__(self, x):
      x = self.perturb('grad_of_x', x)
      y = jnp.tanh(self.linear(x))
      self.sow(lib.Intermediate, 'y', y)
      self.sow(lib.Intermediate, 'total', y.sum(), reduce_fn=lambda a, b: a + b,
               init_fn=lambda: 0.0)
      return y

  class Outer(lib.Module):
    def __init__(self, rngs):
      self.blocks = lib.List([Inner(rngs) for _ in range(3)])
      self.head = Inner(rngs)

    def __call__(self, x):
      for block in self.blocks:
        x = block(x)
      self.sow(lib.Intermediate, 'before_head', x)
      return self.head(x)

  return Outer(lib.Rngs(seed))


def in_a_list(lib, seed=0):
  class Tagged(lib.Module):
    def __init__(self, name):
      self.name = name

    def __call__(self, x):
      self.sow(lib.Intermediate, self.name, x * 2)
      return x + 1

  class Chain(lib.Module):
    def __init__(self):
      self.items = lib.List([Tagged('zeta'), Tagged('alpha'), Tagged('mid')])

    def __call__(self, x):
      for item in self.items:
        x = item(x)
      return x

  return Chain()


MODELS = {'sower': sower, 'nested': nested, 'list': in_a_list}
VAR_TYPES = {
    'none': lambda lib: (),
    'Intermediate': lambda lib: (lib.Intermediate,),
    'Perturbation': lambda lib: (lib.Perturbation,),
    'Intermediate, Perturbation': lambda lib: (lib.Intermediate, lib.Perturbation),
    'Perturbation, Intermediate': lambda lib: (lib.Perturbation, lib.Intermediate),
}
FORMS = {
    'module': lambda lib, model, types: lib.capture(model, *types)(X),
    'function': lambda lib, model, types: lib.capture(lambda m, x: m(x), *types)(model, X),
    'bound method': lambda lib, model, types: lib.capture(model.__call__, *types)(X),
    'decorator': lambda lib, model, types: (lib.capture(*types)(lambda m, x: m(x))(model, X)
                                            if types else lib.capture(model)(X)),
}


def run_capture(lib, name, types, form):
  model = MODELS[name](lib)
  before = normalize_repr(repr(model))
  out = FORMS[form](lib, model, VAR_TYPES[types](lib))
  assert normalize_repr(repr(model)) == before  # nothing sown stays on the Module
  return out


def assert_same_outputs(ours, theirs):
  ours, theirs = (ours, theirs) if isinstance(ours, tuple) else ((ours,), (theirs,))
  assert len(ours) == len(theirs)
  np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-6)
  for a, b in zip(ours[1:], theirs[1:]):
    assert normalize_repr(repr(a)) == normalize_repr(repr(b))
    assert_same_state(a, b, exact=False)


@pytest.mark.parametrize('form', list(FORMS))
@pytest.mark.parametrize('types', list(VAR_TYPES))
@pytest.mark.parametrize('name', list(MODELS))
def test_capture_returns_the_same_result_and_states_as_flax(name, types, form, fnnx):
  assert_same_outputs(run_capture(nnx, name, types, form), run_capture(fnnx, name, types, form))


@pytest.mark.parametrize('name', list(MODELS))
def test_sow_outside_capture_stores_the_same_variables_as_flax(name, fnnx):
  models = []
  for lib in (nnx, fnnx):
    model = MODELS[name](lib)
    model(X)
    model(X)
    models.append(model)
  assert normalize_repr(repr(models[0])) == normalize_repr(repr(models[1]))
  assert_same_state(*models, exact=False)


def test_capture_leaves_no_captures_behind_even_after_an_error():
  model = nested(nnx)
  with pytest.raises(ValueError, match='do not fit the kernel'):
    nnx.capture(model, nnx.Intermediate)(jnp.ones(3))
  assert all(CAPTURES not in vars(m) for _, m in nnx.iter_modules(model))
  model(X)  # outside capture again, sow keeps its values on the Module
  assert isinstance(model.before_head, nnx.Intermediate)


def test_sow_inside_capture_says_whether_the_type_is_collected(lib):
  class Probe(lib.Module):
    def __call__(self, x):
      return (self.sow(lib.Intermediate, 'a', x), self.sow(lib.Perturbation, 'b', x),
              self.sow(lib.BatchStat, 'c', x))

  assert lib.capture(Probe(), lib.Intermediate)(1.0)[0] == (True, False, False)
  assert lib.capture(Probe())(1.0) == (False, False, False)
  assert Probe()(1.0) == (True, True, True)


# -- the gradient recipe ---------------------------------------------------------------
def gradient_step(lib, model, x, jit_inside):
  def loss(model, perturbations, x):
    return lib.capture(model, lib.Intermediate, init=perturbations)(x)

  def summed_loss(model, perturbations, x):
    out, sowed = loss(model, perturbations, x)
    return out.sum(), sowed

  def step(model, perturbations, x):
    (grads, perturb_grads), sowed = lib.grad(
        summed_loss, argnums=(0, 1), has_aux=True)(model, perturbations, x)
    return grads, lib.merge_state(perturb_grads, sowed)

  _, perturbations = lib.capture(model, lib.Perturbation)(x)
  return (lib.jit(step) if jit_inside else step)(model, perturbations, x)


@pytest.mark.parametrize('jit_inside', [False, True])
@pytest.mark.parametrize('name', ['sower', 'nested'])
def test_perturbation_gradients_match_flax(name, jit_inside, fnnx):
  ours = gradient_step(nnx, MODELS[name](nnx), X, jit_inside)
  theirs = gradient_step(fnnx, MODELS[name](fnnx), X, jit_inside)
  for a, b in zip(ours, theirs):
    assert normalize_repr(repr(jax.tree.map(jnp.shape, a))) == normalize_repr(
        repr(jax.tree.map(jnp.shape, b)))
    assert_same_state(a, b, exact=False, rtol=1e-5)


def test_perturbation_gradient_is_the_gradient_of_the_intermediate_value():
  model = nested(nnx)
  _, intermediates = gradient_step(nnx, model, X, jit_inside=True)
  head_input = intermediates['before_head'].value[0]
  expected = jax.grad(lambda h: model.head(h).sum())(head_input)
  np.testing.assert_allclose(intermediates['head']['grad_of_x'].value, expected, rtol=1e-5)


def vmapped_perturbations(lib):
  """Flax's own vmap example: perturbations made under nnx.vmap, gradients per example."""
  class Foo(lib.Module):
    def __init__(self, dim):
      self.w = lib.Param(jax.random.normal(jax.random.key(0), dim))

    def __call__(self, x):
      x = self.perturb('grad_of_x', x)
      y = jnp.dot(x, self.w)
      self.sow(lib.Intermediate, 'y', y)
      return y

    def pre_run(self, x):
      graphdef, intms, params = lib.split(self, lib.Intermediate, lib.Param)
      lib.vmap(lambda i, p, x: lib.merge(graphdef, i, p)(x), in_axes=(0, None, 0))(
          intms, params, x)

  @lib.jit
  def train_step(model, perturbations, x):
    def loss_grad(model, perturbations, x):
      loss = lambda m, p, x: lib.capture(m, lib.Intermediate, init=p)(x)
      (_, perturb_grads), sowed = lib.grad(loss, argnums=(0, 1), has_aux=True)(
          model, perturbations, x)
      return lib.merge_state(perturb_grads, sowed)
    return lib.vmap(loss_grad, in_axes=(None, 0, 0))(model, perturbations, x)

  model, x = Foo(4), jnp.ones((3, 4))
  _, perturbations = lib.capture(model.pre_run, lib.Perturbation)(x)
  return perturbations, train_step(model, perturbations, x)


def test_perturbations_made_and_differentiated_under_vmap_match_flax(fnnx):
  (ours_zeros, ours), (their_zeros, theirs) = vmapped_perturbations(nnx), vmapped_perturbations(
      fnnx)
  assert_same_state(ours_zeros, their_zeros)
  assert_same_state(ours, theirs, exact=False)


# -- method_outputs -------------------------------------------------------------------------
def with_methods(lib, seed=0):
  class Inner(lib.Module):
    def __init__(self, rngs):
      self.linear = lib.Linear(4, 4, rngs=rngs)

    def __call__(self, x):
      return self.linear(x)

    def process(self, x):
      return jnp.sin(x)

    def _private(self, x):
      return x

  class Outer(lib.Module):
    def __init__(self, rngs):
      self.inner1 = Inner(rngs)
      self.inner2 = Inner(rngs)

    def __call__(self, x):
      x = self.inner1(self.inner1._private(x))
      self.sow(lib.Intermediate, 'manual', x)
      return self.inner2.process(x)

    def run(self, x):
      return self(x), self.inner1.process(x)

  return Outer(lib.Rngs(seed))


METHOD_FORMS = {
    'module': lambda lib, m: lib.capture(m, lib.Intermediate, method_outputs=lib.Intermediate)(X),
    'bound run': lambda lib, m: lib.capture(m.run, lib.Intermediate,
                                            method_outputs=lib.Intermediate)(X),
    'not collected': lambda lib, m: lib.capture(m, lib.Perturbation,
                                                method_outputs=lib.Intermediate)(X),
}


@pytest.mark.parametrize('form', list(METHOD_FORMS))
def test_method_outputs_sow_what_each_method_returns_as_flax_does(form, fnnx):
  ours, theirs = METHOD_FORMS[form](nnx, with_methods(nnx)), METHOD_FORMS[form](
      fnnx, with_methods(fnnx))
  assert normalize_repr(repr(ours[1])) == normalize_repr(repr(theirs[1]))
  assert_same_state(ours[1], theirs[1], exact=False)


def test_a_nested_capture_gives_back_the_methods_and_the_outer_captures():
  model = with_methods(nnx)
  inner_class = type(model.inner1)
  methods = dict(vars(inner_class))
  inner = nnx.capture(model.inner2, nnx.Intermediate, method_outputs=nnx.Intermediate)

  def both(m, x):
    y = m(x)
    _, recorded_inside = inner(x)
    return y, recorded_inside

  (_, inside), outside = nnx.capture(both, nnx.Intermediate, method_outputs=nnx.Intermediate)(
      model, X)
  assert dict(vars(inner_class)) == methods
  assert sorted(inside) == ['__call__', 'linear']  # Linear.__call__ too
  assert sorted(outside) == ['__call__', 'inner1', 'inner2', 'manual']
  assert sorted(outside['inner2']) == ['process']


# -- sow and perturb outside capture; errors --------------------------------------------
def test_sow_into_a_plain_attribute_raises_flax_error(lib):
  class Foo(lib.Module):
    def __init__(self):
      self.y = 10

  with pytest.raises(ValueError, match='to be a Variable, got int'):
    Foo().sow(lib.Intermediate, 'y', 1)


def test_sow_into_a_variable_of_another_type_raises_flax_error(lib):
  class Foo(lib.Module):
    def __init__(self):
      self.y = lib.Param(10)

  with pytest.raises(ValueError, match="to be of type 'Intermediate', got 'Param'") as error:
    Foo().sow(lib.Intermediate, 'y', 1)
  if lib is nnx:
    assert 'sow under another name, or pass Param' in str(error.value)


def test_perturb_outside_capture_keeps_zeros_on_the_module_as_flax_does(lib):
  class Foo(lib.Module):
    def __call__(self, x):
      return self.perturb('p', x)

  model = Foo()
  np.testing.assert_array_equal(model(X), X)
  np.testing.assert_array_equal(model.p.get_value(), jnp.zeros_like(X))
  model.p.set_value(jnp.ones_like(X))
  np.testing.assert_array_equal(model(X), X + 1)


def test_perturb_into_a_variable_of_another_type_raises(lib):
  class Foo(lib.Module):
    def __init__(self):
      self.p = lib.Param(jnp.zeros(2))

  with pytest.raises(ValueError, match="to be of type 'Perturbation', got 'Param'"):
    Foo().perturb('p', jnp.ones(2))


def test_perturb_adds_a_tuple_leaf_by_leaf():
  # Flax adds with +, which concatenates tuples; nnx_edu adds each leaf.
  class Foo(nnx.Module):
    def __call__(self, x):
      return self.perturb('p', x)

  out, zeros = nnx.capture(Foo(), nnx.Perturbation)((1.0, 2.0))
  assert out == (1.0, 2.0) and len(zeros['p'].value) == 2


def test_capture_of_a_function_needs_the_module_first():
  with pytest.raises(TypeError, match='records from the Module passed as the first argument, '
                                      'got float'):
    nnx.capture(lambda x, m: m(x), nnx.Intermediate)(1.0, sower(nnx))


def test_capture_takes_only_variable_types():
  with pytest.raises(TypeError, match=r"collects Variable types, such as nnx.Intermediate, got "
                                      r"'intermediates' \(str\)"):
    nnx.capture(sower(nnx), 'intermediates')
