"""Tests of nnx_edu/tools/."""
