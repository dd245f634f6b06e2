"""Spec of the normalization layers: BatchNorm, LayerNorm and RMSNorm.

Each layer is built twice, by nnx_edu and by flax 0.12.8 from the same seed,
and must give bit-identical parameters, outputs within 1e-6, equal running
statistics and equal repr text.

The tests that run over every layer of this chapter run over GroupNorm (next
chapter) too, as its checks are this chapter's: the reprs and parameters, the
statistics across a named axis, and the errors for wrong features, masks and dtypes.
"""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx as fnnx

import nnx_edu as nnx
from tests.parity import (assert_close, assert_same_variables, build_both, normalize_repr,
                          offset_inputs, random_mask)


LAYERS = ['BatchNorm', 'LayerNorm', 'RMSNorm', 'GroupNorm']


# -- parameters and repr ----------------------------------------------------------
@pytest.mark.parametrize('name, args, kwargs', [
    ('BatchNorm', (6,), {}),
    ('BatchNorm', (6,), dict(use_scale=False, momentum=0.5, dtype=jnp.bfloat16)),
    ('LayerNorm', (6,), dict(param_dtype=jnp.bfloat16, reduction_axes=(1, 2))),
    ('LayerNorm', (6,), dict(use_bias=False, axis_name='batch')),
    ('RMSNorm', (6,), dict(use_fast_variance=False, axis_index_groups=[[0, 1]])),
    ('RMSNorm', (6,), dict(use_scale=False)),
    ('GroupNorm', (6,), dict(num_groups=3)),
    ('GroupNorm', (6,), dict(num_groups=None, group_size=3, use_bias=False)),
])
def test_repr_and_parameters_match_flax(name, args, kwargs):
  ours, theirs = build_both(name, *args, **kwargs)
  assert normalize_repr(repr(ours)) == normalize_repr(repr(theirs))
  assert_same_variables(ours, theirs)


@pytest.mark.parametrize('name', LAYERS)
@pytest.mark.parametrize('param_dtype', [jnp.float32, jnp.bfloat16])
def test_parameters_from_custom_initializers_are_bit_identical(name, param_dtype):
  kwargs = dict(param_dtype=param_dtype, scale_init=nnx.initializers.normal(0.5))
  if name != 'RMSNorm':
    kwargs['bias_init'] = nnx.initializers.uniform()
  if name == 'GroupNorm':
    kwargs['num_groups'] = 2
  ours, theirs = build_both(name, 8, seed=7, **kwargs)
  assert_same_variables(ours, theirs)


def test_metadata_reaches_the_parameters():
  ours, theirs = build_both('LayerNorm', 4, scale_metadata={'note': 'gamma'},
                       bias_metadata={'note': 'beta'})
  assert ours.scale.note == theirs.scale.note == 'gamma'
  assert ours.bias.note == theirs.bias.note == 'beta'


# -- BatchNorm --------------------------------------------------------------------
BATCHNORM_CASES = [  # (constructor arguments, input shape, mask shape or None)
    (dict(), (8, 3), None),
    (dict(), (8, 3), (8, 1)),
    (dict(momentum=0.5, epsilon=1e-3), (8, 3), None),
    (dict(use_fast_variance=False), (8, 3), (8, 3)),
    (dict(use_bias=False, use_scale=False), (8, 3), None),
    (dict(use_scale=False, bias_init=nnx.initializers.uniform()), (8, 3), None),
    (dict(dtype=jnp.bfloat16), (8, 3), None),
    (dict(param_dtype=jnp.bfloat16), (8, 3), (8, 1)),
    (dict(dtype=jnp.float32, param_dtype=jnp.bfloat16, momentum=0.9), (8, 3), None),
    (dict(axis=1), (8, 3, 2), None),
    (dict(axis=1, use_fast_variance=False, momentum=0.8), (8, 3, 2), (8, 1, 2)),
]


