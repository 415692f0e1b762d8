"""What a run keeps: the Parquet trial store and its front (``trials``, ``pareto``), the typed row it
stores (``rows``: states, fidelities, sources, ``TrialRecord``), and the Optuna study (``study``) in its
journal file (``journal``) or a database.

Imports: ``evaluators.core`` only; ``space``, ``search``, ``front``, ``export`` and ``cli`` read it. Only
this package spells a column name or a stored state, fidelity or source.
"""
