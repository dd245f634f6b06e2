"""The core: Variables, State, the graph of objects, Modules and Rngs.

Everything else in nnx_edu is built on these chapters.  Read them in order:

- ``reprs.py`` -- how everything prints;
- ``variable_defaults.py`` -- the switches a new Variable reads (``var_defaults``,
  eager sharding), so that the Variable chapters can use them;
- ``array_like.py`` -- holding one array and behaving like it: operators, indexing;
- ``variables.py`` -- ``Variable``: a mutable box with metadata and hooks;
- ``variable_types.py`` -- ``Param``, ``BatchStat``, ``Cache``, ``Intermediate``;
- ``filters.py`` -- saying which Variables you mean;
- ``traversals.py`` -- nested dicts flattened to ``{path: leaf}`` and back (``nnx.traversals``);
- ``state.py`` -- ``State``: a model's Variables as a nested mapping;
- ``state_tools.py`` -- ``map_state``, ``filter_state``, ``split_state``, ``merge_state``;
- ``pytrees.py`` -- which attributes are data, and how a node becomes a JAX pytree;
- ``objects.py`` -- ``Pytree``: graph nodes, their data and static attributes, how they print;
- ``graph_mode.py`` -- graph mode and tree mode: ``set_graph_mode``, ``set_graph_updates``;
- ``graphwalk.py`` -- ``flatten`` a graph into a GraphDef and leaves, ``unflatten`` it back;
- ``treewalk.py`` -- tree mode: a model taken apart as the JAX pytree it is;
- ``graph.py`` -- ``split``, ``merge``, ``state``, ``update``, ``clone``, ``pop``;
- ``module.py`` -- ``Module``, ``sow``, ``perturb``, ``train()``/``eval()``, ``List``, ``Dict``;
- ``graph_tools.py`` -- ``find_duplicates``, ``iter_module_children``, ``recursive_map``, ``map``;
- ``rngs.py`` -- ``Rngs``: named streams of random keys;
- ``views.py`` -- ``view``, ``with_attributes``, ``view_info``: a model seen in another mode;
- ``capture.py`` -- ``capture``: what a forward pass sowed, and ``perturb`` for its gradients.
"""
