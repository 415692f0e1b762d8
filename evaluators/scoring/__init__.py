"""Scoring a live model: task specs and the task library (``tasks``), the datasets the tasks read, checked in
the local cache and fetched into it (``datasets``), lm-eval wiring (``lmeval``) and the scores they produce
(``score``).

Imports: ``evaluators.core`` only; the backends build on it, it never imports them, the pool or the merge.
"""
