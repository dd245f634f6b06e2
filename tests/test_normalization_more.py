"""Spec of the rest of the normalization page: InstanceNorm, SpectralNorm, WeightNorm.

Each layer is built twice, by nnx_edu and by flax 0.12.8 from the same seed,
and must give bit-identical parameters and state (same paths, Variable
types, dtypes and values, also after several calls), outputs within 1e-6,
equal gradients and equal repr text.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx as fnnx

import nnx_edu as nnx

jax.config.update('jax_default_matmul_precision', 'highest')
# Flax stores a float32 result into a half-precision Variable with
# ``variable[...] = value``, which JAX warns will someday be an error.
pytestmark = pytest.mark.filterwarnings('ignore:scatter inputs have incompatible types')


# -- helpers --------------------------------------------------------------------
def inputs(shape, seed=1, dtype=jnp.float32):
  # numpy, not jax.random: no kernel to compile per shape; offset and scaled
  return jnp.asarray(3.0 + 2.0 * np.random.default_rng(seed).standard_normal(shape), dtype)


def mask_for(shape, seed=2):
  return jnp.asarray(np.random.default_rng(seed).random(shape) < 0.7)


def without_addresses(text):
  return re.sub(r' at 0x[0-9a-f]+', ' at 0x', text)


def assert_close(y, fy):
  assert y.dtype == fy.dtype
  np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(fy, np.float32),
                             rtol=1e-6, atol=1e-6)


def flat(lib, node):
  """``[(path, leaf type, dtype), ...]`` and the values of ``node``'s State."""
  pairs = list(lib.to_flat_state(lib.state(node)))
  described = [(path, type(leaf).__name__, leaf[...].dtype) for path, leaf in pairs]
  return described, [np.asarray(leaf[...]) for _, leaf in pairs]


def assert_same_state(ours, theirs):
  (described, values), (flax_described, flax_values) = flat(nnx, ours), flat(fnnx, theirs)
  assert described == flax_described
  for (path, *_), mine, flax in zip(described, values, flax_values, strict=True):
    np.testing.assert_array_equal(mine, flax, err_msg=str(path))


def assert_same_module(ours, theirs):
  assert without_addresses(repr(ours)) == without_addresses(repr(theirs))
  assert_same_state(ours, theirs)


# -- InstanceNorm ------------------------------------------------------------------
def instance_norms(num_features, **kwargs):
  return (nnx.InstanceNorm(num_features, rngs=nnx.Rngs(0), **kwargs),
          fnnx.InstanceNorm(num_features, rngs=fnnx.Rngs(0), **kwargs))


@pytest.mark.parametrize('kwargs', [
    dict(),
    dict(use_bias=False),
    dict(use_scale=False, epsilon=1e-3),
    dict(param_dtype=jnp.bfloat16, scale_init=nnx.initializers.normal(1.0),
         bias_init=nnx.initializers.uniform()),
    dict(param_dtype=jnp.float16, dtype=jnp.float16, feature_axes=(1, 2)),
    dict(axis_name='batch', axis_index_groups=[[0, 1]], use_fast_variance=False),
])
def test_instancenorm_repr_and_parameters_match_flax(kwargs):
  assert_same_module(*instance_norms(6, **kwargs))


def test_instancenorm_metadata_reaches_the_parameters():
  ours, theirs = instance_norms(4, scale_metadata={'note': 'gamma'},
                                bias_metadata={'note': 'beta'})
  assert ours.scale.note == theirs.scale.note == 'gamma'
  assert ours.bias.note == theirs.bias.note == 'beta'


