"""The run directory: its layout and ``run.json`` (``directory``), created once and read by every later
command on the run.

Imports: ``experiment`` and ``evaluators``; ``search``, ``front``, ``export`` and ``cli`` use it.
"""
