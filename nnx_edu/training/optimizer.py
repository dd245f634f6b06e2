"""Training -- the Optimizer.

An ``Optimizer`` pairs an `optax <https://optax.readthedocs.io>`_ gradient
transformation with the optimizer state it needs -- Adam's moments, a step
count -- kept as Variables, so that the Optimizer is a graph node like a
Module: it goes through ``nnx.jit`` and its state updates in place.

A training step is the three transforms of the last chapters put together:

>>> import jax.numpy as jnp
>>> import optax
>>> import nnx_edu as nnx
>>> model = nnx.Linear(2, 1, rngs=nnx.Rngs(0))
>>> optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
>>> @nnx.jit
... def train_step(model, optimizer, x, y):
...   loss_fn = lambda model: ((model(x) - y) ** 2).mean()
...   loss, grads = nnx.value_and_grad(loss_fn)(model)
...   optimizer.update(model, grads)
...   return loss
>>> x, y = jnp.ones((4, 2)), jnp.zeros((4, 1))
>>> losses = [float(train_step(model, optimizer, x, y)) for _ in range(3)]
>>> losses[0] > losses[1] > losses[2], int(optimizer.step.value)
(True, 3)

optax works on plain pytrees of arrays, so ``update`` takes the values out
of the Variables, lets optax compute, and puts the results back in.
"""

from __future__ import annotations

import typing as tp

import jax

from nnx_edu.core import filters as filterlib
from nnx_edu.core.graph import state as graph_state
from nnx_edu.core.graph import update as graph_update
from nnx_edu.core.objects import Pytree
from nnx_edu.core.pytrees import data
from nnx_edu.core.state import State
from nnx_edu.core.variables import Variable

if tp.TYPE_CHECKING:
  import optax

__all__ = ['OptArray', 'OptState', 'OptVariable', 'Optimizer']

MISSING: tp.Any = object()  # tells "not given" from None


class OptState(Variable):
  """Any optimizer state, such as the step count.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> nnx.OptState(jnp.array(0, dtype=jnp.uint32))
  OptState( # 1 (4 B)
    value=Array(0, dtype=uint32)
  )
  """


class OptArray(OptState):
  """Optimizer state that optax made from a plain array, such as Adam's ``count``.

  >>> import nnx_edu as nnx
  >>> issubclass(nnx.OptArray, nnx.OptState)
  True
  """


class OptVariable(OptState):
  """Optimizer state that mirrors a Variable (Adam's ``mu`` for a Param); it
  copies the Variable's metadata.

  >>> import nnx_edu as nnx
  >>> issubclass(nnx.OptVariable, nnx.OptState)
  True
  """


def to_opt_state(tree: tp.Any) -> tp.Any:
  """Wrap each leaf of an optax state: Variables as ``OptVariable``, arrays as ``OptArray``.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> from nnx_edu.training.optimizer import to_opt_state
  >>> to_opt_state({'count': jnp.array(0), 'mu': nnx.Param(jnp.zeros(2), tag='x')})
  {'count': OptArray( # 1 (4 B)
    value=Array(0, dtype=int32, weak_type=True)
  ), 'mu': OptVariable( # 2 (8 B)
    value=Array([0., 0.], dtype=float32),
    tag='x'
  )}
  """
  def wrap(leaf):
    if not isinstance(leaf, Variable):
      return OptArray(leaf)
    metadata = leaf.get_metadata()
    if 'optimizer_sharding' in metadata:  # the sharding meant for optimizer state
      metadata['out_sharding'] = metadata.pop('optimizer_sharding')
    return OptVariable(leaf.get_value(), **metadata)

  return jax.tree.map(wrap, tree, is_leaf=lambda x: isinstance(x, Variable))


def _values(tree: tp.Any) -> tp.Any:
  """The same pytree with each Variable replaced by its value: what optax expects."""
  return jax.tree.map(lambda v: v.get_value() if isinstance(v, Variable) else v, tree,
                      is_leaf=lambda x: isinstance(x, Variable))


