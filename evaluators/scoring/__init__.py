"""Scoring a live model: task specs and the task library (``tasks``), lm-eval wiring (``lmeval``) and
the scores they produce (``score``).

Imports: ``evaluators.core`` only; the backends build on it, it never imports them, the pool or the merge.
"""
