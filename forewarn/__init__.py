"""The `forewarn` command line: the composition root that wires the product packages together."""

__all__: list[str] = []
