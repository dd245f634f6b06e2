"""Core -- array-like: a Variable indexes, assigns into and computes like the array it holds."""

import jax.numpy as jnp
import numpy as np
import pytest

import nnx_edu as nnx


def test_item_assignment_with_an_index_updates_part_of_the_value():
  v = nnx.Param(jnp.zeros(3))
  v[1] = 5.0
  np.testing.assert_array_equal(v.value, jnp.array([0.0, 5.0, 0.0]))
  assert float(v[1]) == 5.0


WRITES = {
    'a scalar broadcast into the array': (lambda: jnp.zeros(3), ..., lambda: 1.0),
    'another dtype, cast to the old one': (lambda: jnp.zeros(3), ...,
                                           lambda: jnp.ones(3, jnp.bfloat16)),
    'the same shape and dtype': (lambda: jnp.zeros((2, 2)), ..., lambda: jnp.ones((2, 2))),
    'a row broadcast into a matrix': (lambda: jnp.zeros((2, 3)), ..., lambda: jnp.arange(3.0)),
    'one element': (lambda: jnp.zeros(3), 1, lambda: 5.0),
    'a slice': (lambda: jnp.zeros(4), slice(1, 3), lambda: jnp.ones(2)),
    'an integer array taking floats': (lambda: jnp.zeros(3, jnp.int32), ..., lambda: 2.7),
    'a NumPy array, in place': (lambda: np.zeros(3), 0, lambda: 4.0),
}


@pytest.mark.parametrize('case', list(WRITES))
def test_item_assignment_writes_into_the_value_like_flax(case, fnnx):
  make_value, index, make_new = WRITES[case]
  ours, theirs = nnx.Param(make_value()), fnnx.Param(make_value())
  ours[index] = make_new()
  theirs[index] = make_new()
  assert type(ours[...]) is type(theirs[...])
  assert np.shape(ours[...]) == np.shape(theirs[...])
  assert ours[...].dtype == theirs[...].dtype
  np.testing.assert_array_equal(ours[...], theirs[...])


def test_item_assignment_refuses_a_value_that_does_not_fit_and_says_to_use_value():
  param = nnx.Param(jnp.zeros(3))
  with pytest.raises(ValueError, match=r"shape \(4,\), which does not fit the Param's shape "
                                       r"\(3,\).*assign `.value = new_array`"):
    param[...] = jnp.ones(4)
  param.value = jnp.ones(4)  # replacing is allowed
  assert param[...].shape == (4,)


def test_arithmetic_and_array_protocol_delegate_to_the_value():
  v = nnx.Param(jnp.array([1.0, 2.0]))
  np.testing.assert_array_equal(v + 1, jnp.array([2.0, 3.0]))
  np.testing.assert_array_equal(1 + v, jnp.array([2.0, 3.0]))
  np.testing.assert_array_equal(v * v, jnp.array([1.0, 4.0]))
  np.testing.assert_array_equal(2 ** v, jnp.array([2.0, 4.0]))
  np.testing.assert_array_equal(-v, jnp.array([-1.0, -2.0]))
  np.testing.assert_array_equal(v @ v, 5.0)
  np.testing.assert_array_equal(jnp.sum(v), 3.0)
  np.testing.assert_array_equal(np.asarray(v), np.array([1.0, 2.0]))
  assert v.shape == (2,) and v.dtype == jnp.float32 and len(v) == 2
  assert (v == jnp.array([1.0, 2.0])).all()
  assert jnp.array([1.0, 2.0]) + v is not None


def test_a_variable_is_unhashable_because_equality_is_elementwise():
  with pytest.raises(TypeError):
    hash(nnx.Param(jnp.ones(1)))