@pytest.mark.parametrize('kwargs, shape, mask_shape', BATCHNORM_CASES)
def test_batchnorm_training_then_eval_matches_flax(kwargs, shape, mask_shape):
  ours, theirs = build_both('BatchNorm', 3, **kwargs)
  mask = None if mask_shape is None else random_mask(*mask_shape).at[0].set(True)
  for step in range(3):  # training steps update the running statistics
    x = offset_inputs(*shape, seed=step)
    assert_close(ours(x, mask=mask), theirs(x, mask=mask))
    assert_same_variables(ours, theirs)
  ours.eval(), theirs.eval()
  assert ours.use_running_average is True
  x = offset_inputs(*shape, seed=10)
  assert_close(ours(x), theirs(x))
  assert_same_variables(ours, theirs)


@pytest.mark.parametrize('constructor_flag', [False, True, None])
@pytest.mark.parametrize('call_flag', [False, True])
def test_batchnorm_call_time_flag_wins_over_the_attribute(constructor_flag, call_flag):
  ours, theirs = build_both('BatchNorm', 3, use_running_average=constructor_flag, momentum=0.7)
  x = offset_inputs(5, 3)
  assert_close(ours(x, call_flag), theirs(x, call_flag))
  assert_same_variables(ours, theirs)
  updated = not np.array_equal(ours.mean[...], np.zeros(3))
  assert updated == (not call_flag)
  assert ours.use_running_average is constructor_flag


def test_batchnorm_train_and_eval_flip_use_running_average():
  ours = nnx.BatchNorm(3, use_running_average=True, rngs=nnx.Rngs(0))
  ours.train()
  assert ours.use_running_average is False
  ours.eval()
  assert ours.use_running_average is True


def test_batchnorm_gradients_match_flax():
  ours, theirs = build_both('BatchNorm', 3, scale_init=nnx.initializers.normal(1.0))
  x = offset_inputs(6, 3)

  def loss_and_grads(lib, layer):
    graphdef, params, rest = lib.split(layer, lib.Param, ...)

    def loss(params, rest):  # rest is traced too: Flax mutates only Variables of the trace
      y = lib.merge(graphdef, params, rest)(x)
      return jnp.sum(y ** 3)
    return jax.grad(loss, argnums=(0, 1))(params, rest)[0]

  ours_grads, flax_grads = loss_and_grads(nnx, ours), loss_and_grads(fnnx, theirs)
  for name in ('scale', 'bias'):
    np.testing.assert_allclose(ours_grads[name][...], flax_grads[name][...], rtol=1e-6)


# -- LayerNorm and RMSNorm --------------------------------------------------------
NORM_CASES = [  # (input shape, num_features, constructor arguments)
    ((5,), 5, dict()),  # no batch axis
    ((2, 3, 5), 5, dict()),
    ((2, 3, 5), 5, dict(reduction_axes=(1, 2))),
    ((2, 3, 5), 15, dict(reduction_axes=(1, 2), feature_axes=(1, 2))),
    ((2, 3, 5), 15, dict(reduction_axes=(-2, -1), feature_axes=(-1, -2))),
    ((2, 3, 5), 3, dict(feature_axes=1)),
    ((2, 3, 5), 5, dict(use_fast_variance=False, epsilon=1e-3)),
    ((2, 3, 5), 5, dict(use_bias=False, use_scale=False)),
    ((2, 3, 5), 5, dict(dtype=jnp.bfloat16)),
    ((2, 3, 5), 5, dict(param_dtype=jnp.bfloat16, scale_init=nnx.initializers.normal(1.0),
                        reduction_axes=(1, 2))),
    ((2, 3, 5), 5, dict(bias_init=nnx.initializers.uniform(), use_fast_variance=False,
                        reduction_axes=(1, 2))),
]


