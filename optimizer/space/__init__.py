"""The weight space: how the sampler's raw parameters become the merge we build and the weights we record.

Imports: ``evaluators`` only; the sampler, the experiment and everything after them build on it.
"""