INSTANCE_CASES = [  # (input shape, num_features, constructor arguments, mask shape or None)
    ((2, 4, 5, 6), 6, dict(), None),
    ((2, 4, 5, 6), 6, dict(), (2, 4, 5, 6)),
    ((2, 4, 5, 6), 6, dict(), (2, 4, 5, 1)),
    ((2, 4, 6), 6, dict(use_fast_variance=False, epsilon=1e-3), (2, 4, 6)),
    ((2, 4, 5, 6), 4, dict(feature_axes=1), None),
    ((2, 4, 5, 6), 24, dict(feature_axes=(1, -1)), None),
    ((2, 4, 5, 6), 30, dict(feature_axes=(-1, -2)), (2, 1, 5, 6)),
    ((2, 3, 6), 6, dict(use_bias=False, use_scale=False), None),
    ((2, 3, 6), 6, dict(dtype=jnp.bfloat16), None),
    ((2, 3, 6), 6, dict(dtype=jnp.float16, param_dtype=jnp.float16), None),
    ((2, 3, 6), 6, dict(param_dtype=jnp.bfloat16, scale_init=nnx.initializers.normal(1.0)),
     (2, 3, 1)),
    ((2, 6), 6, dict(), None),  # nothing left to reduce: every output is the bias
]


@pytest.mark.parametrize('shape, num_features, kwargs, mask_shape', INSTANCE_CASES)
def test_instancenorm_matches_flax(shape, num_features, kwargs, mask_shape):
  ours, theirs = instance_norms(num_features, **kwargs)
  x = inputs(shape)
  mask = None if mask_shape is None else mask_for(mask_shape).at[:, 0].set(True)
  assert_close(ours(x, mask=mask), theirs(x, mask=mask))
  assert_same_state(ours, theirs)


@pytest.mark.parametrize('dtype', [jnp.bfloat16, jnp.float16])
def test_instancenorm_half_precision_input_keeps_its_dtype_like_flax(dtype):
  ours, theirs = instance_norms(6, param_dtype=dtype)
  x = inputs((2, 5, 6), dtype=dtype)
  assert ours(x).dtype == dtype
  assert_close(ours(x), theirs(x))


def test_instancenorm_is_groupnorm_with_one_channel_per_group():
  x = inputs((2, 4, 5, 6))
  y = nnx.InstanceNorm(6, rngs=nnx.Rngs(0))(x)
  np.testing.assert_allclose(y, nnx.GroupNorm(6, num_groups=6, rngs=nnx.Rngs(0))(x), atol=1e-5)
  layer_norm = nnx.LayerNorm(6, reduction_axes=(1, 2), feature_axes=-1, rngs=nnx.Rngs(0))
  np.testing.assert_allclose(y, layer_norm(x), atol=1e-5)


def test_instancenorm_axis_name_averages_across_vmap_like_flax():
  ours, theirs = instance_norms(6, axis_name='batch')
  x = inputs((4, 2, 3, 6))  # vmapped over the 4: each call sees (2, 3, 6)

  def under_vmap(lib, layer):
    graphdef, state = lib.split(layer)
    return jax.vmap(lambda x, state: lib.merge(graphdef, state)(x), axis_name='batch',
                    in_axes=(0, None))(x, state)

  assert_close(under_vmap(nnx, ours), under_vmap(fnnx, theirs))


# -- the wrapped layers of SpectralNorm and WeightNorm -------------------------------
def sequential(lib, rngs):
  return lib.Sequential(lib.Linear(4, 6, rngs=rngs), lib.relu, lib.Linear(6, 5, rngs=rngs))


WRAPPED = {  # name: (make(lib, rngs, **kwargs), input shape)
    'Linear': (lambda lib, rngs, **kw: lib.Linear(4, 5, rngs=rngs, **kw), (3, 4)),
    'Conv': (lambda lib, rngs, **kw: lib.Conv(2, 3, kernel_size=(3, 3), rngs=rngs, **kw),
             (2, 5, 5, 2)),
    'Einsum': (lambda lib, rngs, **kw: lib.Einsum('bc,cde->bde', (4, 3, 5), (3, 5),
                                                  rngs=rngs, **kw), (2, 4)),
    'LinearGeneral': (lambda lib, rngs, **kw: lib.LinearGeneral(
        (2, 3), (4, 5), axis=(-2, -1), rngs=rngs, **kw), (2, 2, 3)),
    'Sequential': (lambda lib, rngs: sequential(lib, rngs), (3, 4)),
}


