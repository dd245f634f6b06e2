"""The layers: ``nnx_edu.nn``.  Each file is a chapter on one family of layers.

Read in this order (``nnx_edu/contents.py`` states it once for the package):

- ``dtypes.py``, ``initializers.py``, ``common.py``, ``activations.py`` --
  what every layer shares;
- ``linear.py`` -- ``Linear``, ``LinearGeneral``, ``Einsum``;
- ``embed.py`` -- ``Embed``;
- ``conv.py`` -- ``Conv``, ``ConvTranspose``;
- ``normalization.py`` -- ``BatchNorm``, ``LayerNorm``, ``RMSNorm``;
- ``group_normalization.py`` -- ``GroupNorm``, ``InstanceNorm``;
- ``weight_normalization.py`` -- ``SpectralNorm``, ``WeightNorm``;
- ``stochastic.py`` -- ``Dropout``;
- ``attention_functions.py`` -- masks and dot-product attention;
- ``attention.py`` -- ``MultiHeadAttention``;
- ``sequential.py`` -- ``Sequential``;
- ``recurrent_cells.py`` -- ``SimpleCell``, ``GRUCell``;
- ``lstm_cells.py`` -- ``LSTMCell``, ``OptimizedLSTMCell``;
- ``recurrent.py`` -- ``RNN``, ``Bidirectional`` (on ``nnx.scan``, from ``transforms/``);
- ``lora.py`` -- ``LoRA``, ``LoRALinear``;
- ``pooling.py`` -- ``avg_pool``, ``max_pool``, ``min_pool``, ``pool``.
"""

from nnx_edu.nn import initializers
from nnx_edu.nn.dtypes import canonicalize_dtype, promote_dtype
from nnx_edu.nn.activations import *  # noqa: F403
from nnx_edu.nn.linear import *  # noqa: F403
from nnx_edu.nn.embed import *  # noqa: F403
from nnx_edu.nn.conv import *  # noqa: F403
from nnx_edu.nn.normalization import *  # noqa: F403
from nnx_edu.nn.group_normalization import *  # noqa: F403
from nnx_edu.nn.weight_normalization import *  # noqa: F403
from nnx_edu.nn.stochastic import *  # noqa: F403
from nnx_edu.nn.attention_functions import *  # noqa: F403
from nnx_edu.nn.attention import *  # noqa: F403
from nnx_edu.nn.sequential import *  # noqa: F403
from nnx_edu.nn.recurrent_cells import *  # noqa: F403
from nnx_edu.nn.lstm_cells import *  # noqa: F403
from nnx_edu.nn.recurrent import *  # noqa: F403
from nnx_edu.nn.lora import *  # noqa: F403
from nnx_edu.nn.pooling import *  # noqa: F403
