"""What every other package of mergefront shares: the exception root (``errors``), frozen pydantic
models and YAML loading (``config``), named registries (``registry``) and the process environment
(``environment``).

Imports: nothing of mergefront; every other package may import it.
"""
