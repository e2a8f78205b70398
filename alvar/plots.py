"""Saving the PNGs that reports and `alvar coverage` write: one layout, one resolution, the figure's memory let go."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 120


def save_figure(figure: Figure, path: Path) -> Path:
    """Lay ``figure`` out tightly, write it to ``path`` as a PNG and close it; return ``path``."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path
