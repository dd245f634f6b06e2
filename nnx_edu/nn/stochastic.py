"""Layers -- Dropout: randomness during training only.

Dropout zeroes each input element with probability ``rate`` and scales the
survivors by ``1 / (1 - rate)``, so the expected value of every element is
unchanged.  Two things make it different from the other layers:

* **It needs random keys.**  ``Dropout(rate, rngs=rngs)`` forks its own
  stream from ``rngs.dropout`` (or from ``rngs.default`` when there is no
  ``dropout`` stream) and draws one key per call from it.  The stream is part
  of the layer's State, so its count advances through ``nnx.jit`` too.
* **It is switched on and off.**  ``deterministic=True`` turns it into the
  identity.  ``model.eval()`` sets ``deterministic=True`` on every layer that
  has the attribute, ``model.train()`` sets it back to ``False``
  (see ``core/module.py``).

>>> import jax.numpy as jnp
>>> import nnx_edu as nnx
>>> dropout = nnx.Dropout(0.5, rngs=nnx.Rngs(0))
>>> y = dropout(jnp.ones(8))
>>> sorted(set(y.tolist()))   # each element is dropped (0) or doubled (2)
[0.0, 2.0]
>>> dropout.eval()
>>> dropout(jnp.ones(3))
Array([1., 1., 1.], dtype=float32)
"""

from __future__ import annotations

import typing as tp

import jax
import jax.numpy as jnp

from nnx_edu.core.module import Module
from nnx_edu.core.pytrees import data
from nnx_edu.core.rngs import Rngs, RngStream

__all__ = ['Dropout']

# What a caller may hand Dropout for randomness: Rngs, one stream, or a key.
RngsLike = tp.Union[Rngs, RngStream, jax.Array]


class Dropout(Module):
  """Randomly zero elements with probability ``rate`` while training.

  Args:
    rate: the probability of *dropping* an element (not of keeping it), in
      ``[0, 1]``.  ``rate=1`` drops everything.
    broadcast_dims: axes along which one mask value is shared, e.g.
      ``broadcast_dims=(1,)`` drops whole rows of a ``(batch, length, ...)``
      input at once.
    deterministic: if ``True`` the layer returns its input unchanged.  Can be
      overridden per call; ``eval()`` / ``train()`` set it.
    rng_collection: the name of the Rngs stream to fork keys from.
    rngs: where keys come from: ``Rngs``, an ``RngStream``, or ``None`` if
      every call will pass ``rngs=`` itself.

  >>> import jax.numpy as jnp
  >>> import nnx_edu as nnx
  >>> layer = nnx.Dropout(0.5, broadcast_dims=(0,), rngs=nnx.Rngs(dropout=1))
  >>> y = layer(jnp.ones((4, 6)))
  >>> bool((y == y[0]).all())   # every row got the same mask
  True
  """

  def __init__(self, rate: float, *, broadcast_dims: tp.Sequence[int] = (),
               deterministic: bool | None = False, rng_collection: str = 'dropout',
               rngs: Rngs | RngStream | None = None):
    if not 0.0 <= rate <= 1.0:
      raise ValueError(
          f'Dropout: rate is the probability of dropping an element and must lie '
          f'in [0, 1], got rate={rate}. For "keep 90%" write Dropout(0.1).'
      )
    self.rate = rate
    self.broadcast_dims = broadcast_dims
    self.deterministic = deterministic
    self.rng_collection = rng_collection
    # Fork, rather than share, the caller's stream: the layer owns its keys,
    # so drawing them never shifts the keys other layers get.
    if isinstance(rngs, Rngs):
      self.rngs = rngs[rng_collection].fork()
    elif isinstance(rngs, RngStream):
      self.rngs = rngs.fork()
    elif rngs is None:
      self.rngs = data(None)  # a data slot that holds no stream yet
    else:
      raise TypeError(
          f'Dropout: rngs must be nnx.Rngs, an nnx.RngStream or None, got '
          f'{type(rngs).__name__}. Example: nnx.Dropout(0.1, rngs=nnx.Rngs(0)).'
      )

  def __call__(self, inputs: jax.Array, *, deterministic: bool | None = None,
               rngs: RngsLike | None = None) -> jax.Array:
    """Drop elements of ``inputs`` (unless deterministic) and rescale the rest.

    ``deterministic`` and ``rngs`` given here win over the constructor's.

    >>> import jax, jax.numpy as jnp
    >>> import nnx_edu as nnx
    >>> layer = nnx.Dropout(0.5)   # no rngs of its own...
    >>> layer(jnp.ones(4), rngs=jax.random.key(0)).shape   # ...so pass a key
    (4,)
    """
    deterministic = self._resolve_deterministic(deterministic)
    if deterministic or self.rate == 0.0:
      return inputs
    if self.rate == 1.0:  # keep_prob = 0 would divide by zero below
      return jnp.zeros_like(inputs)
    key = self._next_key(rngs)
    keep_prob = 1.0 - self.rate
    mask_shape = list(inputs.shape)
    for axis in self.broadcast_dims:
      mask_shape[axis] = 1
    keep = jax.random.bernoulli(key, p=keep_prob, shape=mask_shape)
    keep = jnp.broadcast_to(keep, inputs.shape)
    return jax.lax.select(keep, inputs / keep_prob, jnp.zeros_like(inputs))

  def set_view(self, deterministic: bool | None = None) -> None:
    """Used by ``nnx.view``: masking off (True) or on (False); None leaves it.

    >>> import nnx_edu as nnx
    >>> nnx.view(nnx.Dropout(0.5), deterministic=True).deterministic
    True

    Args:
      deterministic: if True, disables dropout masking.
    """
    if deterministic is not None:
      self.deterministic = deterministic

  def _resolve_deterministic(self, deterministic: bool | None) -> bool:
    if deterministic is not None:
      return deterministic
    if self.deterministic is not None:
      return self.deterministic
    raise ValueError(
        'Dropout: deterministic is None both in the constructor and in the '
        'call, so the layer does not know whether to drop. Pass '
        'deterministic=True/False to one of them, or call model.train() / '
        'model.eval().'
    )

  def _next_key(self, rngs: RngsLike | None) -> jax.Array:
    rngs = rngs if rngs is not None else self.rngs
    if rngs is None:
      raise ValueError(  # Flax's sentence first, for code that matches it
          '`deterministic` is False, but no `rngs` argument was provided to Dropout as '
          f'either a __call__ argument or class attribute. Dropout (rate={self.rate}) '
          'needs random keys: build it with nnx.Dropout(rate, rngs=nnx.Rngs(dropout=0)), '
          'or call layer(x, rngs=...), or switch it off with deterministic=True / model.eval().'
      )
    if isinstance(rngs, Rngs):
      return rngs[self.rng_collection]()
    if isinstance(rngs, RngStream):
      return rngs()
    if isinstance(rngs, jax.Array):
      return rngs
    raise TypeError(
        f'Dropout: rngs must be nnx.Rngs, an nnx.RngStream or a jax.random.key, '
        f'got {type(rngs).__name__}.'
    )
