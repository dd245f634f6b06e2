"""Chapter 0 -- a tiny NNX: the whole idea in one file.

NNX lets you write a model as a plain, mutable Python object, and still use
``jax.jit`` and ``jax.grad``, which only understand pure functions of arrays.
This chapter builds the smallest correct version of that idea:

1. ``Variable`` -- a mutable box around one array (``Param`` marks weights);
2. ``Rngs`` -- hands out a fresh random key on every call;
3. ``Module`` -- a plain object holding Variables, sub-Modules, lists of
   them, or static values (``Linear`` is one);
4. ``split`` / ``merge`` / ``update`` -- the trick: a Module becomes a
   hashable ``GraphDef`` (classes, static values) plus a *state* (a nested
   dict of arrays), and a state goes back into a new or a live Module;
5. ``train_step`` -- a pure, jitted SGD step on ``(graphdef, state)``.

The chapters that follow (``nnx_edu/core/...``, then ``nnx_edu/transforms/``)
do the same things with all the details left out here: filters, the
``State`` class, a GraphDef that keeps shared references, Variable metadata,
RNG streams that live in the State, and readable reprs.  The examples below
(above all ``train_step``'s) check against ``nnx_edu`` that the same seed
gives bit-identical parameters, the same state paths and the same losses.

JAX cannot trace a Module, but it can trace the state that ``split`` returns:

>>> model = Linear(2, 3, rngs=Rngs(0))
>>> jax.jit(lambda model, x: model(x))(model, jnp.ones(2))  # doctest: +IGNORE_EXCEPTION_DETAIL
Traceback (most recent call last):
TypeError: Error interpreting argument to <lambda> as an abstract array...
>>> graphdef, state = split(model)
>>> jax.jit(lambda state, x: merge(graphdef, state)(x))(state, jnp.ones(2)).shape
(3,)
"""

from __future__ import annotations

import dataclasses
import functools
import typing as tp

import jax
import jax.numpy as jnp

Key = str | int  # an attribute name, or an index into a list
State = dict  # {Key: array or nested State}: a pytree JAX can trace


class Variable:
  """A mutable box holding one value, usually a ``jax.Array``.

  The box is what lets a layer change its own state (``self.w.value = ...``)
  while ``split`` can still find every array by walking the boxes.

  >>> count = Variable(0)
  >>> count.value += 1
  >>> count.value
  1
  """

  def __init__(self, value: tp.Any):
    self.value = value


class Param(Variable):
  """A trainable parameter; the real library filters State by such types.

  >>> isinstance(Param(jnp.zeros(2)), Variable)
  True
  """


class Rngs:
  """A stream of random keys: the n-th key is ``fold_in(key(seed), n)``.

  The real ``nnx.Rngs(0)`` holds one stream named ``'default'``;
  ``rngs.params()`` finds no ``'params'`` stream and falls back to it, so
  one key and one counter, as here, give the real library's keys.

  >>> import nnx_edu as nnx
  >>> tiny, real = Rngs(0), nnx.Rngs(0)
  >>> same = [jnp.array_equal(jax.random.key_data(tiny.params()),
  ...                         jax.random.key_data(real.params())) for _ in range(3)]
  >>> all(same), tiny.count
  (True, 3)
  """

  def __init__(self, seed: int):
    self.key = jax.random.key(seed)
    self.count = 0

  def params(self) -> jax.Array:
    """The next key, for initialising parameters.

    >>> rngs = Rngs(0)
    >>> _ = rngs.params(); rngs.count
    1
    """
    # fold_in with a counter, not split: the n-th key depends only on (seed, n)
    key = jax.random.fold_in(self.key, self.count)
    self.count += 1
    return key


class Module:
  """The base class of layers: a plain object, nothing to declare.

  Attributes that are Variables, Modules or lists become the *state*;
  everything else (ints, strings, None, ...) is *static* and must be
  hashable, because it goes into the GraphDef.

  >>> class Stack(Module):
  ...   def __init__(self, rngs):
  ...     self.layers = [Linear(2, 2, rngs=rngs), Linear(2, 1, rngs=rngs)]
  ...     self.activation = 'relu'
  >>> graphdef, state = split(Stack(Rngs(0)))
  >>> graphdef.static
  (('activation', 'relu'),)
  >>> list(flatten(state))[:2]
  [('layers', 0, 'bias'), ('layers', 0, 'kernel')]
  """


