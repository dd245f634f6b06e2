"""nnx_edu: a readable re-implementation of Flax NNX, for teaching.

``import nnx_edu as nnx`` gives the names of ``flax.nnx``.  The package is a
book in parts -- ``core/``, ``transforms/``, ``nn/``, ``training/``,
``sharding/``, ``tools/`` -- whose chapters ``nnx_edu/contents.py`` lists in
reading order; the imports below follow that order.  Chapter 0,
``tiny_nnx.py``, tells the whole story in one small file first.
"""

from nnx_edu.core import filters, graph, traversals
from nnx_edu.core.variable_defaults import use_eager_sharding, using_eager_sharding, var_defaults
from nnx_edu.core.variables import A, Variable, VariableMetadata
from nnx_edu.core.variable_types import (BatchStat, Cache, Intermediate, Param, Perturbation,
                                         register_variable_name, variable_name_from_type,
                                         variable_type_from_name, with_metadata)
from nnx_edu.core.filters import All, Any, Everything, Not, Nothing, OfType, PathContains, WithTag
from nnx_edu.core.state import (FlatState, State, from_flat_state, replace_by_pure_dict,
                                to_flat_state, to_pure_dict)
from nnx_edu.core.state_tools import (filter_state, map_state, merge_state, restore_int_paths,
                                      split_state)
from nnx_edu.core.pytrees import (Data, Static, data, dataclass, has_data, is_data,
                                  register_data_type, static)
from nnx_edu.core.objects import Object, Pytree, check_pytree
from nnx_edu.core.graph_mode import set_graph_mode, set_graph_updates
from nnx_edu.core.graphwalk import GraphDef
from nnx_edu.core.graph import (clone, graphdef, iter_graph, merge, pop, set_metadata, split,
                                state, update)
from nnx_edu.core.module import M, Dict, List, Module, iter_children, iter_modules
from nnx_edu.core.graph_tools import find_duplicates, iter_module_children, map, recursive_map
from nnx_edu.core.rngs import RngCount, RngKey, Rngs, RngState, RngStream
from nnx_edu.core.views import vars_as, view, view_info, with_attributes, with_vars
from nnx_edu.core.capture import capture
from nnx_edu.transforms.compilation import *  # noqa: F403
from nnx_edu.transforms.autodiff import *  # noqa: F403
from nnx_edu.transforms.iteration import *  # noqa: F403
from nnx_edu.transforms import compat
from nnx_edu.nn import *  # noqa: F403  (the layers and activations)
from nnx_edu.nn import initializers
from nnx_edu.nn.initializers import Initializer
from nnx_edu.training.optimizer import *  # noqa: F403
from nnx_edu.sharding.partitioning import *  # noqa: F403
from nnx_edu.tools.tabulate import *  # noqa: F403
from nnx_edu.tools.display import display

# Flax's module names, which Flax code reaches through ``nnx.`` (``nnx.graphlib.split``):
# here each is the chapter that holds those names.
from nnx_edu.core import filters as filterlib
from nnx_edu.core import graph as graphlib
from nnx_edu.core import module
from nnx_edu.core import objects as pytreelib
from nnx_edu.core import reprs as reprlib
from nnx_edu.core import rngs as rnglib
from nnx_edu.core import state as statelib
from nnx_edu.core import variables as variablelib


def __getattr__(name: str):
  if name == 'VariableState':  # deprecated alias, warns like Flax
    from nnx_edu.core import variables

    return variables.VariableState
  raise AttributeError(f"module 'nnx_edu' has no attribute {name!r}")
