"""nnx.Optimizer against Flax 0.12.8: same training, same state layout, same repr.

The last parity test trains a small CNN (Conv, BatchNorm, Dropout, Linear) for 20
steps with ``optax.adam`` under ``nnx.jit`` + ``nnx.value_and_grad`` + ``nnx.Optimizer``:
the same seed gives the same parameters and dropout masks, so every loss, the final
parameters and BatchNorm's running statistics match Flax 0.12.8.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx as fnnx

import nnx_edu as nnx
from tests.parity import assert_same_state, normalize_repr

BOTH = [nnx, fnnx]


def mlp(lib):
  class MLP(lib.Module):
    def __init__(self, rngs):
      self.hidden = lib.Linear(3, 8, rngs=rngs)
      self.bn = lib.BatchNorm(8, rngs=rngs)
      self.out = lib.Linear(8, 1, rngs=rngs)

    def __call__(self, x):
      return self.out(jax.nn.relu(self.bn(self.hidden(x))))

  return MLP(lib.Rngs(0))


TXS = {
    'adam': lambda: optax.adam(1e-2),
    'sgd': lambda: optax.sgd(0.1),
    'sgd momentum': lambda: optax.sgd(0.1, momentum=0.9),
    'clipped adamw': lambda: optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-2)),
}


X = jax.random.normal(jax.random.key(1), (16, 3))
Y = jnp.sin(X.sum(1, keepdims=True))


def train(lib, tx, wrt, steps=4):
  model = mlp(lib)
  optimizer = lib.Optimizer(model, tx, wrt=wrt(lib))

  @lib.jit
  def train_step(model, optimizer, x, y):
    loss_fn = lambda model: ((model(x) - y) ** 2).mean()
    loss, grads = lib.value_and_grad(loss_fn, argnums=lib.DiffState(0, wrt(lib)))(model)
    optimizer.update(model, grads)
    return loss

  losses = [train_step(model, optimizer, X, Y) for _ in range(steps)]
  return losses, model, optimizer


# -- training, against Flax --------------------------------------------------------------
@pytest.mark.parametrize('tx', list(TXS))
def test_training_gives_the_losses_and_parameters_of_flax(tx):
  (our_losses, our_model, our_opt), (their_losses, their_model, their_opt) = (
      train(lib, TXS[tx](), lambda lib: lib.Param) for lib in BOTH)
  np.testing.assert_allclose(our_losses, their_losses, rtol=1e-6, atol=1e-6)
  assert our_losses[-1] < our_losses[0]
  assert_same_state(nnx.state(our_model), fnnx.state(their_model))
  assert_same_state(nnx.state(our_opt), fnnx.state(their_opt))


def test_training_only_the_kernels_leaves_the_biases_alone():
  kernels = lambda lib: lib.All(lib.Param, lib.PathContains('kernel'))
  (ours, model, _), (theirs, their_model, _) = (train(lib, optax.adam(1e-2), kernels)
                                                 for lib in BOTH)
  np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)
  assert_same_state(nnx.state(model), fnnx.state(their_model))
  np.testing.assert_array_equal(model.out.bias.value, mlp(nnx).out.bias.value)


@pytest.mark.parametrize('tx', list(TXS))
def test_state_and_repr_have_the_layout_of_flax(tx):
  ours = nnx.Optimizer(mlp(nnx), TXS[tx](), wrt=nnx.Param)
  theirs = fnnx.Optimizer(mlp(fnnx), TXS[tx](), wrt=fnnx.Param)
  assert_same_state(nnx.state(ours), fnnx.state(theirs))
  assert normalize_repr(repr(ours)) == normalize_repr(repr(theirs))


def test_an_eager_update_matches_flax_and_counts_steps():
  results = []
  for lib in BOTH:
    model = mlp(lib)
    optimizer = lib.Optimizer(model, optax.adam(1e-2), wrt=lib.Param)
    for _ in range(2):
      grads = lib.grad(lambda m: (m(X) ** 2).mean())(model)
      updates = optimizer.update(model, grads)
    assert int(optimizer.step.value) == 2
    results.append((model, updates))
  assert_same_state(nnx.state(results[0][0]), fnnx.state(results[1][0]))
  for a, b in zip(jax.tree.leaves(results[0][1]), jax.tree.leaves(results[1][1])):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


# -- a small CNN trained for 20 steps ----------------------------------------------------
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


def train_cnn(lib, seed, steps=20):
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
  ours, our_model, our_eval = train_cnn(nnx, seed)
  theirs, their_model, their_eval = train_cnn(fnnx, seed)
  np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=0)
  assert ours[-1] < ours[0]  # it learned something
  for kind in ('Param', 'BatchStat'):
    assert_same_state(nnx.state(our_model, getattr(nnx, kind)),
                      fnnx.state(their_model, getattr(fnnx, kind)),
                      exact=False, rtol=1e-7, atol=1e-5)
  np.testing.assert_allclose(our_eval, their_eval, atol=1e-5)


def test_dropout_draws_advance_the_same_rng_counts_as_flax():
  _, our_model, _ = train_cnn(nnx, 0, steps=3)
  _, their_model, _ = train_cnn(fnnx, 0, steps=3)
  ours = jax.tree.leaves(nnx.state(our_model, nnx.RngCount))
  theirs = jax.tree.leaves(fnnx.state(their_model, fnnx.RngCount))
  assert [int(c) for c in ours] == [int(c) for c in theirs]


# -- errors that teach -------------------------------------------------------------------
def test_a_wrt_that_selects_nothing_is_refused():
  with pytest.raises(ValueError,
                     match=r"wrt=Cache selects no Variable of the MLP.*\['BatchStat', 'Param'\]"):
    nnx.Optimizer(mlp(nnx), optax.sgd(0.1), wrt=nnx.Cache)


def test_wrt_must_be_given():
  with pytest.raises(TypeError, match=r'needs the argument `wrt`.*wrt=nnx.Param'):
    nnx.Optimizer(mlp(nnx), optax.sgd(0.1))


def test_update_needs_the_model_and_the_gradients():
  model = mlp(nnx)
  optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
  grads = nnx.grad(lambda m: (m(X) ** 2).mean())(model)
  with pytest.raises(TypeError, match=r'optimizer.update\(model, grads\)'):
    optimizer.update(grads)


def test_gradients_that_do_not_fit_the_parameters_are_refused():
  model = mlp(nnx)
  optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
  only_kernels = nnx.DiffState(0, nnx.PathContains('kernel'))
  grads = nnx.grad(lambda m: (m(X) ** 2).mean(), argnums=only_kernels)(model)
  with pytest.raises(ValueError, match=r"do not fit the parameters.*missing \[\('bn', 'bias'\)"):
    optimizer.update(model, grads)
