"""MultiHeadAttention, measured against Flax 0.12.8."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx as fnnx

import nnx_edu as nnx
from tests.parity import assert_same_state, normalize_repr

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


def pair(config: dict, **extra):
  kwargs = {**config, **extra}
  return (nnx.MultiHeadAttention(rngs=nnx.Rngs(0), **kwargs),
          fnnx.MultiHeadAttention(rngs=fnnx.Rngs(0), **kwargs))


def masks(lib) -> dict:
  return {'none': None, 'padding': lib.make_attention_mask(PADDING, PADDING),
          'causal': lib.make_causal_mask(PADDING),
          'both': lib.combine_masks(lib.make_attention_mask(PADDING, PADDING),
                                    lib.make_causal_mask(PADDING))}


# -- construction ---------------------------------------------------------------
@pytest.mark.parametrize('name', CONFIGS)
def test_parameters_are_bit_identical_to_flax(name):
  ours, theirs = pair(CONFIGS[name], decode=False)
  assert_same_state(nnx.state(ours, nnx.Param), fnnx.state(theirs, fnnx.Param))


@pytest.mark.parametrize('name', CONFIGS)
def test_repr_matches_flax(name):
  ours, theirs = pair(CONFIGS[name], decode=False)
  assert normalize_repr(repr(ours)) == normalize_repr(repr(theirs))


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
  assert normalize_repr(repr(ours)) == normalize_repr(repr(theirs))
  # decoding the last token equals causal attention over the whole sequence
  np.testing.assert_allclose(last, ours(X, decode=False, is_causal=True)[:, -1:], atol=1e-6)


def test_init_cache_makes_cache_variables_like_flax():
  ours, theirs = pair(CONFIGS['grouped_query'], decode=True)
  ours.init_cache((1, 3, 8), dtype=jnp.bfloat16)
  theirs.init_cache((1, 3, 8), dtype=jnp.bfloat16)
  shapes = lambda lib, m: {p: (v[...].shape, v[...].dtype)
                           for p, v in lib.to_flat_state(lib.state(m, lib.Cache))}
  assert shapes(nnx, ours) == shapes(fnnx, theirs) == {
      ('cache_index',): ((), jnp.int32), ('cached_key',): ((1, 3, 2, 2), jnp.bfloat16),
      ('cached_value',): ((1, 3, 2, 2), jnp.bfloat16)}


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
