"""The core: Variables, State, the graph of objects, Modules and Rngs.

Everything else in nnx_edu is built on these chapters.  Read them in order:

- ``reprs.py`` -- how everything prints;
- ``variable_defaults.py`` -- the switches a new Variable reads (``var_defaults``,
  eager sharding), so that the Variable chapters can use them;
- ``array_like.py`` -- holding one array and behaving like it: operators, indexing;
- ``variables.py`` -- ``Variable``: a mutable box with metadata and hooks;
- ``variable_types.py`` -- ``Param``, ``BatchStat``, ``Cache``, ``Intermediate``;
- ``filters.py`` -- saying which Variables you mean;
- ``state.py`` -- ``State``: a model's Variables as a nested mapping;
- ``objects.py`` -- graph nodes: data and static attributes, and how they print;
- ``graphwalk.py`` -- ``flatten`` a graph into a GraphDef and leaves, ``unflatten`` it back;
- ``graph.py`` -- ``split``, ``merge``, ``state``, ``update``, ``clone``, ``pop``;
- ``module.py`` -- ``Module``, ``sow``, ``train()``/``eval()``, ``List``, ``Dict``;
- ``rngs.py`` -- ``Rngs``: named streams of random keys.
"""
