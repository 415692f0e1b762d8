"""The search side of mergefront: experiments, weight spaces, samplers, the driver, the store, the CLI.

It may import ``evaluators``; ``evaluators`` never imports it.
"""
