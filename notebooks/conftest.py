"""Settings for running the notebooks as tests (nbval, see ``[tool.pytest.ini_options]``).

The kernels that nbval starts inherit this process's environment, so the
settings below reach every notebook:

* ``JAX_PLATFORMS`` defaults to ``cpu``, the platform the committed outputs
  come from.  Set it yourself to run the notebooks on an accelerator
  (``JAX_PLATFORMS=cuda`` or ``tpu``; see the README).
* One JAX compilation cache is shared by all the kernels of a run, so that a
  small operation compiled by one notebook is not compiled again by the next.
* matplotlib builds its font cache here, once, before any kernel starts: its
  "building the font cache" message would otherwise reach a notebook's stderr,
  which nbval cannot sanitize.
"""

import importlib.util
import os

os.environ.setdefault('JAX_PLATFORMS', 'cpu')


def pytest_configure(config):
  cache = getattr(config, 'cache', None)  # None with -p no:cacheprovider
  if 'JAX_COMPILATION_CACHE_DIR' not in os.environ and cache is not None:
    os.environ['JAX_COMPILATION_CACHE_DIR'] = str(cache.mkdir('jax-compilation-cache'))
    # cache every compilation: the notebooks' operations are small and quick to compile
    os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
    os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')
  if importlib.util.find_spec('matplotlib') is not None:
    import matplotlib.font_manager  # noqa: F401  (builds the font cache if missing)
