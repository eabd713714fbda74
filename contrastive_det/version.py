"""The version recorded in every results.json."""
__version__ = "0.1.0"
