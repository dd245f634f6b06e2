"""Training: what a training loop needs beyond the model.

- ``optimizer.py`` -- ``nnx.Optimizer``: optax's state kept beside the model,
  and ``update(model, grads)`` applying one step in place.
"""