def wrapped(name, wrapper, inner_kwargs=None, **kwargs):
  """``wrapper`` (SpectralNorm or WeightNorm) around the layer ``name``, from both libraries."""
  make, shape = WRAPPED[name]
  pair = tuple(getattr(lib, wrapper)(make(lib, lib.Rngs(0), **(inner_kwargs or {})),
                                     rngs=lib.Rngs(1), **kwargs) for lib in (nnx, fnnx))
  return (*pair, inputs(shape))


def assert_calls_match(ours, theirs, x, calls, **call_kwargs):
  """Call both ``calls`` times; outputs and the whole state must match after each."""
  for _ in range(calls):
    assert_close(ours(x, **call_kwargs), theirs(x, **call_kwargs))
    assert_same_state(ours, theirs)


# -- SpectralNorm ---------------------------------------------------------------------
SPECTRAL_OPTIONS = [
    dict(),
    dict(n_steps=3, epsilon=1e-6, update_stats=False),
    dict(n_steps=0),  # no power iteration: nothing is normalized, no state
    dict(dtype=jnp.bfloat16),
    dict(param_dtype=jnp.bfloat16, n_steps=2),
    dict(dtype=jnp.float16, param_dtype=jnp.float16),
]


def case_id(case):
  if isinstance(case, str):
    return case
  return ','.join(f'{k}={getattr(v, "__name__", v)}' for k, v in case.items()) or 'defaults'


# every option on Linear; each other layer kind once
SPECTRAL_CASES = [('Linear', kwargs) for kwargs in SPECTRAL_OPTIONS] + [
    ('Conv', dict(n_steps=2)),
    ('Einsum', dict(param_dtype=jnp.bfloat16, dtype=jnp.bfloat16)),
    ('LinearGeneral', dict(epsilon=1e-6, update_stats=False)),
    ('Sequential', dict()),
]


@pytest.mark.parametrize('layer, kwargs', SPECTRAL_CASES, ids=case_id)
def test_spectralnorm_state_and_outputs_match_flax_over_several_calls(layer, kwargs):
  ours, theirs, x = wrapped(layer, 'SpectralNorm', **kwargs)
  assert_same_module(ours, theirs)
  assert_calls_match(ours, theirs, x, calls=3)
  assert without_addresses(repr(ours)) == without_addresses(repr(theirs))


@pytest.mark.parametrize('layer', ['Linear', 'Conv'])
def test_spectralnorm_five_updating_calls_then_five_frozen_ones_match_flax(layer):
  ours, theirs, x = wrapped(layer, 'SpectralNorm', n_steps=2)
  assert_calls_match(ours, theirs, x, calls=5, update_stats=True)
  frozen = ours.batch_stats[('kernel', 'u')].value
  assert_calls_match(ours, theirs, x, calls=5, update_stats=False)
  np.testing.assert_array_equal(ours.batch_stats[('kernel', 'u')].value, frozen)


def test_spectralnorm_wrapping_a_bfloat16_layer_matches_flax():
  ours, theirs, x = wrapped('Linear', 'SpectralNorm', dict(param_dtype=jnp.bfloat16),
                            n_steps=2)
  assert_calls_match(ours, theirs, x, calls=3)
  assert ours.layer_instance.kernel.value.dtype == jnp.bfloat16


def test_spectralnorm_train_and_eval_flip_update_stats_like_flax():
  ours, theirs, x = wrapped('Linear', 'SpectralNorm', update_stats=False)
  sigma = ours.batch_stats[('kernel', 'sigma')].value
  assert_calls_match(ours, theirs, x, calls=1)
  np.testing.assert_array_equal(ours.batch_stats[('kernel', 'sigma')].value, sigma)
  ours.train(), theirs.train()
  assert ours.use_running_average is False
  assert_calls_match(ours, theirs, x, calls=2)
  assert ours.batch_stats[('kernel', 'sigma')].value != sigma
  ours.eval(), theirs.eval()
  assert_calls_match(ours, theirs, x, calls=2)
  assert_calls_match(ours, theirs, x, calls=1, update_stats=True)  # the call's flag wins


