"""The transforms: JAX's ``jit``, ``grad``, ``vmap`` and ``scan``, lifted to take Modules.

Read in this order:

- ``lifting.py`` -- the one recipe every transform follows: split the Modules
  in the arguments into arrays, run a pure function, write the changes back;
- ``compilation.py`` -- ``nnx.jit`` and ``nnx.eval_shape``;
- ``autodiff.py`` -- ``nnx.grad``, ``nnx.value_and_grad``, ``DiffState``;
- ``iteration.py`` -- ``nnx.vmap``, ``nnx.scan``, ``split_rngs``, ``StateAxes``;
- ``compat.py`` -- ``nnx.compat``: the graph-mode API whatever ``set_graph_mode`` says.
"""