@pytest.mark.parametrize('name', ['LayerNorm', 'RMSNorm'])
@pytest.mark.parametrize('shape, num_features, kwargs', NORM_CASES)
def test_layernorm_and_rmsnorm_match_flax(name, shape, num_features, kwargs):
  if name == 'RMSNorm':  # no bias
    kwargs = {k: v for k, v in kwargs.items() if k not in ('use_bias', 'bias_init')}
  ours, theirs = build_both(name, num_features, **kwargs)
  x = offset_inputs(*shape)
  assert_close(ours(x), theirs(x))
  assert_same_variables(ours, theirs)


@pytest.mark.parametrize('name', ['LayerNorm', 'RMSNorm'])
@pytest.mark.parametrize('mask_shape', [(2, 3, 5), (2, 3, 1), (5,)])
def test_layernorm_and_rmsnorm_with_mask_match_flax(name, mask_shape):
  ours, theirs = build_both(name, 5)
  x, mask = offset_inputs(2, 3, 5), random_mask(*mask_shape).at[..., 0].set(True)
  assert_close(ours(x, mask=mask), theirs(x, mask=mask))


def test_layernorm_input_of_bfloat16_keeps_its_dtype_like_flax():
  ours, theirs = build_both('LayerNorm', 5, param_dtype=jnp.bfloat16)
  x = offset_inputs(3, 5, dtype=jnp.bfloat16)
  assert ours(x).dtype == jnp.bfloat16
  assert_close(ours(x), theirs(x))


# -- statistics across a named axis ------------------------------------------------
def run_under_vmap(lib, layer, x, mask):
  """Call a copy of ``layer`` on each x[i] under vmap; return outputs and new stats."""
  graphdef, state = lib.split(layer)

  def call(x, mask, state):  # state as an argument: Flax mutates only Variables made in the trace
    copy = lib.merge(graphdef, state)
    y = copy(x, mask=mask)
    return y, [getattr(copy, name)[...] for name in ('mean', 'var') if hasattr(copy, name)]

  return jax.vmap(call, axis_name='batch', in_axes=(0, None, None))(x, mask, state)


@pytest.mark.parametrize('name, kwargs, masked', [
    ('BatchNorm', dict(momentum=0.8), False),
    ('BatchNorm', dict(momentum=0.8), True),
    ('BatchNorm', dict(use_fast_variance=False), False),
    ('LayerNorm', dict(reduction_axes=(0, 1)), False),
    ('LayerNorm', dict(reduction_axes=(0, 1), use_fast_variance=False), True),
    ('RMSNorm', dict(), False),
    ('GroupNorm', dict(num_groups=3), False),
])
def test_axis_name_averages_across_vmap_like_flax(name, kwargs, masked):
  ours, theirs = build_both(name, 6, axis_name='batch', **kwargs)
  x = offset_inputs(4, 3, 6)  # vmapped over the 4: each call sees (3, 6)
  mask = random_mask(3, 6).at[0].set(True) if masked else None
  y, stats = run_under_vmap(nnx, ours, x, mask)
  fy, fstats = run_under_vmap(fnnx, theirs, x, mask)
  assert_close(y, fy)
  for ours_stat, flax_stat in zip(stats, fstats, strict=True):
    np.testing.assert_array_equal(ours_stat, flax_stat)


def test_batchnorm_axis_name_is_batchnorm_over_the_whole_batch():
  layer = nnx.BatchNorm(6, axis_name='batch', rngs=nnx.Rngs(0))
  x = offset_inputs(4, 3, 6)
  y, (mean, var) = run_under_vmap(nnx, layer, x, None)
  batch = np.asarray(x).reshape(12, 6)  # all 4 x 3 rows form one batch
  expected = (batch - batch.mean(0)) / np.sqrt(batch.var(0) + 1e-5)
  np.testing.assert_allclose(y.reshape(12, 6), expected, atol=1e-5)
  for copy_mean in mean:  # every vmapped copy holds the same, whole-batch running mean
    np.testing.assert_allclose(copy_mean, 0.01 * batch.mean(0), rtol=1e-5)


