"""What users see of a front: text and JSON tables (``table``), pictures (``plots``) and the HTML page
about a run (``report``).

Imports: ``store``, ``run`` and ``evaluators.core``; only ``cli`` and the replications import it.
"""
