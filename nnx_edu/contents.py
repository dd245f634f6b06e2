"""The table of contents: nnx_edu's chapters, in reading order.

nnx_edu is a book in parts.  A part is a folder (``core/``, ``transforms/``,
``nn/``, ...), a chapter is a file, and this list, the one place that states
the order, reads them front to back.  Each chapter imports only chapters
listed before it, so a reader who follows this order never meets a name
that is explained later.  ``tests/test_layering.py`` holds the package to
that: it fails when a chapter imports a later one, and when the README's
reading order or a part's own list of chapters disagrees with this one.

>>> from nnx_edu.contents import CHAPTERS, part_of
>>> CHAPTERS[:3]
('tiny_nnx', 'core.reprs', 'core.variable_defaults')
>>> part_of('nn.linear')
'nn'
"""

CHAPTERS: tuple[str, ...] = (
    # Chapter 0: all of NNX in one small file, before the details.
    'tiny_nnx',
    # core/: Variables, State, the graph of objects, Modules and Rngs.
    'core.reprs',
    'core.variable_defaults',
    'core.array_like',
    'core.variables',
    'core.variable_types',
    'core.filters',
    'core.traversals',
    'core.state',
    'core.state_tools',
    'core.pytrees',
    'core.objects',
    'core.graph_mode',
    'core.graphwalk',
    'core.treewalk',
    'core.graph',
    'core.module',
    'core.graph_tools',
    'core.rngs',
    'core.views',
    'core.capture',
    # transforms/: JAX's transforms, lifted to take Modules.
    'transforms.lifting',
    'transforms.compilation',
    'transforms.autodiff',
    'transforms.iteration',
    'transforms.compat',
    # nn/: the layers, built on the core (and recurrent ones on scan).
    'nn.dtypes',
    'nn.initializers',
    'nn.common',
    'nn.activations',
    'nn.linear',
    'nn.embed',
    'nn.conv',
    'nn.normalization',
    'nn.group_normalization',
    'nn.weight_normalization',
    'nn.stochastic',
    'nn.attention_functions',
    'nn.attention',
    'nn.sequential',
    'nn.recurrent_cells',
    'nn.lstm_cells',
    'nn.recurrent',
    'nn.lora',
    'nn.pooling',
    # training/: what a training loop needs.
    'training.optimizer',
    # sharding/: models on a mesh of devices.
    'sharding.partitioning',
    # tools/: looking at models, and checking exercises.
    'tools.text_table',
    'tools.tabulate',
    'tools.display',
    'tools.exercises',
)


def part_of(chapter: str) -> str:
  """The part (folder) a chapter belongs to; ``''`` for chapter 0.

  >>> part_of('core.state'), part_of('tiny_nnx')
  ('core', '')
  """
  return chapter.rpartition('.')[0]
