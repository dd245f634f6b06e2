"""Sharding: a model's arrays laid out over a mesh of devices.

- ``partitioning.py`` -- ``with_partitioning``: sharding names kept as Variable
  metadata; ``get_partition_spec`` and ``get_named_sharding`` read them back.
"""
