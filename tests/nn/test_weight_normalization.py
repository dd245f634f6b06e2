"""Spec of the layers that normalize another layer's weights: SpectralNorm and WeightNorm.

Each wrapper is built twice, around the same layer, by nnx_edu and by flax 0.12.8
from the same seed, and must give bit-identical parameters and state (same
paths, Variable types, dtypes and values, also after several calls), outputs
within 1e-6, equal gradients and equal repr text.  (Their error for a dtype that
is not floating point is tested with InstanceNorm's, in test_group_normalization.py.)
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx as fnnx

import nnx_edu as nnx
from tests.parity import (assert_close, assert_same_module, assert_same_state, normalize_repr,
                          offset_inputs)

# Flax stores a float32 result into a half-precision Variable with
# ``variable[...] = value``, which JAX warns will someday be an error.
pytestmark = pytest.mark.filterwarnings('ignore:scatter inputs have incompatible types')


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
  return (*pair, offset_inputs(*shape))


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
  assert normalize_repr(repr(ours)) == normalize_repr(repr(theirs))


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
  layer(offset_inputs(2, 6))
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
  layer(offset_inputs(2, 8))
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
  x = offset_inputs(2, 2)
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
