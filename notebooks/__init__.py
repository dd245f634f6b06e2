"""Not a package to import: this file only lets pytest load notebooks/conftest.py
under its own name (notebooks.conftest), apart from tests/conftest.py."""
