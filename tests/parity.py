"""Helpers for comparing nnx_edu with Flax 0.12.8."""

import re


def normalize_repr(text: str) -> str:
  """Hide memory addresses, which differ between any two objects."""
  return re.sub(r' at 0x[0-9a-f]+', ' at 0x…', text)
