"""The scoring side of mergefront: pool loading, merge operators, model backends, lm-eval, workers.

Nothing in here imports ``optimizer``: the search side depends on us, never the reverse.
"""
