"""The search side of mergefront, one package per step of the data path: the weight ``space``, the
``store`` (Parquet trials, the Optuna study), the ``sampler``, the ``experiment`` file, the ``run``
directory, the ``search`` loop, the ``front`` views, the ``export`` and the ``cli``.

It may import ``evaluators``; ``evaluators`` never imports it.
"""
