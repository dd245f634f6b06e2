"""LoRA, LoRALinear and LoRAParam: parity with Flax 0.12.8, freezing the base, errors that teach.

Each parity case builds the layer in both libraries from the same seed and
checks: parameters bit-identical, ``repr`` text equal, outputs within 1e-6.
The training case trains only the adapters of a model in both libraries
and compares every parameter after several Adam steps.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx as fnnx

import nnx_edu as nnx
from tests.parity import assert_close, assert_same_module, inputs

BF16 = jnp.bfloat16


def nonzero_b(key, shape, dtype):  # lora_b starts at zero; test the product with real values
  return jax.random.normal(key, shape, dtype)


# -- LoRA ---------------------------------------------------------------------------
LORA_OPTIONS = [
    {},
    {'dtype': BF16},
    {'param_dtype': BF16},
    {'b_initializer': nonzero_b},
    {'a_initializer': jax.nn.initializers.lecun_normal(), 'b_initializer': nonzero_b,
     'a_metadata': {'note': 'a'}, 'b_metadata': {'note': 'b'}},
]


@pytest.mark.parametrize('options', LORA_OPTIONS)
@pytest.mark.parametrize('rank', [1, 3])
@pytest.mark.parametrize('with_base', [False, True])
def test_lora_matches_flax(options, rank, with_base):
  base = {'base_module': nnx.Linear(6, 4, rngs=nnx.Rngs(5))} if with_base else {}
  their_base = {'base_module': fnnx.Linear(6, 4, rngs=fnnx.Rngs(5))} if with_base else {}
  ours = nnx.LoRA(6, rank, 4, rngs=nnx.Rngs(0), **base, **options)
  theirs = fnnx.LoRA(6, rank, 4, rngs=fnnx.Rngs(0), **their_base, **options)
  assert_same_module(ours, theirs)
  x = inputs(2, 6)
  assert_close(ours(x), theirs(x))


@pytest.mark.parametrize('shape', [(6,), (2, 3, 6)])
def test_lora_keeps_leading_axes_like_flax(shape):
  options = {'b_initializer': nonzero_b}
  ours = nnx.LoRA(6, 2, 4, rngs=nnx.Rngs(0), **options)
  theirs = fnnx.LoRA(6, 2, 4, rngs=fnnx.Rngs(0), **options)
  assert_close(ours(inputs(*shape)), theirs(inputs(*shape)))


def test_lora_passes_call_keywords_to_the_base_module():
  ours = nnx.LoRA(4, 2, 4, base_module=nnx.Dropout(0.5, rngs=nnx.Rngs(1)), rngs=nnx.Rngs(0),
                  b_initializer=nonzero_b)
  theirs = fnnx.LoRA(4, 2, 4, base_module=fnnx.Dropout(0.5, rngs=fnnx.Rngs(1)),
                     rngs=fnnx.Rngs(0), b_initializer=nonzero_b)
  x = inputs(3, 4)
  assert_close(ours(x, deterministic=True), theirs(x, deterministic=True))


def test_lora_param_type_can_be_plain_param():
  ours = nnx.LoRA(6, 2, 4, lora_param_type=nnx.Param, rngs=nnx.Rngs(0))
  theirs = fnnx.LoRA(6, 2, 4, lora_param_type=fnnx.Param, rngs=fnnx.Rngs(0))
  assert_same_module(ours, theirs)


# -- LoRALinear ---------------------------------------------------------------------
LORA_LINEAR_OPTIONS = [
    {},
    {'use_bias': False},
    {'dtype': BF16},
    {'lora_dtype': BF16},
    {'lora_param_dtype': BF16, 'param_dtype': BF16},
    {'precision': jax.lax.Precision.HIGHEST, 'kernel_init': jax.nn.initializers.ones,
     'b_initializer': nonzero_b},
]


@pytest.mark.parametrize('options', LORA_LINEAR_OPTIONS)
@pytest.mark.parametrize('rank', [1, 3])
def test_lora_linear_matches_flax(options, rank):
  ours = nnx.LoRALinear(6, 4, lora_rank=rank, rngs=nnx.Rngs(0), **options)
  theirs = fnnx.LoRALinear(6, 4, lora_rank=rank, rngs=fnnx.Rngs(0), **options)
  assert_same_module(ours, theirs)
  x = inputs(2, 6)
  assert_close(ours(x), theirs(x))


def test_lora_linear_has_the_kernel_of_a_linear_from_the_same_seed():
  lora_linear = nnx.LoRALinear(6, 4, lora_rank=2, rngs=nnx.Rngs(0))
  np.testing.assert_array_equal(lora_linear.kernel[...],
                                nnx.Linear(6, 4, rngs=nnx.Rngs(0)).kernel[...])


# -- LoRAParam and filters ------------------------------------------------------------
FILTERS = {
    'Param': lambda lib: lib.Param,
    'LoRAParam': lambda lib: lib.LoRAParam,
    'Param but not LoRAParam': lambda lib: lib.All(lib.Param, lib.Not(lib.LoRAParam)),
}


@pytest.mark.parametrize('name', FILTERS)
def test_filters_select_the_same_variables_as_flax(name):
  ours = nnx.LoRALinear(6, 4, lora_rank=2, rngs=nnx.Rngs(0))
  theirs = fnnx.LoRALinear(6, 4, lora_rank=2, rngs=fnnx.Rngs(0))
  assert (repr(nnx.state(ours, FILTERS[name](nnx)))
          == repr(fnnx.state(theirs, FILTERS[name](fnnx))))


def test_param_selects_lora_params_as_in_flax():
  ours = nnx.LoRA(6, 2, 4, rngs=nnx.Rngs(0))
  assert issubclass(nnx.LoRAParam, nnx.Param) and issubclass(fnnx.LoRAParam, fnnx.Param)
  assert set(nnx.state(ours, nnx.Param).flat_state().paths) == {('lora_a',), ('lora_b',)}


def test_lora_param_prints_like_flax():
  assert repr(nnx.LoRAParam(jnp.ones(2))) == repr(fnnx.LoRAParam(jnp.ones(2)))


def test_lora_param_has_no_linen_name_as_in_flax():
  with pytest.raises(ValueError):
    fnnx.variablelib.variable_name_from_type(fnnx.LoRAParam)
  with pytest.raises(ValueError, match='LoRAParam has no registered collection name'):
    nnx.variable_name_from_type(nnx.LoRAParam)


# -- training only the adapters ---------------------------------------------------------
def lora_model(lib):
  """A frozen two-layer base with adapters: one LoRALinear, one LoRA around a Linear."""
  class Model(lib.Module):
    def __init__(self, rngs):
      self.hidden = lib.LoRALinear(3, 8, lora_rank=2, rngs=rngs)
      self.out = lib.LoRA(8, 2, 1, base_module=lib.Linear(8, 1, rngs=rngs), rngs=rngs)

    def __call__(self, x):
      return self.out(jax.nn.relu(self.hidden(x)))

  return Model(lib.Rngs(0))


def train_adapters(lib, steps=5):
  model = lora_model(lib)
  optimizer = lib.Optimizer(model, optax.adam(1e-2), wrt=lib.LoRAParam)
  x = jax.random.normal(jax.random.key(1), (16, 3))
  y = jnp.sin(x.sum(1, keepdims=True))

  @lib.jit
  def train_step(model, optimizer):
    loss_fn = lambda model: ((model(x) - y) ** 2).mean()
    loss, grads = lib.value_and_grad(loss_fn, argnums=lib.DiffState(0, lib.LoRAParam))(model)
    optimizer.update(model, grads)
    return loss

  losses = [float(train_step(model, optimizer)) for _ in range(steps)]
  return model, optimizer, losses


def test_training_the_adapters_matches_flax_and_leaves_the_base_alone():
  ours, our_optimizer, our_losses = train_adapters(nnx)
  theirs, _, their_losses = train_adapters(fnnx)
  np.testing.assert_allclose(our_losses, their_losses, rtol=1e-6)
  assert our_losses[-1] < our_losses[0]

  untouched = lora_model(nnx)
  base = nnx.All(nnx.Param, nnx.Not(nnx.LoRAParam))
  for (path, before), (_, after) in zip(nnx.state(untouched, base).flat_state(),
                                        nnx.state(ours, base).flat_state()):
    np.testing.assert_array_equal(before.get_value(), after.get_value(), err_msg=str(path))
  trained = nnx.state(ours, nnx.LoRAParam).flat_state()
  assert all(np.any(v.get_value() != 0) for _, v in trained)  # lora_b moved off zero
  for (path, a), (_, b) in zip(trained, fnnx.state(theirs, fnnx.LoRAParam).flat_state()):
    np.testing.assert_allclose(a.get_value(), b.get_value(), rtol=1e-6, atol=1e-6,
                               err_msg=str(path))
  mu_paths = {p[3:] for p in nnx.state(our_optimizer, nnx.OptState).flat_state().paths
              if p[:3] == ('opt_state', 0, 'mu')}
  assert mu_paths == set(nnx.state(ours, nnx.LoRAParam).flat_state().paths)


# -- errors that teach ------------------------------------------------------------------
@pytest.mark.parametrize('rank', [0, -2])
def test_lora_raises_when_rank_is_not_positive(rank):
  with pytest.raises(ValueError, match=rf'LoRA: lora_rank={rank} must be a positive int.*'
                                       'Pass e.g. lora_rank=4'):
    nnx.LoRA(6, rank, 4, rngs=nnx.Rngs(0))


def test_lora_linear_raises_when_rank_is_not_positive():
  with pytest.raises(ValueError, match='LoRALinear: lora_rank=0 must be a positive int'):
    nnx.LoRALinear(6, 4, lora_rank=0, rngs=nnx.Rngs(0))


def test_lora_raises_when_input_features_do_not_match():
  layer = nnx.LoRA(6, 2, 4, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r'LoRA: inputs of shape \(2, 5\) do not fit the lora_a '
                                       r'of shape \(6, 2\).*size 6 \(in_features\).*'
                                       'in_features=5'):
    layer(jnp.ones((2, 5)))


def test_lora_raises_when_base_module_output_does_not_match_out_features():
  layer = nnx.LoRA(6, 2, 4, base_module=nnx.Linear(6, 1, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r'LoRA: base_module returned shape \(2, 1\), but the '
                                       r'adapters give shape \(2, 4\).*out_features=4'):
    layer(jnp.ones((2, 6)))


def test_lora_raises_when_base_module_is_not_callable():
  with pytest.raises(ValueError, match='LoRA: base_module must be callable.*got a Param'):
    nnx.LoRA(6, 2, 4, base_module=nnx.Param(jnp.ones(2)), rngs=nnx.Rngs(0))
