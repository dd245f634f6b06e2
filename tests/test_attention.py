"""MultiHeadAttention and the attention functions, measured against Flax 0.12.8."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx as fnnx
from flax.nnx.nn import attention as fattention

import nnx_edu as nnx

jax.config.update('jax_default_matmul_precision', 'highest')

# Test data comes from NumPy: every new shape given to jax.random costs a compile.
RNG = np.random.default_rng(0)
X = jnp.asarray(RNG.normal(size=(2, 5, 8)), jnp.float32)      # [batch, length, features]
KV = jnp.asarray(RNG.normal(size=(2, 5, 6)), jnp.float32)
PADDING = jnp.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])

# Few distinct head shapes, because each new shape costs JAX a compile.
CONFIGS = {
    'defaults': dict(num_heads=2, in_features=8),
    'qkv_out': dict(num_heads=4, in_features=8, qkv_features=16, out_features=3),
    'no_bias_qk_norm': dict(num_heads=2, in_features=8, use_bias=False, normalize_qk=True),
    'grouped_query': dict(num_heads=4, in_features=8, num_kv_heads=2),  # head_dim 2
    'grouped_qk_norm': dict(num_heads=4, in_features=8, num_kv_heads=2, normalize_qk=True),
    'dropout': dict(num_heads=2, in_features=8, dropout_rate=0.3),
    'custom_init': dict(num_heads=2, in_features=8, out_kernel_init=jax.nn.initializers.ones,
                        bias_init=jax.nn.initializers.normal(1.0)),
}


def text(module) -> str:
  return re.sub(r' at 0x[0-9a-f]+', '', repr(module))


def pair(config: dict, **extra):
  kwargs = {**config, **extra}
  return (nnx.MultiHeadAttention(rngs=nnx.Rngs(0), **kwargs),
          fnnx.MultiHeadAttention(rngs=fnnx.Rngs(0), **kwargs))


def flat(lib, state) -> dict:
  return {path: variable.get_value() for path, variable in lib.to_flat_state(state)}


def masks(lib) -> dict:
  return {'none': None, 'padding': lib.make_attention_mask(PADDING, PADDING),
          'causal': lib.make_causal_mask(PADDING),
          'both': lib.combine_masks(lib.make_attention_mask(PADDING, PADDING),
                                    lib.make_causal_mask(PADDING))}


# -- construction ---------------------------------------------------------------
@pytest.mark.parametrize('name', CONFIGS)
def test_parameters_are_bit_identical_to_flax(name):
  ours, theirs = pair(CONFIGS[name], decode=False)
  ours = flat(nnx, nnx.state(ours, nnx.Param))
  theirs = flat(fnnx, fnnx.state(theirs, fnnx.Param))
  assert list(ours) == list(theirs)
  for path in ours:
    np.testing.assert_array_equal(ours[path], theirs[path])


@pytest.mark.parametrize('name', CONFIGS)
def test_repr_matches_flax(name):
  ours, theirs = pair(CONFIGS[name], decode=False)
  assert text(ours) == text(theirs)


# -- the forward pass -----------------------------------------------------------
@pytest.mark.parametrize('name', ['defaults', 'qkv_out', 'no_bias_qk_norm', 'grouped_query'])
@pytest.mark.parametrize('mask', ['none', 'padding', 'causal', 'both'])
def test_outputs_match_flax(name, mask):
  ours, theirs = pair(CONFIGS[name], decode=False, deterministic=True)
  np.testing.assert_allclose(ours(X, mask=masks(nnx)[mask]),
                             theirs(X, mask=masks(fnnx)[mask]), atol=1e-6)


@pytest.mark.filterwarnings('ignore:Using .Module.sow:DeprecationWarning')  # Flax's own sow
@pytest.mark.parametrize('config', ['defaults', 'grouped_query'])
def test_is_causal_and_sown_weights_match_flax(config):
  ours, theirs = pair(CONFIGS[config], decode=False)
  np.testing.assert_allclose(ours(X, is_causal=True), theirs(X, is_causal=True), atol=1e-6)
  np.testing.assert_allclose(ours(X, is_causal=True, sow_weights=True),
                             theirs(X, is_causal=True, sow_weights=True), atol=1e-6)
  np.testing.assert_allclose(ours.attention_weights.get_value()[0],
                             theirs.attention_weights.get_value()[0], atol=1e-6)


def test_cross_attention_with_in_kv_features_matches_flax():
  ours, theirs = pair(CONFIGS['defaults'], in_kv_features=6, decode=False)
  np.testing.assert_allclose(ours(X, KV), theirs(X, KV), atol=1e-6)


@pytest.mark.parametrize('config, broadcast_dropout', [('dropout', True), ('dropout', False),
                                                       ('grouped_query', True)])
def test_dropout_masks_match_flax_call_after_call(config, broadcast_dropout):
  ours, theirs = pair(CONFIGS[config], dropout_rate=0.5, broadcast_dropout=broadcast_dropout,
                      decode=False, deterministic=False)
  for _ in range(2):
    np.testing.assert_allclose(ours(X), theirs(X), atol=1e-6)


def test_rngs_given_to_the_call_match_flax_without_kept_rngs():
  ours, theirs = pair(CONFIGS['dropout'], keep_rngs=False, decode=False)
  assert ours.rngs is None
  np.testing.assert_allclose(ours(X, deterministic=False, rngs=nnx.Rngs(dropout=3)),
                             theirs(X, deterministic=False, rngs=fnnx.Rngs(dropout=3)), atol=1e-6)


def test_eval_switches_attention_dropout_off():
  ours, _ = pair(CONFIGS['dropout'], decode=False, deterministic=False)
  ours.eval()
  np.testing.assert_array_equal(ours(X), ours(X, deterministic=True))


# -- decoding -------------------------------------------------------------------
@pytest.mark.parametrize('name', ['defaults', 'grouped_qk_norm'])
def test_decode_matches_flax_step_by_step(name):
  ours, theirs = pair(CONFIGS[name], decode=True)
  ours.init_cache(X.shape)
  theirs.init_cache(X.shape)
  for t in range(X.shape[1]):
    last = ours(X[:, t:t + 1])
    np.testing.assert_allclose(last, theirs(X[:, t:t + 1]), atol=1e-6)
    np.testing.assert_allclose(ours.cached_value[...], theirs.cached_value[...], atol=1e-6)
  assert int(ours.cache_index[...]) == X.shape[1]
  assert text(ours) == text(theirs)
  # decoding the last token equals causal attention over the whole sequence
  np.testing.assert_allclose(last, ours(X, decode=False, is_causal=True)[:, -1:], atol=1e-6)


def test_init_cache_makes_cache_variables_like_flax():
  ours, theirs = pair(CONFIGS['grouped_query'], decode=True)
  ours.init_cache((1, 3, 8), dtype=jnp.bfloat16)
  theirs.init_cache((1, 3, 8), dtype=jnp.bfloat16)
  shapes = lambda lib, m: {p: (v.shape, v.dtype)
                           for p, v in flat(lib, lib.state(m, lib.Cache)).items()}
  assert shapes(nnx, ours) == shapes(fnnx, theirs) == {
      ('cache_index',): ((), jnp.int32), ('cached_key',): ((1, 3, 2, 2), jnp.bfloat16),
      ('cached_value',): ((1, 3, 2, 2), jnp.bfloat16)}


# -- the functions --------------------------------------------------------------
@pytest.mark.parametrize('extra_batch_dims', [0, 2])
def test_mask_helpers_match_flax(extra_batch_dims):
  ours = nnx.make_causal_mask(PADDING, extra_batch_dims=extra_batch_dims)
  np.testing.assert_array_equal(ours, fnnx.make_causal_mask(PADDING, extra_batch_dims))
  pad = lambda lib: lib.make_attention_mask(PADDING, PADDING[:, :4], jnp.logical_and,
                                            extra_batch_dims, dtype=jnp.int32)
  np.testing.assert_array_equal(pad(nnx), pad(fnnx))
  assert nnx.combine_masks(None, None) is None


@pytest.mark.parametrize('heads, kv_heads, depth, dropout_rate', [(2, 2, 4, 0.0), (4, 2, 2, 0.4)])
def test_attention_functions_match_flax_with_two_batch_axes(heads, kv_heads, depth, dropout_rate):
  # (head shapes as in the layers above, so that JAX compiles little that is new)
  q = jnp.asarray(RNG.normal(size=(1, 2, 5, heads, depth)), jnp.float32)
  k, v = (jnp.asarray(RNG.normal(size=(1, 2, 5, kv_heads, depth)), jnp.float32) for _ in 'kv')
  mask = jnp.asarray(RNG.random((1, 2, 1, 5, 5)) < 0.7)
  kwargs = dict(mask=mask, dropout_rate=dropout_rate, dropout_rng=jax.random.key(0))
  np.testing.assert_allclose(nnx.dot_product_attention(q, k, v, **kwargs),
                             fattention.dot_product_attention(q, k, v, **kwargs), atol=1e-6)
  np.testing.assert_allclose(nnx.dot_product_attention_weights(q, k, **kwargs),
                             fattention.dot_product_attention_weights(q, k, **kwargs), atol=1e-6)


# -- errors that teach ----------------------------------------------------------
def test_raises_when_qkv_features_is_not_divisible_by_num_heads():
  with pytest.raises(ValueError, match='qkv_features=10 must be divisible by num_heads=4'):
    nnx.MultiHeadAttention(4, 8, qkv_features=10, rngs=nnx.Rngs(0))


def test_raises_when_decoding_before_init_cache():
  layer = nnx.MultiHeadAttention(2, 8, decode=True, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r'decode=True needs the key/value cache.*init_cache'):
    layer(X[:, :1])


def test_raises_when_inputs_last_axis_differs_from_in_features():
  layer = nnx.MultiHeadAttention(2, 8, decode=False, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r'inputs_q has 6 features .* in_features=8'):
    layer(KV)


def test_raises_when_mask_cannot_broadcast_to_the_attention_weights():
  layer = nnx.MultiHeadAttention(2, 8, decode=False, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r'mask of shape \(2, 1, 5, 4\) cannot broadcast .* '
                                       r'\(2, 2, 5, 5\)'):
    layer(X, mask=jnp.ones((2, 1, 5, 4)))


def test_raises_when_num_heads_is_not_divisible_by_num_kv_heads():
  with pytest.raises(ValueError, match='num_heads=4 must be divisible by num_kv_heads=3'):
    nnx.MultiHeadAttention(4, 8, num_kv_heads=3, rngs=nnx.Rngs(0))


def test_raises_when_inputs_v_comes_without_inputs_k():
  layer = nnx.MultiHeadAttention(2, 8, decode=False, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='inputs_v was given without inputs_k'):
    layer(X, inputs_v=X)


@pytest.mark.parametrize('flag', ['decode', 'deterministic'])
def test_raises_when_a_flag_is_none_in_constructor_and_call(flag):
  layer = nnx.MultiHeadAttention(2, 8, dropout_rate=0.1, rngs=nnx.Rngs(0),
                                 **{'decode': False, 'deterministic': False, flag: None})
  with pytest.raises(ValueError, match=f'{flag} is None both in the constructor and in the call'):
    layer(X)


def test_raises_when_dropout_needs_rngs_but_none_are_kept_or_given():
  layer = nnx.MultiHeadAttention(2, 8, dropout_rate=0.1, keep_rngs=False, decode=False,
                                 rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='needs random keys'):
    layer(X, deterministic=False)


def test_raises_when_decoding_more_than_one_token_at_a_time():
  layer = nnx.MultiHeadAttention(2, 8, decode=True, rngs=nnx.Rngs(0))
  layer.init_cache(X.shape)
  with pytest.raises(ValueError, match=r'feed one token at a time.*\(2, 1\)'):
    layer(X[:, :2])


def test_combine_masks_raises_when_ranks_differ():
  with pytest.raises(ValueError, match='combine_masks: all masks must have the same rank'):
    nnx.combine_masks(jnp.ones((1, 5, 5)), jnp.ones((2, 1, 5, 5)))


@pytest.mark.parametrize('key_shape, value_shape, rule', [
    ((1, 5, 2, 4), (1, 5, 2, 4), 'equal batch axes'),
    ((2, 5, 2, 3), (2, 5, 2, 4), 'same depth'),
    ((2, 5, 2, 4), (2, 6, 2, 4), 'same length'),
    ((2, 5, 3, 4), (2, 5, 3, 4), 'multiple of the key/value heads'),
])
def test_dot_product_attention_raises_on_mismatched_shapes(key_shape, value_shape, rule):
  q = jnp.ones((2, 5, 2, 4))
  with pytest.raises(ValueError, match=f'dot_product_attention: .*{rule}'):
    nnx.dot_product_attention(q, jnp.ones(key_shape), jnp.ones(value_shape))
