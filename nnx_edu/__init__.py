"""nnx_edu: a readable re-implementation of Flax NNX, for teaching.

``import nnx_edu as nnx`` gives the names of ``flax.nnx``.  The imports
below follow the reading order of the chapters (see the README).
"""

from nnx_edu import filters, graph
from nnx_edu.variable_defaults import use_eager_sharding, using_eager_sharding, var_defaults
from nnx_edu.variables import Variable, VariableMetadata
from nnx_edu.variable_types import (BatchStat, Cache, Intermediate, Param, Perturbation,
                                    register_variable_name, variable_name_from_type,
                                    variable_type_from_name, with_metadata)
from nnx_edu.filters import All, Any, Everything, Not, Nothing, OfType, PathContains, WithTag
from nnx_edu.state import (FlatState, State, from_flat_state, replace_by_pure_dict,
                           to_flat_state, to_pure_dict)
from nnx_edu.objects import Object, data, static
from nnx_edu.graphwalk import GraphDef
from nnx_edu.graph import (clone, graphdef, iter_graph, merge, pop, set_metadata, split, state,
                           update)
from nnx_edu.module import Dict, List, Module, iter_children, iter_modules
from nnx_edu.rngs import RngCount, RngKey, Rngs, RngState, RngStream
from nnx_edu.nn import *  # noqa: F403  (the layers and activations)
from nnx_edu.nn import initializers
from nnx_edu.transforms import *  # noqa: F403
from nnx_edu.autodiff import *  # noqa: F403
from nnx_edu.iteration import *  # noqa: F403
from nnx_edu.training import *  # noqa: F403
from nnx_edu.sharding import *  # noqa: F403
from nnx_edu.summary import *  # noqa: F403
from nnx_edu.display import display


def __getattr__(name: str):
  if name == 'VariableState':  # deprecated alias, warns like Flax
    from nnx_edu import variables

    return variables.VariableState
  raise AttributeError(f"module 'nnx_edu' has no attribute {name!r}")
