"""The layers: ``nnx_edu.nn``.  Each file is a chapter on one family of layers."""

from nnx_edu.nn import initializers
from nnx_edu.nn.activations import *  # noqa: F403
from nnx_edu.nn.attention_functions import *  # noqa: F403
from nnx_edu.nn.attention import *  # noqa: F403
from nnx_edu.nn.dtypes import canonicalize_dtype, promote_dtype
from nnx_edu.nn.linear import *  # noqa: F403
from nnx_edu.nn.conv import *  # noqa: F403
from nnx_edu.nn.normalization import *  # noqa: F403
from nnx_edu.nn.group_normalization import *  # noqa: F403
from nnx_edu.nn.weight_normalization import *  # noqa: F403
from nnx_edu.nn.stochastic import *  # noqa: F403
from nnx_edu.nn.sequential import *  # noqa: F403
from nnx_edu.nn.recurrent_cells import *  # noqa: F403
from nnx_edu.nn.lstm_cells import *  # noqa: F403
from nnx_edu.nn.recurrent import *  # noqa: F403
from nnx_edu.nn.lora import *  # noqa: F403
from nnx_edu.nn.pooling import *  # noqa: F403
