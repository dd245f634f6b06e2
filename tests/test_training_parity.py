"""A small CNN trained with both libraries: the loss curves must agree.

Conv, BatchNorm, Dropout and Linear, trained 20 steps with ``optax.adam``
under ``nnx.jit`` + ``nnx.value_and_grad`` + ``nnx.Optimizer``.  The same
seed gives the same parameters and dropout masks, so every loss, the final
parameters and BatchNorm's running statistics match Flax 0.12.8.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx as fnnx

import nnx_edu as nnx


def make_cnn(lib, seed):
  class CNN(lib.Module):
    def __init__(self, rngs):
      self.conv = lib.Conv(1, 4, kernel_size=(3, 3), rngs=rngs)
      self.bn = lib.BatchNorm(4, momentum=0.9, rngs=rngs)
      self.dropout = lib.Dropout(0.25, rngs=rngs)
      self.linear = lib.Linear(4, 3, rngs=rngs)

    def __call__(self, x):
      x = lib.relu(self.bn(self.conv(x)))
      x = self.dropout(x)
      return self.linear(x.mean(axis=(1, 2)))

  return CNN(lib.Rngs(seed))


def make_data(seed):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(16, 6, 6, 1)).astype(np.float32)
  y = (x.mean(axis=(1, 2, 3)) > 0).astype(np.int32) + (x[:, 0, 0, 0] > 1).astype(np.int32)
  return jnp.asarray(x), jnp.asarray(y)


def train(lib, seed, steps=20):
  model = make_cnn(lib, seed)
  optimizer = lib.Optimizer(model, optax.adam(1e-2), wrt=lib.Param)
  x, y = make_data(seed)

  @lib.jit
  def step(model, optimizer, x, y):
    def loss_fn(model):
      logits = model(x)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    loss, grads = lib.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss

  model.train()
  losses = [float(step(model, optimizer, x, y)) for _ in range(steps)]
  model.eval()
  return losses, model, model(x)


@pytest.mark.parametrize('seed', [0, 1])
def test_cnn_loss_curve_parameters_and_statistics_match_flax(seed):
  ours, our_model, our_eval = train(nnx, seed)
  theirs, their_model, their_eval = train(fnnx, seed)
  np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=0)
  assert ours[-1] < ours[0]  # it learned something
  for ours_state, theirs_state in ((nnx.state(our_model, nnx.Param), fnnx.state(their_model, fnnx.Param)),
                                   (nnx.state(our_model, nnx.BatchStat), fnnx.state(their_model, fnnx.BatchStat))):
    a, b = ours_state.flat_state(), theirs_state.flat_state()
    assert a.paths == b.paths
    for path, u, v in zip(a.paths, a.leaves, b.leaves):
      np.testing.assert_allclose(u[...], v[...], atol=1e-5, err_msg=str(path))
  np.testing.assert_allclose(our_eval, their_eval, atol=1e-5)


def test_dropout_draws_advance_the_same_rng_counts_as_flax():
  _, our_model, _ = train(nnx, 0, steps=3)
  _, their_model, _ = train(fnnx, 0, steps=3)
  ours = jax.tree.leaves(nnx.state(our_model, nnx.RngCount))
  theirs = jax.tree.leaves(fnnx.state(their_model, fnnx.RngCount))
  assert [int(c) for c in ours] == [int(c) for c in theirs]
