"""The book's figure style: readable sizes and series that survive greyscale."""

from __future__ import annotations

import base64
import io
import itertools

import matplotlib
import matplotlib.figure
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
    """Apply the book's matplotlib style to every later figure, and check each figure's tick labels when drawn.

    Every figure made through pyplot from then on runs ``check_tick_labels`` each time it is drawn
    (shown inline, saved, or rendered as a widget frame), so overlapping labels fail the book build.
    """
    matplotlib.rcParams.update(STYLE)
    matplotlib.rcParams["figure.hooks"] = ["labs.plotting:_watch_tick_labels"]


def _watch_tick_labels(fig) -> None:
    fig.canvas.mpl_connect("draw_event", lambda event: check_tick_labels(event.canvas.figure, event.renderer))


def overlapping_tick_labels(fig, renderer=None) -> list[tuple[str, str]]:
    """Pairs of tick labels, on one axis of ``fig``, whose drawn boxes overlap by more than a pixel each way.

    Only labels that are drawn count: visible, not empty, upright or vertical, at a tick inside the view.
    ``fig`` must have been drawn (its tick labels are placed at draw time).
    """
    if not isinstance(fig, matplotlib.figure.Figure):
        raise TypeError(f"overlapping_tick_labels: fig must be a matplotlib Figure, got {type(fig).__name__}")
    renderer = renderer or fig.canvas.get_renderer()
    found = []
    for ax in fig.axes:
        if ax.name != "rectilinear":
            continue
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            slack = 1e-9 * max(abs(low), abs(high), 1e-300)
            boxes = []
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if not low - slack <= tick.get_loc() <= high + slack:
                    continue
                for label in (tick.label1, tick.label2):
                    if label.get_visible() and label.get_text().strip() and label.get_rotation() % 90 == 0:
                        boxes.append((label.get_text(), label.get_window_extent(renderer)))
            for (text_a, a), (text_b, b) in itertools.combinations(boxes, 2):
                if min(a.x1, b.x1) - max(a.x0, b.x0) > 1 and min(a.y1, b.y1) - max(a.y0, b.y0) > 1:
                    found.append((text_a, text_b))
    return found


def check_tick_labels(fig, renderer=None) -> None:
    """Judge (``labs.derive.judge``) that no two tick labels of ``fig`` overlap; name the pairs that do."""
    from .derive import judge

    overlaps = overlapping_tick_labels(fig, renderer)
    title = fig.get_suptitle() or next((ax.get_title() for ax in fig.axes if ax.get_title()), "") or "untitled"
    judge(not overlaps, f"tick labels of figure '{title}' do not overlap", "figure",
          f"figure '{title}': tick labels overlap: " + ", ".join(f"{a!r} and {b!r}" for a, b in overlaps[:5]))


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
