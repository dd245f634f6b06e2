"""Tests of nnx_edu/core/: one file per chapter, parity with Flax beside the unit tests."""
