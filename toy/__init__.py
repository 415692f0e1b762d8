"""The embedded toy pool: tiny Llama models trained in-process on synthetic skills.

Everything here is built locally from a seed; nothing is downloaded.

Imports: ``evaluators`` (the pool, the merge, scoring and the worker that ``scores`` uses to print the
toy pool's score table); never ``optimizer``.
"""