class Linear(Module):
  """``y = x @ kernel + bias``, initialised exactly like ``nnx.Linear``.

  The kernel comes from ``lecun_normal()``, the bias is zeros; each draws
  its own key from ``rngs.params()``, kernel first, so the *next* layer built
  from the same ``Rngs`` gets the same keys as in the real library.

  >>> import nnx_edu as nnx
  >>> tiny, real = Linear(3, 4, rngs=Rngs(0)), nnx.Linear(3, 4, rngs=nnx.Rngs(0))
  >>> bool(jnp.array_equal(tiny.kernel.value, real.kernel[...]))
  True
  """

  def __init__(self, in_features: int, out_features: int, *, rngs: Rngs):
    init_kernel = jax.nn.initializers.lecun_normal()
    self.kernel = Param(init_kernel(rngs.params(), (in_features, out_features), jnp.float32))
    self.bias = Param(jax.nn.initializers.zeros(rngs.params(), (out_features,), jnp.float32))
    self.in_features = in_features
    self.out_features = out_features

  def __call__(self, x: jax.Array) -> jax.Array:
    return x @ self.kernel.value + self.bias.value


@dataclasses.dataclass(frozen=True)
class GraphDef:
  """Everything about a Module except its arrays: classes, static values, structure.

  Frozen, so it is hashable: ``jax.jit`` can take it as a static argument
  and compiles once per model structure, not once per call.

  >>> graphdef, _ = split(Linear(2, 3, rngs=Rngs(0)))
  >>> graphdef.type.__name__, graphdef.static
  ('Linear', (('in_features', 2), ('out_features', 3)))
  >>> [(key, child.type.__name__) for key, child in graphdef.children]
  [('kernel', 'Param'), ('bias', 'Param')]
  >>> graphdef == split(Linear(2, 3, rngs=Rngs(1)))[0]  # other numbers, same graph
  True
  """

  type: type  # a Module class, list, or a Variable class
  static: tuple[tuple[Key, tp.Hashable], ...] = ()
  children: tuple[tuple[Key, GraphDef], ...] = ()


def split(node: tp.Any) -> tuple[GraphDef, tp.Any]:
  """Take a Module apart into a hashable GraphDef and a state of plain arrays.

  >>> import nnx_edu as nnx
  >>> graphdef, state = split(Linear(2, 3, rngs=Rngs(0)))
  >>> jax.tree.map(jnp.shape, state)  # JAX sorts dict keys, as the real State does
  {'bias': (3,), 'kernel': (2, 3)}
  >>> real_state = nnx.split(nnx.Linear(2, 3, rngs=nnx.Rngs(0)))[1]
  >>> sorted(flatten(state)) == sorted(path for path, _ in real_state.flat_state())
  True
  """
  if isinstance(node, Variable):
    return GraphDef(type(node)), node.value
  static, children, state = [], [], {}
  for key, value in enumerate(node) if isinstance(node, list) else vars(node).items():
    if isinstance(value, (Variable, Module, list)):
      child, state[key] = split(value)
      children.append((key, child))
    else:
      static.append((key, value))
  return GraphDef(type(node), tuple(static), tuple(children)), state


def merge(graphdef: GraphDef, state: tp.Any) -> tp.Any:
  """Build a new Module (new Variables too) from a GraphDef and a state.

  ``__init__`` is not called: no keys are drawn, the state already has the
  numbers, and inside ``jax.jit`` those numbers are tracers.

  >>> model = Linear(2, 3, rngs=Rngs(0))
  >>> copy = merge(*split(model))
  >>> type(copy).__name__, copy.out_features, copy.kernel is model.kernel
  ('Linear', 3, False)
  >>> bool(jnp.array_equal(copy(jnp.ones(2)), model(jnp.ones(2))))
  True
  """
  if issubclass(graphdef.type, Variable):
    return graphdef.type(state)
  attributes = dict(graphdef.static)
  attributes.update({key: merge(child, state[key]) for key, child in graphdef.children})
  if graphdef.type is list:
    return [attributes[index] for index in range(len(attributes))]
  module = object.__new__(graphdef.type)
  vars(module).update(attributes)
  return module


