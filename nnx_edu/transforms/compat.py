"""Transforms -- ``nnx.compat``: the graph-mode API, whatever ``set_graph_mode`` says.

Flax is moving its default towards tree mode (``core/graph_mode.py``).
Code written for graph mode -- shared layers, tied weights -- keeps working
by calling ``nnx.compat.split`` instead of ``nnx.split``: the same
functions with ``graph=True`` filled in.  nnx_edu's transforms always work
in graph mode (tree mode reaches them later), so ``compat`` offers them
as they are.

>>> import nnx_edu as nnx
>>> model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
>>> with nnx.set_graph_mode(False):
...   print(nnx.graphdef(model))
...   print(nnx.compat.graphdef(model))
GraphDef(Linear, tree mode, 2 leaves)
GraphDef(Linear, 11 attributes)
"""

from __future__ import annotations

import functools

from nnx_edu.core import graph as graphlib
from nnx_edu.core.module import iter_children, iter_modules
from nnx_edu.transforms.autodiff import grad, value_and_grad
from nnx_edu.transforms.compilation import eval_shape, jit
from nnx_edu.transforms.iteration import scan, split_rngs, vmap

__all__ = ['clone', 'eval_shape', 'grad', 'graphdef', 'iter_children', 'iter_graph',
           'iter_modules', 'jit', 'scan', 'split', 'split_rngs', 'state', 'value_and_grad',
           'vmap']

# The graph functions, with graph mode filled in.
split = functools.partial(graphlib.split, graph=True)
state = functools.partial(graphlib.state, graph=True)
clone = functools.partial(graphlib.clone, graph=True)
graphdef = functools.partial(graphlib.graphdef, graph=True)
iter_graph = functools.partial(graphlib.iter_graph, graph=True)
