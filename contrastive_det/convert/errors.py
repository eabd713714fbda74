"""Errors raised by the checkpoint converters. Every message names the file or key at fault."""

from __future__ import annotations

from typing import Iterable


class ConversionError(ValueError):
    """A checkpoint cannot be converted (unknown layout, missing or mis-shaped keys, bad
    depth...)."""


class UnsafeCheckpointError(ConversionError):
    """A checkpoint needs arbitrary pickled Python objects to load; refused unless trusted."""


class VerificationError(ConversionError):
    """The converted weights do not reproduce the source network's outputs."""


class AmbiguousCheckpointError(ConversionError):
    """
    A checkpoint holds several ResNets and nothing says which one is the backbone.

    Attributes:
        candidates (list[str]): the ``--prefix`` value that selects each of them.
    """

    def __init__(self, message: str, candidates: Iterable[str]):
        super().__init__(message)
        self.candidates = list(candidates)
