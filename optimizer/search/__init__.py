"""The search: its start (``start``: checks, then the run directory), the asynchronous ask/tell loop (``driver``) over a pool of workers (``workers``), with its
budget and summary (``summary``), crash recovery (``recovery``), warm start (``warmstart``) and the
watch mode that re-runs it when checkpoints land (``watch``).

Imports: ``experiment``, ``space``, ``sampler``, ``store``, ``run`` and ``evaluators``; only ``cli``
imports it.
"""
