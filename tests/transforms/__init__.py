"""Tests of nnx_edu/transforms/: one file per chapter."""
