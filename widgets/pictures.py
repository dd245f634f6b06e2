"""Widgets, part 3 -- a small picture of one array, as PNG bytes.

A matrix (a Linear layer's kernel, say) is drawn as a heatmap, so rows and
columns that stand out are visible at a glance; anything else is drawn as a
histogram of its values.  A difference between two States uses a diverging
colour map centred on zero, so growth and shrinkage get opposite colours.

Only matplotlib's object API is used (``Figure``, never ``pyplot``), so
drawing here never touches the notebook's own plots or backend.

>>> import numpy as np
>>> png = picture(np.arange(6.0).reshape(2, 3))
>>> png[:8] == b'\\x89PNG\\r\\n\\x1a\\n'
True
"""

from __future__ import annotations

import io

import numpy as np


def kind(numbers: np.ndarray) -> str:
  """``'heatmap'`` for a 2-D array with both sides above one, else ``'histogram'``.

  >>> import numpy as np
  >>> kind(np.ones((3, 4))), kind(np.ones((1, 4))), kind(np.ones((2, 2, 2)))
  ('heatmap', 'histogram', 'histogram')
  """
  return 'heatmap' if np.ndim(numbers) == 2 and min(np.shape(numbers)) > 1 else 'histogram'


def picture(numbers: np.ndarray, *, difference: bool = False) -> bytes:
  """The picture ``kind`` chooses, as PNG bytes.

  ``difference=True`` colours a heatmap from blue (negative) to red
  (positive) around zero.

  >>> import numpy as np
  >>> len(picture(np.ones(10))) > 1000
  True
  """
  from matplotlib.figure import Figure  # imported on the first picture only

  figure = Figure(figsize=(3.4, 2.3), dpi=80, layout='constrained')
  axes = figure.add_subplot()
  numbers = np.asarray(numbers, dtype=np.float64)
  if kind(numbers) == 'heatmap':
    limit = float(np.nanmax(np.abs(numbers))) or 1.0
    colors = ({'cmap': 'RdBu_r', 'vmin': -limit, 'vmax': limit} if difference
              else {'cmap': 'viridis'})
    image = axes.imshow(numbers, aspect='auto', interpolation='nearest', **colors)
    figure.colorbar(image, ax=axes)
    axes.set_xlabel('column')
    axes.set_ylabel('row')
  else:
    axes.hist(numbers.ravel(), bins=min(40, max(5, numbers.size // 4)), color='#3b82f6')
    axes.set_xlabel('change' if difference else 'value')
    axes.set_ylabel('count')
  buffer = io.BytesIO()
  figure.savefig(buffer, format='png')
  return buffer.getvalue()
