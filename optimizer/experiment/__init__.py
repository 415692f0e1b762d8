"""An experiment as the user wrote it: its schema (``config``), what its scores depend on
(``fingerprint``) and the checks that run before a run directory exists (``preflight``).

Imports: ``space``, ``sampler`` and ``evaluators``; never ``search``, ``store``, ``run``, ``front``,
``export`` or ``cli``, which read experiments.
"""