def test_spectralnorm_divides_the_kernel_by_its_largest_singular_value():
  layer = nnx.SpectralNorm(nnx.Linear(6, 4, rngs=nnx.Rngs(0)), n_steps=50, rngs=nnx.Rngs(1))
  kernel = np.asarray(layer.layer_instance.kernel.value)
  layer(inputs((2, 6)))
  sigma = np.linalg.norm(kernel, ord=2)
  np.testing.assert_allclose(layer.batch_stats[('kernel', 'sigma')].value, sigma, rtol=1e-5)
  np.testing.assert_allclose(layer.layer_instance.kernel.value, kernel / sigma, rtol=1e-5)


def test_spectralnorm_splits_into_the_same_params_and_batch_stats_as_flax():
  ours, theirs, _ = wrapped('Sequential', 'SpectralNorm')
  _, params, stats = nnx.split(ours, nnx.Param, nnx.BatchStat)
  _, flax_params, flax_stats = fnnx.split(theirs, fnnx.Param, fnnx.BatchStat)
  assert nnx.to_flat_state(params).paths == tuple(p for p, _ in fnnx.to_flat_state(flax_params))
  assert nnx.to_flat_state(stats).paths == tuple(p for p, _ in fnnx.to_flat_state(flax_stats))
  # keyed by the path inside the wrapped layer, plus 'u' or 'sigma'
  assert nnx.to_flat_state(stats).paths == tuple(
      ('batch_stats', ('layers', i, 'kernel', name)) for i in (0, 2) for name in ('sigma', 'u'))


# -- WeightNorm -----------------------------------------------------------------------
def kernels_and_biases(path, value):  # one function object for both libraries: equal reprs
  return path[-1] in ('kernel', 'bias')


WEIGHT_OPTIONS = [
    dict(),
    dict(feature_axes=None),
    dict(feature_axes=0, epsilon=1e-6),
    dict(feature_axes=(0, -1)),
    dict(use_scale=False),
    dict(scale_init=nnx.initializers.constant(0.5)),
    dict(dtype=jnp.bfloat16),
    dict(dtype=jnp.float16, param_dtype=jnp.float16),
    dict(variable_filter=kernels_and_biases),
]


# every option on Linear; the other layer kinds with a few
WEIGHT_CASES = [('Linear', kwargs) for kwargs in WEIGHT_OPTIONS] + [
    ('Conv', dict()),
    ('Conv', dict(feature_axes=(0, -1), epsilon=1e-6)),
    ('Conv', dict(feature_axes=None, use_scale=False)),
    ('Einsum', dict(feature_axes=(1, 2))),
    ('LinearGeneral', dict(dtype=jnp.bfloat16)),
    ('Sequential', dict(variable_filter=kernels_and_biases)),
]


@pytest.mark.parametrize('layer, kwargs', WEIGHT_CASES, ids=case_id)
def test_weightnorm_state_and_outputs_match_flax_over_several_calls(layer, kwargs):
  ours, theirs, x = wrapped(layer, 'WeightNorm', **kwargs)
  assert_same_module(ours, theirs)
  assert_calls_match(ours, theirs, x, calls=2)


def test_weightnorm_wrapping_a_bfloat16_layer_matches_flax():
  ours, theirs, x = wrapped('Conv', 'WeightNorm', dict(param_dtype=jnp.bfloat16))
  assert_calls_match(ours, theirs, x, calls=2)


def test_weightnorm_gives_unit_norm_columns_times_the_scale():
  layer = nnx.WeightNorm(nnx.Linear(8, 4, rngs=nnx.Rngs(0)),
                         scale_init=nnx.initializers.constant(3.0), rngs=nnx.Rngs(1))
  layer(inputs((2, 8)))
  np.testing.assert_allclose(np.linalg.norm(layer.layer_instance.kernel.value, axis=0),
                             np.full(4, 3.0), rtol=1e-6)


