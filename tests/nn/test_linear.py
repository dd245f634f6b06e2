"""Linear layers: Linear, LinearGeneral and Einsum, parity with Flax 0.12.8, and errors that teach.

Every parity case builds the layer in both libraries from the same seed and
checks: parameters bit-identical, ``repr`` text equal, the State's shape tree
equal, and outputs within 1e-6 (``tests.parity.check_parity``).

Two tests run over the layers of the next chapters too, Embed and Conv, which
follow Linear's pattern: ``out_sharding``, and the error for inputs with the
wrong number of features.

Drawing a parameter compiles the initializer once per shape and dtype, which
dominates the run time; so the cases share a few parameter shapes: dense
kernels are drawn as (6, 4).
"""

import jax
import jax.numpy as jnp
import pytest
from flax import nnx as fnnx
from jax.sharding import PartitionSpec as P

import nnx_edu as nnx
from tests.parity import assert_close, check_parity, inputs

BF16 = jnp.bfloat16


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
  assert_close(ours(x, 'ab,bc->ac'), theirs(x))


# -- out_sharding, for Linear, Conv and Embed alike ------------------------------------
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
  assert_close(ours, theirs)


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
