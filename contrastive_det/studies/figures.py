"""
What the report's plots and the pictures share: matplotlib without a display, file-safe names, and
PNG files written atomically (a killed report leaves no half-written picture).
"""

from __future__ import annotations

import io
import re
from types import ModuleType
from typing import TYPE_CHECKING

from ..utils.atomic import atomic_open

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def pyplot() -> ModuleType:
    """``matplotlib.pyplot`` on the Agg backend (no display needed; imported on first use only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def safe_name(text: str) -> str:
    """``text`` with every run of characters other than ``A-Za-z0-9_.-`` replaced by one ``_``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def save_png(fig: Figure, path: str, dpi: int = 110) -> None:
    """Render ``fig`` to PNG in memory, then write ``path`` atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    with atomic_open(path, "wb") as f:
        f.write(buf.getvalue())
