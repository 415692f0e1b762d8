"""The weight space: how the sampler's raw parameters become the merge we build and the weights we record.

Imports: ``evaluators`` and ``optimizer.store`` (a baseline's ``TrialSource``); the sampler, the experiment and everything after them build on it.
"""