def update(node: tp.Any, state: State) -> None:
  """Write ``state`` into the Variables of a live Module, in place.

  The Module keeps its identity, so every reference to it sees the new values.

  >>> model = Linear(2, 3, rngs=Rngs(0))
  >>> kernel = model.kernel
  >>> update(model, {'kernel': jnp.zeros((2, 3))})
  >>> model.kernel is kernel, float(model.kernel.value.sum())
  (True, 0.0)
  """
  for key, value in state.items():
    child = node[key] if isinstance(node, list) else getattr(node, key)
    if isinstance(child, Variable):
      child.value = value
    else:
      update(child, value)


def flatten(state: State) -> dict[tuple[Key, ...], tp.Any]:
  """A nested state as ``{path: array}``, the shape of ``nnx.State.flat_state()``.

  >>> flatten({'layers': {0: {'kernel': 1.0}}, 'scale': 2.0})
  {('layers', 0, 'kernel'): 1.0, ('scale',): 2.0}
  """
  # JAX already knows every leaf's path: a tuple of DictKeys, one per level
  leaves = jax.tree_util.tree_leaves_with_path(state)
  return {tuple(entry.key for entry in path): leaf for path, leaf in leaves}


@functools.partial(jax.jit, static_argnums=0)  # the GraphDef is a constant, hashed
def train_step(graphdef: GraphDef, state: State, x: jax.Array, y: jax.Array,
               learning_rate: float = 0.1) -> tuple[jax.Array, State]:
  """One step of plain SGD on the MSE loss: a pure function of arrays.

  ``jax.jit`` and ``jax.grad`` cannot look inside a Module, which is an
  object they do not know how to trace.  After ``split`` there is nothing
  left to hide: the state is a dict of arrays (traced and differentiated)
  and the GraphDef is a static argument (equal models share one compiled
  function).  Inside, ``merge`` rebuilds a throwaway Module to run the
  model's ordinary Python code; outside, ``update`` writes the new state
  back into the live Module.  ``nnx.jit`` and ``nnx.grad`` do this for you.

  The same model written with the real library has the same parameters at
  the same paths, and trains to the same losses:

  >>> import nnx_edu as nnx
  >>> class MLP(Module):
  ...   def __init__(self, sizes, rngs):
  ...     self.layers = [Linear(a, b, rngs=rngs) for a, b in zip(sizes, sizes[1:])]
  ...   def __call__(self, x):
  ...     for layer in self.layers[:-1]:
  ...       x = jax.nn.relu(layer(x))
  ...     return self.layers[-1](x)
  >>> class RealMLP(nnx.Module):  # the real library wants a list of layers in nnx.List
  ...   def __init__(self, sizes, rngs):
  ...     self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes, sizes[1:])])
  ...   __call__ = MLP.__call__
  >>> model, real_model = MLP([2, 8, 1], Rngs(0)), RealMLP([2, 8, 1], nnx.Rngs(0))
  >>> tiny, real = flatten(split(model)[1]), flatten(nnx.to_pure_dict(nnx.state(real_model)))
  >>> sorted(tiny) == sorted(real), all(jnp.array_equal(tiny[p], real[p]) for p in real)
  (True, True)
  >>> @nnx.jit
  ... def real_step(model, x, y):
  ...   loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(x) - y) ** 2))(model)
  ...   params = nnx.state(model, nnx.Param)
  ...   nnx.update(model, jax.tree.map(lambda p, g: p - 0.1 * g, params, grads))
  ...   return loss
  >>> x, y = jnp.linspace(-1, 1, 8).reshape(4, 2), jnp.arange(4.0).reshape(4, 1)
  >>> for _ in range(3):
  ...   graphdef, state = split(model)
  ...   loss, state = train_step(graphdef, state, x, y)
  ...   update(model, state)
  ...   print(f'{loss:.2f}', abs(loss - real_step(real_model, x, y)) < 1e-6)
  1.71 True
  0.63 True
  0.32 True
  """
  def loss_of(state: State) -> jax.Array:
    return jnp.mean((merge(graphdef, state)(x) - y) ** 2)

  loss, grads = jax.value_and_grad(loss_of)(state)
  new_state = jax.tree.map(lambda value, grad: value - learning_rate * grad, state, grads)
  return loss, new_state

