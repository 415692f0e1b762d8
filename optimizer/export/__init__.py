"""Shipping a merge: a model directory streamed from the pool (``model``), a trial of a run (``trial``),
its model card (``modelcard``), its mergekit recipe (``mergekit``) and, for an all-LoRA pool, one PEFT
adapter (``adapter``).

Imports: ``space``, ``store``, ``run`` and ``evaluators``; only ``cli`` imports it.
"""
