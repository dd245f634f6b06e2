"""Tests of nnx_edu/sharding/."""