def shifted_and_scaled(lib):
  """A WeightNorm around a layer whose call takes more than ``x``."""
  class Shifted(lib.Module):
    def __init__(self):
      self.kernel = lib.Param(jnp.arange(6.0).reshape(2, 3))

    def __call__(self, x, shift, *, factor=1.0):
      return (x @ self.kernel + shift) * factor

  return lib.WeightNorm(Shifted(), rngs=lib.Rngs(0))


def test_weightnorm_passes_extra_arguments_to_the_wrapped_layer():
  ours, theirs = shifted_and_scaled(nnx), shifted_and_scaled(fnnx)
  x = inputs((2, 2))
  assert_close(ours(x, 1.0, factor=2.0), theirs(x, 1.0, factor=2.0))


def test_weightnorm_scales_are_plain_arrays_not_params_as_in_flax():
  ours, theirs, _ = wrapped('Linear', 'WeightNorm')
  _, _, rest = nnx.split(ours, nnx.Param, ...)
  _, _, flax_rest = fnnx.split(theirs, fnnx.Param, ...)
  assert nnx.to_flat_state(rest).paths == tuple(p for p, _ in fnnx.to_flat_state(flax_rest))
  assert nnx.to_flat_state(rest).paths == (('scales', ('kernel',)),)


# -- gradients and training --------------------------------------------------------
def param_gradients(lib, layer, x):
  graphdef, params, rest = lib.split(layer, lib.Param, ...)

  def loss(params, rest):  # rest is traced too: Flax mutates only Variables of the trace
    return jnp.sum(lib.merge(graphdef, params, rest)(x) ** 2)

  return jax.grad(loss, argnums=(0, 1))(params, rest)[0]


