"""The embedded toy pool: tiny Llama models trained in-process on synthetic skills.

Everything here is built locally from a seed; nothing is downloaded.

Imports: ``pool``, ``merge`` and the shared modules of ``evaluators``; never ``optimizer``.
"""
