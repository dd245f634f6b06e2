"""The tests, a package laid out like nnx_edu: ``tests/core/`` tests ``nnx_edu/core/``, and so on.

Being a package, every test imports the shared helpers one way: ``from tests.parity import ...``
and ``from tests.models import ...``.  The tests of the whole package (layering, docs,
notebooks, widgets, the browser) sit here at the top.
"""