@pytest.mark.parametrize('wrapper, layer, kwargs', [  # Linear: see the training steps below
    ('SpectralNorm', 'Conv', dict(n_steps=3)),
    ('WeightNorm', 'Einsum', dict(feature_axes=None)),
])
def test_gradients_through_the_normalization_match_flax(wrapper, layer, kwargs):
  ours, theirs, x = wrapped(layer, wrapper, **kwargs)
  grads, flax_grads = param_gradients(nnx, ours, x), param_gradients(fnnx, theirs, x)
  pairs = zip(nnx.to_flat_state(grads), fnnx.to_flat_state(flax_grads), strict=True)
  for (path, grad), (flax_path, flax_grad) in pairs:
    assert path == flax_path
    np.testing.assert_allclose(grad[...], flax_grad[...], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize('wrapper', ['SpectralNorm', 'WeightNorm'])
def test_training_steps_with_an_optimizer_match_flax(wrapper):
  ours, theirs, x = wrapped('Linear', wrapper)
  optimizers = (nnx.Optimizer(ours, optax.adam(0.1), wrt=nnx.Param),
                fnnx.Optimizer(theirs, optax.adam(0.1), wrt=fnnx.Param))
  for _ in range(3):
    losses = []
    for lib, model, optimizer in zip((nnx, fnnx), (ours, theirs), optimizers):
      loss, grads = lib.value_and_grad(lambda model: jnp.sum(model(x) ** 2))(model)
      optimizer.update(model, grads)
      losses.append(loss)
    np.testing.assert_allclose(*losses, rtol=1e-6)
    assert_same_state(ours, theirs)


@pytest.mark.parametrize('wrapper', ['SpectralNorm', 'WeightNorm'])
def test_calls_under_nnx_jit_update_the_wrapped_layer_like_flax(wrapper):
  ours, theirs, x = wrapped('Linear', wrapper)
  steps = nnx.jit(lambda model, x: model(x)), fnnx.jit(lambda model, x: model(x))
  for _ in range(3):
    assert_close(steps[0](ours, x), steps[1](theirs, x))
    assert_same_state(ours, theirs)


# -- errors that teach ---------------------------------------------------------------
@pytest.mark.parametrize('name', ['InstanceNorm', 'SpectralNorm', 'WeightNorm'])
def test_layers_raise_when_dtype_is_not_floating_point(name):
  def build(lib):
    if name == 'InstanceNorm':
      return lib.InstanceNorm(6, dtype=jnp.int32, rngs=lib.Rngs(0))
    return getattr(lib, name)(lib.Linear(6, 2, rngs=lib.Rngs(0)), dtype=jnp.int32,
                              rngs=lib.Rngs(1))

  with pytest.raises(ValueError, match=rf'{name}: dtype=int32 is not a floating-point type'):
    build(nnx)
  with pytest.raises(ValueError):  # Flax refuses it only when called
    build(fnnx)(jnp.ones((2, 6)))


def test_instancenorm_raises_when_the_input_features_differ_from_num_features():
  with pytest.raises(ValueError, match=r'InstanceNorm was built for num_features=6, but the '
                                       r'input of shape \(2, 3, 4\) has 4 features on '
                                       r'feature_axes=-1.*num_features=4'):
    nnx.InstanceNorm(6, rngs=nnx.Rngs(0))(jnp.ones((2, 3, 4)))
  with pytest.raises((TypeError, ValueError)):  # Flax fails too, deep inside JAX
    fnnx.InstanceNorm(6, rngs=fnnx.Rngs(0))(jnp.ones((2, 3, 4)))


def test_instancenorm_raises_when_feature_axes_include_the_batch_axis():
  with pytest.raises(ValueError, match=r'InstanceNorm: feature_axes=\(0, -1\) includes axis 0 '
                                       r'.*axis 0 is the batch.*x\[None\]'):
    nnx.InstanceNorm(6, feature_axes=(0, -1), rngs=nnx.Rngs(0))(jnp.ones((2, 3, 6)))
  with pytest.raises(ValueError):  # Flax refuses it too
    fnnx.InstanceNorm(6, feature_axes=(0, -1), rngs=fnnx.Rngs(0))(jnp.ones((2, 3, 6)))


def test_instancenorm_raises_when_feature_axes_are_out_of_range():
  with pytest.raises(ValueError, match=r'InstanceNorm: feature_axes=3 names axis 3, but the '
                                       r'input of shape \(2, 3, 6\) has rank 3, so its axes '
                                       r'are -3..2'):
    nnx.InstanceNorm(6, feature_axes=3, rngs=nnx.Rngs(0))(jnp.ones((2, 3, 6)))
  with pytest.raises(IndexError):  # Flax fails deep inside
    fnnx.InstanceNorm(6, feature_axes=3, rngs=fnnx.Rngs(0))(jnp.ones((2, 3, 6)))


def test_instancenorm_raises_when_the_mask_does_not_broadcast_to_the_input():
  with pytest.raises(ValueError, match=r'InstanceNorm: the mask of shape \(4,\) does not '
                                       r'broadcast to the input of shape \(2, 3, 6\)'):
    nnx.InstanceNorm(6, rngs=nnx.Rngs(0))(jnp.ones((2, 3, 6)), mask=jnp.ones(4, bool))
  with pytest.raises((TypeError, ValueError)):
    fnnx.InstanceNorm(6, rngs=fnnx.Rngs(0))(jnp.ones((2, 3, 6)), mask=jnp.ones(4, bool))


def test_spectralnorm_raises_on_a_kernel_that_is_not_a_matrix_when_asked_to():
  with pytest.raises(ValueError, match=r"SpectralNorm: the Param at \('kernel',\) of the "
                                       r'wrapped Conv has shape \(3, 3, 2, 3\) \(4-D\), but '
                                       r'error_on_non_matrix=True.*matrix of shape \(18, 3\)'):
    nnx.SpectralNorm(nnx.Conv(2, 3, kernel_size=(3, 3), rngs=nnx.Rngs(0)),
                     error_on_non_matrix=True, rngs=nnx.Rngs(1))
  with pytest.raises(ValueError, match='error_on_non_matrix'):  # Flax refuses it too
    fnnx.SpectralNorm(fnnx.Conv(2, 3, kernel_size=(3, 3), rngs=fnnx.Rngs(0)),
                      error_on_non_matrix=True, rngs=fnnx.Rngs(1))


def test_spectralnorm_with_error_on_non_matrix_accepts_a_matrix_like_flax():
  ours, theirs, x = wrapped('Linear', 'SpectralNorm', error_on_non_matrix=True)
  assert_calls_match(ours, theirs, x, calls=1)


def test_spectralnorm_raises_when_the_wrapped_layer_gained_a_weight():
  layers = [lib.SpectralNorm(lib.Linear(2, 3, rngs=lib.Rngs(0)), rngs=lib.Rngs(1))
            for lib in (nnx, fnnx)]
  for layer, lib in zip(layers, (nnx, fnnx)):
    layer.layer_instance.extra = lib.Param(jnp.ones((2, 2)))
  with pytest.raises(RuntimeError, match=r"SpectralNorm: the weight at \('extra',\) of the "
                                         r'wrapped Linear.*no power-iteration state.*wrap the '
                                         r'changed layer again'):
    layers[0](jnp.ones((1, 2)))
  with pytest.raises(RuntimeError):  # Flax refuses it too
    layers[1](jnp.ones((1, 2)))


def test_weightnorm_raises_when_the_filter_selects_no_weight():
  with pytest.raises(ValueError, match=r"WeightNorm: variable_filter=PathContains\('kernel', "
                                       r'exact=True\) selects no Param of the wrapped BatchNorm.*'
                                       r"\('scale',\).*nnx.PathContains\('scale'\)"):
    nnx.WeightNorm(nnx.BatchNorm(3, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(1))
  # Flax accepts it and silently normalizes nothing
  layer = fnnx.WeightNorm(fnnx.BatchNorm(3, rngs=fnnx.Rngs(0)), rngs=fnnx.Rngs(1))
  assert layer.scales == {}


def test_weightnorm_raises_when_feature_axes_are_out_of_range_for_the_weight():
  with pytest.raises(ValueError, match=r"WeightNorm: feature_axes=\(0, 2\) names axis 2, but "
                                       r"the weight at \('kernel',\) of shape \(2, 3\) has rank "
                                       r'2, so its axes are -2..1'):
    nnx.WeightNorm(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), feature_axes=(0, 2), rngs=nnx.Rngs(1))
  with pytest.raises(IndexError):  # Flax fails deep inside
    fnnx.WeightNorm(fnnx.Linear(2, 3, rngs=fnnx.Rngs(0)), feature_axes=(0, 2), rngs=fnnx.Rngs(1))


def test_weightnorm_without_scale_raises_for_out_of_range_feature_axes_when_called():
  layer = nnx.WeightNorm(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), feature_axes=2, use_scale=False,
                         rngs=nnx.Rngs(1))
  with pytest.raises(ValueError, match=r'WeightNorm: feature_axes=2 names axis 2'):
    layer(jnp.ones((1, 2)))


def test_weightnorm_raises_when_scale_init_needs_a_key():
  with pytest.raises(TypeError, match=r"WeightNorm: scale_init=.* failed when called as "
                                      r"scale_init\(rngs\['params'\], \(3,\)\).*initializers.ones"):
    nnx.WeightNorm(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), scale_init=nnx.initializers.normal(),
                   rngs=nnx.Rngs(1))
  with pytest.raises(TypeError):  # Flax passes the stream too, and fails the same way
    fnnx.WeightNorm(fnnx.Linear(2, 3, rngs=fnnx.Rngs(0)), scale_init=nnx.initializers.normal(),
                    rngs=fnnx.Rngs(1))


def test_weightnorm_raises_when_the_wrapped_weight_changed_shape():
  layer = nnx.WeightNorm(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(1))
  layer.layer_instance.kernel = nnx.Param(jnp.ones((2, 4)))
  with pytest.raises(RuntimeError, match=r"WeightNorm: the weight at \('kernel',\) of the "
                                         r'wrapped Linear has no scale of shape \(4,\).*wrap '
                                         r'the changed layer again'):
    layer(jnp.ones((1, 2)))
