"""The scoring side of mergefront, one package per step of the data path: ``core`` (shared by both
sides), the checkpoint ``pool``, the ``merge`` methods and engine, ``scoring`` (tasks, lm-eval),
the model ``backends``, and ``worker`` (one pool, one live model).

Nothing in here imports ``optimizer``: the search side depends on us, never the reverse.
"""
