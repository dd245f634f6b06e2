"""Sharding -- sharding names as Variable metadata: ``with_partitioning``.

A model too big for one device is cut into pieces, one per device.  JAX
describes the devices as a *mesh*: a grid whose axes have names, such as
``('data', 'model')``.  A ``PartitionSpec`` says, for each axis of an array,
which mesh axis it is cut along (``None``: not cut, every device holds it
all).  ``P('data', None)`` cuts the rows of a matrix over the ``'data'``
devices.

NNX keeps these names where they belong: in each Variable's metadata, under
``out_sharding`` (``core/variables.py``).

* ``with_partitioning(init, names)`` wraps an initializer so that the
  Variable it fills gets the names (it is ``with_metadata``, ``core/variable_types.py``);
* when such a Variable is made, its value is placed on the mesh at once --
  *eager sharding*, on by default as in Flax (``core/variable_defaults.py``).  The mesh is the
  Variable's ``mesh`` metadata, or else the one set with ``jax.set_mesh``;
* ``get_partition_spec`` reads the names back as PartitionSpecs, and
  ``get_named_sharding`` pairs them with a mesh: what ``jax.jit`` and
  ``jax.device_put`` take.

One device makes a mesh too, so this runs anywhere:

>>> import jax
>>> import nnx_edu as nnx
>>> mesh = jax.make_mesh((1,), ('data',))
>>> init = nnx.with_partitioning(nnx.initializers.lecun_normal(), ('data', None))
>>> with jax.set_mesh(mesh):
...   model = nnx.Linear(2, 3, kernel_init=init, rngs=nnx.Rngs(0))
>>> model.kernel.get_metadata()
{'out_sharding': ('data', None), 'mesh': None}
>>> tuple(model.kernel.value.sharding.spec)  # a PartitionSpec, as a tuple
('data', None)
>>> spec = nnx.get_partition_spec(nnx.state(model))['kernel'].value
>>> isinstance(spec, jax.sharding.PartitionSpec), tuple(spec)
(True, ('data', None))
"""

from __future__ import annotations

import typing as tp

import jax
from jax.sharding import NamedSharding, PartitionSpec

from nnx_edu.core import graph
from nnx_edu.core.objects import Pytree
from nnx_edu.core.variable_defaults import check_rank
from nnx_edu.core.variable_types import with_metadata
from nnx_edu.core.variables import Variable

__all__ = ['get_named_sharding', 'get_partition_spec', 'with_partitioning']

A = tp.TypeVar('A')
F = tp.TypeVar('F', bound=tp.Callable[..., tp.Any])
Names = tp.Sequence[tp.Any] | PartitionSpec | NamedSharding


# -- attaching the names ---------------------------------------------------------
def with_partitioning(initializer: F, sharding: Names, mesh: jax.sharding.Mesh | None = None,
                      **metadata: tp.Any) -> F:
  """Wrap ``initializer`` so the Variable it fills gets sharding names.

  The names are kept as ``out_sharding`` metadata, beside ``mesh`` and any
  other ``metadata`` given.  Give at most one name (or ``None``) per axis
  of the array; axes without a name are not cut.

  >>> import jax
  >>> import nnx_edu as nnx
  >>> init = nnx.with_partitioning(nnx.initializers.zeros_init(), ('in', 'out'))
  >>> with nnx.use_eager_sharding(False):   # no mesh here: names only
  ...   nnx.Param(init(jax.random.key(0), (2, 3)))
  Param( # 6 (24 B)
    value=Array([[0., 0., 0.],
           [0., 0., 0.]], dtype=float32),
    out_sharding=('in', 'out'),
    mesh=None,
    eager_sharding=False
  )
  """
  def checked(*args: tp.Any, **kwargs: tp.Any) -> tp.Any:
    value = initializer(*args, **kwargs)
    name = getattr(initializer, '__name__', type(initializer).__name__)
    check_rank(sharding, value, f'with_partitioning({name}, {sharding!r})')
    return value

  return with_metadata(checked, out_sharding=sharding, mesh=mesh, **metadata)


# -- reading the names back ------------------------------------------------------
def get_partition_spec(tree: A) -> A:
  """The same tree with each value replaced by its ``PartitionSpec``.

  A Variable's spec comes from its ``out_sharding`` names; an array
  without names gets ``P()`` (not cut); anything else becomes ``None``.
  ``tree`` may be a State, a Module or any pytree.

  >>> import jax
  >>> import nnx_edu as nnx
  >>> with nnx.use_eager_sharding(False):
  ...   model = nnx.Linear(2, 3, rngs=nnx.Rngs(0), kernel_metadata={'out_sharding': ('a', 'b')})
  >>> specs = nnx.get_partition_spec(nnx.state(model))
  >>> tuple(specs['kernel'].value), tuple(specs['bias'].value)  # PartitionSpecs, as tuples
  (('a', 'b'), ())
  """
  return _map_leaves(_spec, tree)


def get_named_sharding(tree: A, mesh: jax.sharding.Mesh) -> A:
  """Like ``get_partition_spec``, with each spec placed on ``mesh``.

  >>> import jax
  >>> import nnx_edu as nnx
  >>> mesh = jax.make_mesh((1,), ('data',))
  >>> model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
  >>> tuple(nnx.get_named_sharding(nnx.state(model), mesh)['kernel'].value.spec)
  ()
  """
  def named(leaf: tp.Any) -> tp.Any:
    spec = _spec(leaf)
    if isinstance(spec, Variable):
      value = spec.get_value()
      return spec.replace(None if value is None else NamedSharding(mesh, value))
    return None if spec is None else NamedSharding(mesh, spec)

  return _map_leaves(named, tree)


def _spec(leaf: tp.Any) -> tp.Any:
  if isinstance(leaf, Variable):
    names = leaf.get_metadata('out_sharding', None)
    if names:
      return leaf.replace(names.spec if isinstance(names, NamedSharding) else PartitionSpec(*names))
    return leaf.replace(PartitionSpec() if hasattr(leaf.get_value(), 'shape') else None)
  return PartitionSpec() if hasattr(leaf, 'shape') else None


def _map_leaves(f: tp.Callable[[tp.Any], tp.Any], tree: tp.Any) -> tp.Any:
  """``jax.tree.map`` with Variables as leaves; a graph node maps its State."""
  if isinstance(tree, Pytree):  # Modules are not pytrees here: go through the State
    graphdef, state = graph.split(tree)
    return graph.merge(graphdef, _map_leaves(f, state))
  return jax.tree.map(f, tree, is_leaf=lambda x: isinstance(x, Variable))