class Optimizer(Pytree):
  """An optax transformation and its state, for the Variables ``wrt`` selects.

  Args:
    model: the Module to train.
    tx: an optax ``GradientTransformation``, such as ``optax.adam(1e-3)``.
    wrt: a filter selecting the Variables to train; pass the same one to
      ``nnx.grad`` (its default, ``nnx.Param``, is the usual choice).
    graph: kept for compatibility with Flax; nnx_edu always works on the
      graph.

  Attributes: ``step`` (an ``OptState`` counting updates), ``tx``,
  ``opt_state`` (optax's state, its arrays held in ``OptState`` Variables)
  and ``wrt``.

  >>> import optax
  >>> import nnx_edu as nnx
  >>> model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
  >>> optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
  >>> sorted(nnx.state(optimizer, nnx.OptState).flat_state().paths)[:3]
  [('opt_state', 0, 'count'), ('opt_state', 0, 'mu', 'bias'), ('opt_state', 0, 'mu', 'kernel')]
  >>> nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.BatchStat)
  Traceback (most recent call last):
  ...
  ValueError: Optimizer: wrt=BatchStat selects no Variable of the Linear, so there is nothing to train. Its Variables are of type ['Param']; usually wrt=nnx.Param.
  """

  def __init__(self, model: tp.Any, tx: optax.GradientTransformation, *,
               wrt: filterlib.Filter = MISSING, graph: bool | None = None):
    if wrt is MISSING:
      raise TypeError(
          'Optimizer needs the argument `wrt`, a filter for the Variables to '
          'train: Optimizer(model, tx, wrt=nnx.Param). (Since Flax 0.11 it has '
          'no default.)'
      )
    params = graph_state(model, wrt)
    if not params:
      kinds = sorted({type(v).__name__ for _, v in graph_state(model).flat_state()})
      raise ValueError(
          f'Optimizer: wrt={getattr(wrt, "__name__", wrt)} selects no Variable of '
          f'the {type(model).__name__}, so there is nothing to train. Its '
          f'Variables are of type {kinds}; usually wrt=nnx.Param.'
      )
    import jax.numpy as jnp

    self.graph = graph
    self.step = OptState(jnp.array(0, dtype=jnp.uint32))
    self.tx = tx
    self.opt_state = data(to_opt_state(tx.init(params)))
    self.wrt = wrt

  def update(self, model: tp.Any, grads: State = MISSING, /, **kwargs: tp.Any):
    """Apply one optimizer step: ``tx.update`` on the gradients, then add the
    updates to the model's Variables.  Returns the updates.

    ``kwargs`` go to ``tx.update`` (for example ``value=loss`` for
    ``optax.scale_by_backtracking_linesearch``).

    >>> import jax.numpy as jnp
    >>> import optax
    >>> import nnx_edu as nnx
    >>> model = nnx.Linear(2, 1, rngs=nnx.Rngs(0))
    >>> optimizer = nnx.Optimizer(model, optax.sgd(0.5), wrt=nnx.Param)
    >>> grads = nnx.grad(lambda m: m(jnp.ones(2)).sum())(model)
    >>> _ = optimizer.update(model, grads)
    >>> model.bias.value
    Array([-0.5], dtype=float32)
    """
    import optax

    if grads is MISSING:
      raise TypeError(
          'Optimizer.update needs the model and the gradients: '
          'optimizer.update(model, grads). (Since Flax 0.11 the Optimizer no '
          'longer holds the model.)'
      )
    params = graph_state(model, self.wrt)
    grads = (grads if isinstance(grads, State) else State(grads)).filter(self.wrt)
    self._check_grads_fit(params, grads)
    updates, new_opt_state = self.tx.update(
        _values(grads), _values(self.opt_state), _values(params), **_values(kwargs))
    graph_update(model, optax.apply_updates(_values(params), updates))
    jax.tree.map(lambda variable, value: variable.set_value(value), self.opt_state,
                 new_opt_state, is_leaf=lambda x: isinstance(x, Variable))
    self.step.value += 1
    return updates

  def _check_grads_fit(self, params: State, grads: State) -> None:
    have, need = set(grads.flat_state().paths), set(params.flat_state().paths)
    if have != need:
      raise ValueError(
          'Optimizer.update: the gradients do not fit the parameters '
          f'(wrt={getattr(self.wrt, "__name__", self.wrt)}): missing '
          f'{sorted(need - have, key=str)[:5]}, unexpected {sorted(have - need, key=str)[:5]}. '
          'Take the gradients of the same model, with the same filter: '
          'nnx.grad(loss_fn, argnums=nnx.DiffState(0, wrt)).'
      )
