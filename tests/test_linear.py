"""Linear layers and convolutions: parity with Flax 0.12.8, and errors that teach.

Every parity case builds the layer in both libraries from the same seed and
checks: parameters bit-identical, ``repr`` text equal, the State's shape tree
equal, and outputs within 1e-6.

Drawing a parameter compiles the initializer once per shape and dtype, which
dominates the run time; so the cases share a few parameter shapes: dense
kernels are drawn as (6, 4), 2-D conv kernels as (3, 2, 4, 8).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx as fnnx
from jax.sharding import PartitionSpec as P

import nnx_edu as nnx
from parity import normalize_repr

jax.config.update('jax_default_matmul_precision', 'highest')

BF16 = jnp.bfloat16


def build_both(name, *args, **kwargs):
  """The layer ``name`` built by nnx_edu and by Flax, from the same seed."""
  ours = getattr(nnx, name)(*args, rngs=nnx.Rngs(0), **kwargs)
  theirs = getattr(fnnx, name)(*args, rngs=fnnx.Rngs(0), **kwargs)
  return ours, theirs


def assert_same_layer(ours, theirs):
  assert normalize_repr(repr(ours)) == normalize_repr(repr(theirs))
  assert (repr(jax.tree.map(jnp.shape, nnx.state(ours)))
          == repr(jax.tree.map(jnp.shape, fnnx.state(theirs))))
  our_leaves, their_leaves = jax.tree.leaves(nnx.state(ours)), jax.tree.leaves(fnnx.state(theirs))
  assert len(our_leaves) == len(their_leaves)
  for a, b in zip(our_leaves, their_leaves):
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(a, b)


def assert_same_output(y_ours, y_theirs):
  assert y_ours.shape == y_theirs.shape and y_ours.dtype == y_theirs.dtype
  np.testing.assert_allclose(np.asarray(y_ours, np.float64), np.asarray(y_theirs, np.float64),
                             rtol=1e-6, atol=1e-6)


def check_parity(name, args, kwargs, x):
  ours, theirs = build_both(name, *args, **kwargs)
  assert_same_layer(ours, theirs)
  assert_same_output(ours(x), theirs(x))
  return ours, theirs


def inputs(*shape, dtype=jnp.float32):
  # numpy draws them: a jax.random draw would compile once per new shape
  return jnp.asarray(np.random.default_rng(1).standard_normal(shape), dtype)


# -- Linear --------------------------------------------------------------------------
LINEAR_OPTIONS = [
    {},
    {'use_bias': False},
    {'dtype': BF16},
    {'param_dtype': BF16},
    {'dtype': BF16, 'preferred_element_type': jnp.float32},
    {'precision': jax.lax.Precision.HIGHEST, 'dot_general': jax.lax.dot_general,
     'kernel_init': jax.nn.initializers.ones, 'bias_init': jax.nn.initializers.constant(0.5)},
]


@pytest.mark.parametrize('options', LINEAR_OPTIONS)
def test_linear_matches_flax(options):
  check_parity('Linear', (6, 4), options, inputs(2, 6))


@pytest.mark.parametrize('shape', [(6,), (2, 3, 6)])
def test_linear_takes_inputs_without_or_with_several_batch_axes(shape):
  check_parity('Linear', (6, 4), {}, inputs(*shape))


def test_linear_passes_its_metadata_to_the_params():
  layer = nnx.Linear(6, 4, kernel_metadata={'sharding': ('a', 'b')}, rngs=nnx.Rngs(0))
  assert layer.kernel.sharding == ('a', 'b')


# -- LinearGeneral -------------------------------------------------------------------
LINEAR_GENERAL_CASES = [  # (in_features, out_features, options, input shape)
    (6, 4, {}, (2, 6)),
    (6, 4, {}, (6,)),
    (6, 4, {'axis': 0}, (6, 5, 3)),
    ((2, 3), (2, 2), {'axis': (1, -1)}, (5, 2, 3)),
    ((2, 3), 4, {'axis': (-2, -1), 'use_bias': False}, (5, 2, 3)),
    (3, (4,), {'batch_axis': {0: 2}}, (2, 5, 3)),
    (1, (2, 2), {'batch_axis': {0: 2, 1: 3}, 'dtype': BF16}, (2, 3, 1)),
    (6, 4, {'param_dtype': BF16, 'dot_general': jax.lax.dot_general}, (2, 7, 6)),
    (6, 4, {'dot_general_cls': lambda: jax.lax.dot_general,
            'preferred_element_type': jnp.float32}, (2, 6)),
]


@pytest.mark.parametrize('in_features,out_features,options,shape', LINEAR_GENERAL_CASES)
def test_linear_general_matches_flax(in_features, out_features, options, shape):
  check_parity('LinearGeneral', (in_features, out_features), options, inputs(*shape))


def test_linear_general_keeps_with_metadata_when_reshaping_its_kernel():
  init = nnx.with_metadata(nnx.initializers.lecun_normal(), sharding=('a', 'b', 'c'))
  layer = nnx.LinearGeneral((2, 3), 4, axis=(-2, -1), kernel_init=init, rngs=nnx.Rngs(0))
  assert layer.kernel.shape == (2, 3, 4) and layer.kernel.sharding == ('a', 'b', 'c')


# -- Einsum --------------------------------------------------------------------------
EINSUM_CASES = [  # (einsum_str, kernel_shape, bias_shape, options, input shape)
    ('nta,hab->nthb', (2, 3, 4), (2, 4), {}, (3, 5, 3)),
    ('ab,bc->ac', (6, 4), (4,), {'dtype': BF16}, (2, 6)),
    ('ab, bc -> ac', (6, 4), None, {'param_dtype': BF16}, (2, 6)),
    ('...a,ab->...b', (6, 4), (4,), {}, (2, 5, 6)),
    ('ij,jk->ki', (6, 4), (4,), {'preferred_element_type': jnp.float32, 'dtype': BF16}, (2, 6)),
    ('abc,cd->abd', (6, 4), (4,), {'precision': jax.lax.Precision.HIGHEST}, (2, 3, 6)),
]


@pytest.mark.parametrize('einsum_str,kernel_shape,bias_shape,options,shape', EINSUM_CASES)
def test_einsum_matches_flax(einsum_str, kernel_shape, bias_shape, options, shape):
  check_parity('Einsum', (einsum_str, kernel_shape, bias_shape), options, inputs(*shape))


def test_einsum_takes_its_string_at_call_time_when_the_constructor_has_none():
  ours = nnx.Einsum(None, (6, 4), (4,), rngs=nnx.Rngs(0))
  theirs = fnnx.Einsum('ab,bc->ac', (6, 4), (4,), rngs=fnnx.Rngs(0))
  x = inputs(2, 6)
  assert_same_output(ours(x, 'ab,bc->ac'), theirs(x))


# -- Conv ----------------------------------------------------------------------------
PADDINGS_2D = ['SAME', 'VALID', 'CIRCULAR', 'REFLECT', 2, (1, 0), ((1, 2), (0, 1))]


@pytest.mark.parametrize('options', [
    {}, {'kernel_dilation': (2, 1), 'feature_group_count': 2, 'use_bias': False}])
@pytest.mark.parametrize('strides', [1, (2, 1)])
@pytest.mark.parametrize('padding', PADDINGS_2D)
def test_conv_matches_flax(padding, strides, options):
  check_parity('Conv', (4, 8, (3, 2), strides), {'padding': padding, **options},
               inputs(2, 7, 6, 4))


@pytest.mark.parametrize('options', [
    {'param_dtype': BF16, 'padding': 'same'},
    {'dtype': BF16, 'preferred_element_type': jnp.float32, 'kernel_dilation': 2},
    {'precision': jax.lax.Precision.HIGHEST, 'padding': 'CIRCULAR', 'strides': 2},
    # lax cannot work out string paddings for dilated inputs, in Flax too
    {'padding': ((1, 2), (0, 1)), 'input_dilation': (1, 2), 'strides': (2, 1)}])
def test_conv_dtypes_precision_and_input_dilation_match_flax(options):
  check_parity('Conv', (4, 8, (3, 2)), options, inputs(2, 7, 6, 4))


@pytest.mark.parametrize('shape', [(7, 6, 4), (2, 3, 7, 6, 4)])
def test_conv_takes_inputs_without_or_with_several_batch_axes(shape):
  check_parity('Conv', (4, 8, (3, 2)), {'strides': 2}, inputs(*shape))


@pytest.mark.parametrize('kernel_dilation', [1, 2])
@pytest.mark.parametrize('strides', [1, 2])
def test_conv_causal_padding_matches_flax(strides, kernel_dilation):
  x = inputs(2, 9, 4)
  ours, _ = check_parity('Conv', (4, 8, 3, strides),
                         {'padding': 'CAUSAL', 'kernel_dilation': kernel_dilation}, x)
  if strides == 1:  # output t sees inputs <= t only
    changed_future = x.at[:, 5:].set(0.0)
    np.testing.assert_array_equal(ours(x)[:, :5], ours(changed_future)[:, :5])


def test_conv_with_mask_matches_flax_and_multiplies_the_kernel():
  mask = jnp.tril(jnp.ones((3, 4, 8)))
  x = inputs(2, 9, 4)
  masked, _ = check_parity('Conv', (4, 8, 3), {'mask': mask, 'padding': 'VALID'}, x)
  plain = nnx.Conv(4, 8, 3, padding='VALID', rngs=nnx.Rngs(0))
  plain.kernel[...] = plain.kernel[...] * mask
  np.testing.assert_array_equal(masked(x), plain(x))


# -- ConvTranspose -------------------------------------------------------------------
@pytest.mark.parametrize('options', [
    {}, {'transpose_kernel': True, 'kernel_dilation': (1, 2), 'use_bias': False}])
@pytest.mark.parametrize('strides', [None, (2, 1)])
@pytest.mark.parametrize('padding', ['SAME', 'VALID', 'CIRCULAR', 1, ((1, 2), (0, 1))])
def test_conv_transpose_matches_flax(padding, strides, options):
  check_parity('ConvTranspose', (4, 3, (3, 2), strides), {'padding': padding, **options},
               inputs(2, 5, 4, 4))


@pytest.mark.parametrize('options', [
    {'param_dtype': BF16, 'padding': 'CIRCULAR', 'strides': 2},
    {'dtype': BF16, 'preferred_element_type': jnp.float32, 'kernel_dilation': 2},
    {'precision': jax.lax.Precision.HIGHEST, 'transpose_kernel': True, 'padding': 'CIRCULAR',
     'strides': (1, 3)}])
def test_conv_transpose_dtypes_and_precision_match_flax(options):
  check_parity('ConvTranspose', (4, 3, (3, 2)), options, inputs(2, 5, 4, 4))


@pytest.mark.parametrize('shape', [(5, 4, 4), (2, 3, 5, 4, 4)])
def test_conv_transpose_takes_inputs_without_or_with_several_batch_axes(shape):
  mask = jnp.ones((3, 2, 4, 3)).at[0].set(0.0)
  check_parity('ConvTranspose', (4, 3, (3, 2), 2), {'mask': mask, 'padding': 'CIRCULAR'},
               inputs(*shape))


# -- Embed ---------------------------------------------------------------------------
@pytest.mark.parametrize('num_embeddings,options', [
    (5, {}), (5, {'param_dtype': BF16}), (5, {'dtype': BF16}), (1, {})])
def test_embed_matches_flax_and_follows_its_index_rules(num_embeddings, options):
  ours, theirs = build_both('Embed', num_embeddings, 3, **options)
  assert_same_layer(ours, theirs)
  indices = jnp.array([[0, 1, 2], [-1, -2, 4], [5, 7, -6]])
  y = ours(indices)
  y_theirs = theirs(indices)
  assert y.dtype == y_theirs.dtype
  table = ours.embedding[...].astype(y.dtype).astype(jnp.float32)
  y, y_theirs = y.astype(jnp.float32), y_theirs.astype(jnp.float32)
  np.testing.assert_array_equal(y, y_theirs)  # nan == nan here
  if num_embeddings == 1:  # the single row, broadcast to every index
    np.testing.assert_array_equal(y, jnp.broadcast_to(table[0], (3, 3, 3)))
  else:  # negative indices count from the end; out of range gives nan
    np.testing.assert_array_equal(y[1, 0], table[4])
    assert jnp.isnan(y[2]).all()
  query = inputs(2, 3, dtype=options.get('param_dtype', jnp.float32))
  assert_same_output(ours.attend(query), theirs.attend(query))


def test_embed_uses_flax_default_initializer():
  ours = nnx.Embed(5, 3, rngs=nnx.Rngs(3))
  expected = jax.nn.initializers.variance_scaling(1.0, 'fan_in', 'normal', out_axis=0)(
      nnx.Rngs(3).params(), (5, 3), jnp.float32)
  np.testing.assert_array_equal(ours.embedding[...], expected)


def test_embed_with_an_integer_table_stays_integer():
  ours, theirs = build_both('Embed', 4, 2, param_dtype=jnp.int32,
                            embedding_init=jax.nn.initializers.constant(7))
  indices = jnp.array([0, 3, -1])
  assert ours(indices).dtype == jnp.int32
  np.testing.assert_array_equal(ours(indices), theirs(indices))


# -- sharding and tracing -------------------------------------------------------------
@pytest.mark.parametrize('call', [
    lambda lib: lib.Linear(6, 4, rngs=lib.Rngs(0))(inputs(2, 6), out_sharding=P('x', None)),
    lambda lib: lib.Conv(4, 8, 3, rngs=lib.Rngs(0))(inputs(2, 9, 4),
                                                   out_sharding=P('x', None, None)),
    lambda lib: lib.Embed(5, 3, rngs=lib.Rngs(0))(jnp.array([0, 4]), out_sharding=P('x', None)),
    lambda lib: lib.Embed(5, 3, rngs=lib.Rngs(0)).attend(inputs(2, 3),
                                                         out_sharding=P('x', None)),
])
def test_out_sharding_shards_the_output_as_in_flax(call):
  mesh = jax.make_mesh((1,), ('x',), axis_types=(jax.sharding.AxisType.Explicit,))
  with jax.set_mesh(mesh):
    ours, theirs = call(nnx), call(fnnx)
  assert jax.typeof(ours).sharding.spec == jax.typeof(theirs).sharding.spec
  assert jax.typeof(ours).sharding.spec[0] == 'x'
  assert_same_output(ours, theirs)


def test_layers_check_their_inputs_under_jit():
  conv, embed = nnx.Conv(4, 8, 3, rngs=nnx.Rngs(0)), nnx.Embed(5, 3, rngs=nnx.Rngs(0))
  x, indices = inputs(2, 9, 4), jnp.array([0, 4])
  np.testing.assert_array_equal(jax.jit(conv)(x), conv(x))
  np.testing.assert_array_equal(jax.jit(embed)(indices), embed(indices))
  with pytest.raises(ValueError, match='Conv: inputs of shape'):
    jax.jit(conv)(inputs(2, 9, 3))


# -- errors that teach ---------------------------------------------------------------
@pytest.mark.parametrize('make,call,shapes', [
    (lambda r: nnx.Linear(6, 4, rngs=r), lambda m: m(jnp.ones((2, 5))), ['(2, 5)', '(6, 4)']),
    (lambda r: nnx.LinearGeneral((2, 3), 4, axis=(-2, -1), rngs=r),
     lambda m: m(jnp.ones((2, 3, 3))), ['(2, 3, 3)', '(2, 3, 4)']),
    (lambda r: nnx.Conv(4, 8, 3, rngs=r), lambda m: m(jnp.ones((1, 8, 2))),
     ['(1, 8, 2)', '(3, 4, 8)']),
    (lambda r: nnx.ConvTranspose(4, 3, (3, 2), rngs=r), lambda m: m(jnp.ones((1, 5, 4, 2))),
     ['(1, 5, 4, 2)', '(3, 2, 4, 3)']),
    (lambda r: nnx.Embed(5, 3, rngs=r), lambda m: m.attend(jnp.ones((2, 4))),
     ['(2, 4)', '(5, 3)']),
])
def test_layers_raise_when_input_features_do_not_match(make, call, shapes):
  layer = make(nnx.Rngs(0))
  with pytest.raises(ValueError, match=type(layer).__name__) as error:
    call(layer)
  assert all(shape in str(error.value) for shape in shapes)


def test_linear_general_raises_when_batch_axis_sizes_do_not_match():
  layer = nnx.LinearGeneral(3, 4, batch_axis={0: 2}, rngs=nnx.Rngs(0))  # kernel drawn as (6, 4)
  with pytest.raises(ValueError, match=r'batch_axis sizes=5'):
    layer(jnp.ones((5, 3)))


def test_linear_general_raises_when_axis_and_in_features_differ_in_length():
  with pytest.raises(ValueError, match=r'in_features=\(2, 3\) and axis=\(-1,\)'):
    nnx.LinearGeneral((2, 3), 4, rngs=nnx.Rngs(0))


def test_linear_general_raises_when_batch_axes_are_not_leading():
  with pytest.raises(ValueError, match=r'leading axes 0, 1'):
    nnx.LinearGeneral(3, 4, batch_axis={1: 2}, rngs=nnx.Rngs(0))


@pytest.mark.parametrize('name', ['Conv', 'ConvTranspose'])
def test_convs_raise_on_an_unknown_padding_string_and_list_the_valid_ones(name):
  layer = getattr(nnx, name)(4, 3, (3, 2), padding='SAMEE', rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=rf"{name}: unknown padding 'SAMEE'; use one of \['SAME'"):
    layer(jnp.ones((1, 5, 4, 4)))


def test_conv_raises_when_causal_padding_is_not_1d():
  layer = nnx.Conv(4, 8, (3, 2), padding='CAUSAL', rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='1-D convolutions only'):
    layer(jnp.ones((1, 5, 5, 4)))


def test_conv_raises_when_padding_pairs_do_not_match_the_kernel_rank():
  layer = nnx.Conv(4, 8, (3, 2), padding=((1, 1),), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='for each of the 2 spatial axes'):
    layer(jnp.ones((1, 5, 5, 4)))


def test_conv_raises_when_strides_do_not_match_the_kernel_rank():
  layer = nnx.Conv(4, 8, (3, 2), strides=(1, 2, 1), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r'strides=\(1, 2, 1\) has 3 entries'):
    layer(jnp.ones((1, 5, 5, 4)))


def test_conv_raises_when_kernel_size_does_not_fit_input_rank():
  layer = nnx.Conv(4, 8, (3, 2), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r'kernel_size \(3, 2\) has 2 spatial axes.*\(8, 4\)'):
    layer(jnp.ones((8, 4)))


@pytest.mark.parametrize('in_features,out_features', [(6, 4), (4, 6)])
def test_conv_raises_when_feature_group_count_does_not_divide_the_features(in_features,
                                                                           out_features):
  with pytest.raises(ValueError, match='feature_group_count=4 must divide both'):
    nnx.Conv(in_features, out_features, 3, feature_group_count=4, rngs=nnx.Rngs(0))


def test_embed_raises_on_float_indices():
  layer = nnx.Embed(5, 3, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='Embed: inputs must be integer indices.*float32'):
    layer(jnp.array([0.0, 1.0]))


@pytest.mark.parametrize('name', ['Conv', 'ConvTranspose'])
def test_convs_raise_when_the_mask_shape_differs_from_the_kernel(name):
  with pytest.raises(ValueError, match=rf'{name}: mask of shape \(3, 3\) .* \(3, 2, 4\)'):
    getattr(nnx, name)(2, 4, 3, mask=jnp.ones((3, 3)), rngs=nnx.Rngs(0))


@pytest.mark.parametrize('constructor_str,call_str,where', [
    ('ab,bc->ac', 'ab,bc->ac', 'both'), (None, None, 'neither')])
def test_einsum_raises_unless_einsum_str_is_given_exactly_once(constructor_str, call_str, where):
  layer = nnx.Einsum(constructor_str, (6, 4), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=f'einsum_str was given {where}'):
    layer(jnp.ones((2, 6)), call_str)


@pytest.mark.parametrize('einsum_str,count', [('ab->b', 1), ('ab,bc,cd->ad', 3), ('ab,bc', 2)])
def test_einsum_raises_unless_einsum_str_has_two_operands_and_an_output(einsum_str, count):
  with pytest.raises(ValueError, match=f'exactly two operands.*it has {count} operand'):
    nnx.Einsum(einsum_str, (6, 4), rngs=nnx.Rngs(0))
