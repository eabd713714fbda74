"""
What the report's plots and the pictures share: matplotlib without a display, file-safe names, and
PNG files written atomically (a killed report leaves no half-written picture).
"""

import io
import re

from ..utils.atomic import atomic_open


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display needed; imported on first use only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def safe_name(text):
    """``text`` with every run of characters other than ``A-Za-z0-9_.-`` replaced by one ``_``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def save_png(fig, path, dpi=110):
    """Render ``fig`` to PNG in memory, then write ``path`` atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    with atomic_open(path, "wb") as f:
        f.write(buf.getvalue())
