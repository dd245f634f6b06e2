"""Tests of nnx_edu/training/."""
