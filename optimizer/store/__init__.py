"""What a run keeps: the Parquet trial store and its front (``trials``, ``pareto``), and the Optuna study
(``study``) in its journal file (``journal``) or a database.

Imports: ``evaluators.core`` only; ``search``, ``front``, ``export`` and ``cli`` read it.
"""
