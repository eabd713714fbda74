"""The version recorded in every results.json."""

__version__ = "0.2.0.dev0"
