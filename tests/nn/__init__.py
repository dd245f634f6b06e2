"""Tests of nnx_edu/nn/: one file per chapter (or per group of chapters, named after it)."""
