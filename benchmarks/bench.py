"""Side-by-side timings of nnx_edu, Flax NNX and plain ``jax.jit``.

Run ``python benchmarks/bench.py`` (or ``--quick`` for a smoke run).  It
prints Markdown tables of median times and their ratios:

1. a training step of a small MLP: ``nnx.jit`` + ``nnx.value_and_grad`` +
   ``nnx.Optimizer`` in each library, against ``jax.jit`` of a pure function
   of arrays with optax -- the per-call cost of the NNX machinery;
2. the graph functions ``split``, ``merge``, ``state``, ``update`` and
   ``clone`` on models of 10, 100 and 1000 ``Linear`` layers;
3. the forward pass of single layers under ``nnx.jit``;
4. ``jax.jit`` called with a Module directly (the Module as a pytree), against
   the same arrays held in plain dicts;
5. ``import nnx_edu`` against ``import jax``, each in a fresh interpreter.

Candidates are timed in interleaved rounds, so that a busy machine slows
all of them alike; each round times a block of calls (with the garbage
collector off, as ``timeit`` does) and the table shows the median over
rounds of the time per call.  ``--cpu-time`` measures
process CPU time instead of wall time, which is steadier on a loaded machine.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import os
import subprocess
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import optax
from flax import nnx as fnnx

import nnx_edu as ennx

warnings.filterwarnings('ignore', category=DeprecationWarning)  # Flax's `.value` warnings
LIBS = {'nnx_edu': ennx, 'flax': fnnx}


# -- timing ------------------------------------------------------------------------
def time_interleaved(candidates: dict, *, calls: int, rounds: int, clock) -> dict:
  """Median time per call (µs) of each zero-argument function, timed in turns."""
  for f in candidates.values():  # compile and warm up
    jax.block_until_ready(f())
    jax.block_until_ready(f())
  samples: dict[str, list[float]] = {name: [] for name in candidates}
  gc.collect()
  gc.disable()  # as timeit does: a collection landing in one candidate's turn is noise
  try:
    for _ in range(rounds):
      for name, f in candidates.items():
        start = clock()
        for _ in range(calls):
          out = f()
        jax.block_until_ready(out)
        samples[name].append((clock() - start) / calls * 1e6)
  finally:
    gc.enable()
  return {name: statistics.median(times) for name, times in samples.items()}


def table(header: list[str], rows: list[list]) -> str:
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  lines += ['| ' + ' | '.join(map(str, row)) + ' |' for row in rows]
  return '\n'.join(lines)


def us(x: float) -> str:
  return f'{x:,.0f} µs' if x >= 10 else f'{x:.1f} µs'


# -- 1. the training step --------------------------------------------------------
SIZES = (8, 32, 32, 1)


def nnx_train_step(lib):
  class MLP(lib.Module):
    def __init__(self, rngs):
      self.layers = lib.List([lib.Linear(a, b, rngs=rngs) for a, b in zip(SIZES[:-1], SIZES[1:])])

    def __call__(self, x):
      for layer in self.layers[:-1]:
        x = jax.nn.relu(layer(x))
      return self.layers[-1](x)

  model = MLP(lib.Rngs(0))
  optimizer = lib.Optimizer(model, optax.adam(1e-3), wrt=lib.Param)

  @lib.jit
  def train_step(model, optimizer, x, y):
    loss, grads = lib.value_and_grad(lambda m: ((m(x) - y) ** 2).mean())(model)
    optimizer.update(model, grads)
    return loss

  return lambda x, y: train_step(model, optimizer, x, y)


def plain_train_step():
  """The same step as a pure function of arrays: the floor for any library."""
  keys = jax.random.split(jax.random.key(0), len(SIZES) - 1)
  params = [{'kernel': jax.random.normal(k, (a, b)) / a ** 0.5, 'bias': jnp.zeros(b)}
            for k, a, b in zip(keys, SIZES[:-1], SIZES[1:])]
  tx = optax.adam(1e-3)

  def loss_fn(params, x, y):
    for layer in params[:-1]:
      x = jax.nn.relu(x @ layer['kernel'] + layer['bias'])
    return ((x @ params[-1]['kernel'] + params[-1]['bias'] - y) ** 2).mean()

  @jax.jit
  def train_step(params, opt_state, x, y):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  state = [params, tx.init(params)]

  def step(x, y):
    state[0], state[1], loss = train_step(state[0], state[1], x, y)
    return loss

  return step


def bench_train_step(args) -> str:
  x, y = jnp.ones((16, SIZES[0])), jnp.ones((16, SIZES[-1]))
  steps = {'jax.jit (pure)': plain_train_step(),
           'nnx_edu': nnx_train_step(ennx), 'flax': nnx_train_step(fnnx)}
  calls, rounds = (20, 5) if args.quick else (200, 15)
  t = time_interleaved({name: (lambda s=s: s(x, y)) for name, s in steps.items()},
                       calls=calls, rounds=rounds, clock=args.clock)
  plain = t['jax.jit (pure)']
  rows = [[name, us(v), f'{v / plain:.2f}x', f'{v / t["nnx_edu"]:.2f}x'] for name, v in t.items()]
  return ('### Training step (MLP 8-32-32-1, adam, batch 16), per call\n\n'
          + table(['', 'median', 'vs jax.jit', 'vs nnx_edu'], rows))


# -- 2. the graph functions ---------------------------------------------------------
def stack_of_linears(lib, n: int):
  class Stack(lib.Module):
    def __init__(self, rngs):
      self.layers = lib.List([lib.Linear(4, 4, rngs=rngs) for _ in range(n)])

  return Stack(lib.Rngs(0))


def bench_graph(args) -> str:
  rows = []
  for n in (10, 100) if args.quick else (10, 100, 1000):
    funcs: dict[str, dict] = {}
    for name, lib in LIBS.items():
      model = stack_of_linears(lib, n)
      graphdef, state = lib.split(model)
      funcs[name] = {
          'split': lambda lib=lib, m=model: lib.split(m),
          'merge': lambda lib=lib, g=graphdef, s=state: lib.merge(g, s),
          'state': lambda lib=lib, m=model: lib.state(m),
          'update': lambda lib=lib, m=model, s=state: lib.update(m, s),
          'clone': lambda lib=lib, m=model: lib.clone(m),
      }
    calls = max(1, (200 if not args.quick else 20) // n)
    for op in funcs['nnx_edu']:
      t = time_interleaved({name: funcs[name][op] for name in LIBS}, calls=calls,
                           rounds=3 if args.quick else 7, clock=args.clock)
      rows.append([n, op, us(t['nnx_edu']), us(t['flax']), f'{t["flax"] / t["nnx_edu"]:.1f}x'])
  return ('### Graph functions on a List of n Linear(4, 4) layers\n\n'
          + table(['layers', 'function', 'nnx_edu', 'flax', 'flax / nnx_edu'], rows))


# -- 3. single layers under jit ------------------------------------------------------
LAYERS = {
    'Linear': (lambda lib, rngs: lib.Linear(64, 64, rngs=rngs), (32, 64)),
    'Conv': (lambda lib, rngs: lib.Conv(8, 8, kernel_size=(3, 3), rngs=rngs), (4, 16, 16, 8)),
    'BatchNorm': (lambda lib, rngs: lib.BatchNorm(64, rngs=rngs), (32, 64)),
    'MultiHeadAttention': (lambda lib, rngs: lib.MultiHeadAttention(
        num_heads=4, in_features=32, decode=False, rngs=rngs), (4, 16, 32)),
}


def bench_layers(args) -> str:
  rows = []
  for layer_name, (make, shape) in LAYERS.items():
    if not hasattr(ennx, layer_name):
      continue  # not written yet
    x = jnp.ones(shape)
    candidates = {}
    for name, lib in LIBS.items():
      layer = make(lib, lib.Rngs(0))
      forward = lib.jit(lambda layer, x: layer(x))
      candidates[name] = lambda f=forward, m=layer: f(m, x)
    graphdef, state = ennx.split(make(ennx, ennx.Rngs(0)))
    pure = jax.jit(lambda state, x: ennx.merge(graphdef, state)(x))
    candidates['jax.jit (pure)'] = lambda: pure(state, x)
    t = time_interleaved(candidates, calls=10 if args.quick else 100,
                         rounds=3 if args.quick else 9, clock=args.clock)
    rows.append([layer_name, us(t['jax.jit (pure)']), us(t['nnx_edu']), us(t['flax']),
                 f'{t["nnx_edu"] / t["jax.jit (pure)"]:.2f}x', f'{t["flax"] / t["nnx_edu"]:.1f}x'])
  return ('### One layer forward under nnx.jit, per call\n\n'
          + table(['layer', 'jax.jit (pure)', 'nnx_edu', 'flax', 'nnx_edu / pure',
                   'flax / nnx_edu'], rows))


# -- 4. jax.jit with a Module as a pytree ----------------------------------------------
def bench_pytree_jit(args) -> str:
  """``jax.jit(f)(model, x)``: JAX flattens the Module on every call."""
  rows = []
  for n in (1, 10) if args.quick else (1, 10, 100):
    x = jnp.ones((2, 4))
    candidates = {}
    for name, lib in LIBS.items():
      model = stack_of_linears(lib, n)
      candidates[name] = lambda m=model: forward_stack(m, x)
    arrays = [{'kernel': layer.kernel[...], 'bias': layer.bias[...]}
              for layer in stack_of_linears(ennx, n).layers]
    candidates['dicts'] = lambda: forward_dicts(arrays, x)
    t = time_interleaved(candidates, calls=20 if args.quick else 200,
                         rounds=3 if args.quick else 9, clock=args.clock)
    rows.append([n, us(t['dicts']), us(t['nnx_edu']), us(t['flax']),
                 f'{t["nnx_edu"] / t["dicts"]:.2f}x', f'{t["flax"] / t["nnx_edu"]:.1f}x'])
  return ('### jax.jit(f)(model, x) on a List of n Linear(4, 4) layers, per call\n\n'
          + table(['layers', 'plain dicts', 'nnx_edu', 'flax', 'nnx_edu / dicts',
                   'flax / nnx_edu'], rows))


@jax.jit
def forward_stack(model, x):
  for layer in model.layers:
    x = layer(x)
  return x


@jax.jit
def forward_dicts(layers, x):
  for layer in layers:
    x = x @ layer['kernel'] + layer['bias']
  return x


# -- 5. import time -----------------------------------------------------------------
def bench_import(args) -> str:
  """What ``import X`` adds to ``import jax``, in fresh interpreters.

  Bytecode caching is switched on (some sandboxes set PYTHONDONTWRITEBYTECODE,
  which makes every import recompile its sources), and a first run warms it.
  """
  env = {k: v for k, v in os.environ.items() if k != 'PYTHONDONTWRITEBYTECODE'}
  runs = 3 if args.quick else 9
  rows = []
  for module in ('nnx_edu', 'flax.nnx'):
    code = ('import time; t0 = time.perf_counter(); import jax; t1 = time.perf_counter(); '
            f'import {module}; t2 = time.perf_counter(); print(t1 - t0, t2 - t1)')
    samples = []
    for _ in range(runs + 1):
      out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                           check=True, env=env)
      samples.append([float(x) * 1e3 for x in out.stdout.split()])
    jax_ms = statistics.median(s[0] for s in samples[1:])
    added_ms = statistics.median(s[1] for s in samples[1:])
    rows.append([f'import {module}', f'{jax_ms:,.0f} ms', f'+{added_ms:,.0f} ms'])
  return ('### Import time (fresh interpreter, bytecode cached)\n\n'
          + table(['', 'import jax first', 'then the module adds'], rows))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--quick', action='store_true', help='few repetitions: a smoke run')
  parser.add_argument('--cpu-time', action='store_true', help='time process CPU, not wall')
  parser.add_argument('--only', choices=['train', 'graph', 'layers', 'pytree', 'import'],
                      nargs='*')
  args = parser.parse_args()
  args.clock = time.process_time if args.cpu_time else time.perf_counter
  sections = {'train': bench_train_step, 'graph': bench_graph, 'layers': bench_layers,
              'pytree': bench_pytree_jit, 'import': bench_import}
  print(f'jax {jax.__version__} on {jax.devices()[0].platform}; '
        f'{"CPU" if args.cpu_time else "wall"} time, median per call\n')
  for name, run in sections.items():
    if not args.only or name in args.only:
      print(run(args), end='\n\n', flush=True)


if __name__ == '__main__':
  main()
