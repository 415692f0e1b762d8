"""What users see of a front: text and JSON tables (``table``), the measures a picture or the report shows
(``measures``), static pictures (``plots``, matplotlib), interactive ones (``interactive``, Plotly) and the HTML
page about a run (``report``, its tables in ``report_table``).

Imports: ``store``, ``run``, ``experiment`` (to read held-out tasks' directions from run.json) and
``evaluators.core``; only ``cli`` and the replications import it.
"""