AXIS_INDEX_GROUPS_SCRIPT = textwrap.dedent('''
    import jax, numpy as np
    from flax import nnx as fnnx
    import nnx_edu as nnx
    x = jax.random.normal(jax.random.key(0), (4, 5, 3)) + 1.0
    for name in ['BatchNorm', 'LayerNorm']:
      results = []
      for lib in (nnx, fnnx):
        layer = getattr(lib, name)(3, axis_name='devices', rngs=lib.Rngs(0),
                                   axis_index_groups=[[0, 1], [2, 3]])
        graphdef, state = lib.split(layer)
        def call(x, state):
          copy = lib.merge(graphdef, state)
          return copy(x), lib.state(copy)
        results.append(jax.pmap(call, axis_name='devices', in_axes=(0, None))(x, state))
      (y, state), (fy, fstate) = results
      np.testing.assert_allclose(y, fy, rtol=1e-6, atol=1e-6)
      for key in ('mean', 'var'):
        if key in fstate:
          np.testing.assert_allclose(state[key][...], fstate[key][...], rtol=1e-6)
    print('same')
''')


def test_axis_index_groups_under_pmap_match_flax():
  # jax.vmap refuses axis_index_groups (NotImplementedError), so this runs
  # under pmap on four CPU devices, in a fresh process that can ask for them.
  env = {**os.environ, 'XLA_FLAGS': '--xla_force_host_platform_device_count=4',
         'JAX_PLATFORMS': 'cpu'}
  result = subprocess.run([sys.executable, '-c', AXIS_INDEX_GROUPS_SCRIPT], env=env,
                          capture_output=True, text=True, timeout=120, cwd='/')
  assert result.stdout.strip() == 'same', result.stderr[-3000:]


# -- errors that teach ---------------------------------------------------------------
def six_features(lib, name, **kwargs):
  """The layer ``name`` from ``lib`` (nnx_edu or Flax) for 6 features."""
  if name == 'GroupNorm':
    kwargs['num_groups'] = 2
  return getattr(lib, name)(6, rngs=lib.Rngs(0), **kwargs)


@pytest.mark.parametrize('name', LAYERS)
def test_layers_raise_when_the_input_features_differ_from_num_features(name):
  with pytest.raises(ValueError, match=rf'{name} was built for num_features=6, but the input '
                                       r'of shape \(2, 4\) has 4 features on .*num_features=4'):
    six_features(nnx, name)(jnp.ones((2, 4)))
  with pytest.raises((TypeError, ValueError)):  # Flax fails too, deep inside JAX
    six_features(fnnx, name)(jnp.ones((2, 4)))


@pytest.mark.parametrize('name', LAYERS)
def test_layers_raise_when_the_mask_does_not_broadcast_to_the_input(name):
  with pytest.raises(ValueError, match=rf'{name}: the mask of shape \(3,\) does not broadcast '
                                       r'to the input of shape \(2, 6\).*\(2, 1\)'):
    six_features(nnx, name)(jnp.ones((2, 6)), mask=jnp.ones(3, bool))
  with pytest.raises((TypeError, ValueError)):
    six_features(fnnx, name)(jnp.ones((2, 6)), mask=jnp.ones(3, bool))


@pytest.mark.parametrize('name', LAYERS)
def test_layers_raise_when_dtype_is_not_floating_point(name):
  with pytest.raises(ValueError, match=rf'{name}: dtype=int32 is not a floating-point type.*'
                                       r'dtype=jnp.float32'):
    six_features(nnx, name, dtype=jnp.int32)
  with pytest.raises(ValueError):  # Flax refuses it only when called
    six_features(fnnx, name, dtype=jnp.int32)(jnp.ones((2, 6)))


def test_batchnorm_raises_when_use_running_average_is_nowhere_given():
  layer = nnx.BatchNorm(3, use_running_average=None, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r'use_running_average is None in the constructor and in '
                                       r'the call.*model.train\(\) / model.eval\(\)'):
    layer(jnp.ones((2, 3)))
