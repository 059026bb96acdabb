"""The book's figure style: readable sizes and series that survive greyscale."""

from __future__ import annotations

import base64
import io

import matplotlib
from cycler import cycler
from matplotlib.ticker import NullLocator

# Okabe-Ito colours (colour-blind safe), each paired with its own line style
# and marker so that series stay distinct when printed in grey.
COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]
LINESTYLES = ["-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), (0, (1, 3))]
MARKERS = ["o", "s", "^", "D", "v", "P", "X"]

STYLE = {
    "figure.figsize": (6.4, 3.6),
    "figure.dpi": 100,
    "savefig.dpi": 110,
    "savefig.bbox": "tight",
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "lines.linewidth": 1.8,
    "lines.markersize": 4,
    "axes.prop_cycle": cycler(color=COLORS) + cycler(linestyle=LINESTYLES) + cycler(marker=MARKERS),
}


def use_style() -> None:
    """Apply the book's matplotlib style to every later figure."""
    matplotlib.rcParams.update(STYLE)


def figure_png(fig, *, dpi: int = 80) -> str:
    """Render a matplotlib figure to a base64 PNG string (for self-contained HTML)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def log_ticks(ax, values, labels=None, *, axis: str = "x") -> None:
    """Put ``axis`` of ``ax`` on a log scale with a labelled tick at each of ``values`` and no minor ticks.

    Explicit ticks on a log axis that spans less than a decade otherwise get matplotlib's
    minor labels too (2x10^2, 3x10^2, ...), which overlap them. Call it after the last
    ``ax.set(xscale=...)``: setting the scale again resets the ticks.
    """
    if axis not in ("x", "y"):
        raise ValueError(f"log_ticks: axis must be 'x' or 'y', got {axis!r}")
    values = list(values)
    labels = [f"{v:g}" for v in values] if labels is None else list(labels)
    if len(labels) != len(values):
        raise ValueError(f"log_ticks: labels must match values one to one, got {len(labels)} labels "
                         f"for {len(values)} values")
    target = ax.xaxis if axis == "x" else ax.yaxis
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    target.set_ticks(values, labels)
    target.set_minor_locator(NullLocator())
