"""Pictures of collectives: who holds what before and after, and who sends what at each step."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from matplotlib.patches import FancyArrowPatch, Rectangle

from ..plotting import COLORS
from . import algorithms as sim

RANK_LETTERS = "ABCDEFGH"


def draw_schedule(schedule, p: int, ax=None, title: str = ""):
    """Ranks as rows, steps as columns; each message is an arrow from its sender to its receiver.

    Solid arrows add into the receiver's buffer (reduce), dashed ones overwrite (copy);
    an arrow's width is proportional to the number of elements it carries.
    """
    ax = ax or plt.gca()
    largest = max((m.n_elements for step in schedule for m in step), default=1) or 1
    for s, step in enumerate(schedule):
        reduce = step.kind == "reduce"
        for m in step:
            ax.add_patch(FancyArrowPatch(
                (s, m.src), (s + 1, m.dst), arrowstyle="-|>", mutation_scale=9,
                linewidth=0.6 + 2.6 * m.n_elements / largest, linestyle="-" if reduce else "--",
                color=COLORS[1] if reduce else COLORS[0], shrinkA=3, shrinkB=3,
            ))
    for s in range(len(schedule) + 1):
        ax.scatter([s] * p, range(p), color="black", s=10, zorder=3, marker="o")
    ax.set(xlim=(-0.3, max(len(schedule), 1) + 0.3), ylim=(p - 0.5, -0.5), yticks=range(p),
           xlabel="step", ylabel="rank", title=title)
    ax.set_xticks(range(len(schedule) + 1))
    ax.grid(False)
    return ax


def _labels(values: torch.Tensor, p: int) -> list[str]:
    """Decode ``bitmask-of-ranks + chunk/100`` into labels such as ``B2`` or ``ABCD2``."""
    out = []
    for v in values.tolist():
        mask = int(v)
        count = bin(mask).count("1")
        chunk = round((v - mask) * 100 / max(count, 1))
        ranks = "Σ" if mask == (1 << p) - 1 and p > 1 else "".join(RANK_LETTERS[r] for r in range(p) if mask >> r & 1)
        out.append(ranks + str(chunk))
    return out


def draw_collectives(p: int = 4):
    """One picture of the six collectives, each computed by its definition in ``algorithms.py``.

    Rank r starts with p chunks r0 .. r(p-1) (letters A, B, ... for ranks); a
    label such as ``Σ1`` is chunk 1 summed over all ranks.
    """
    x = [torch.tensor([float(1 << r) + k / 100 for k in range(p)], dtype=torch.float64) for r in range(p)]
    collectives = {
        "broadcast (root A)": sim.broadcast(x, 0),
        "reduce (root A)": sim.reduce(x, 0),
        "all-reduce": sim.all_reduce(x),
        "reduce-scatter": sim.reduce_scatter(x),
        "all-gather of chunk r": sim.all_gather([x[r][r:r + 1] for r in range(p)]),
        "all-to-all": sim.all_to_all(x),
    }
    fig, axes = plt.subplots(len(collectives), 2, figsize=(7.5, 1.25 * len(collectives)))
    for row, (name, after) in enumerate(collectives.items()):
        before = [t[r:r + 1] for r, t in enumerate(x)] if name.startswith("all-gather") else x
        for col, state in enumerate((before, after)):
            ax = axes[row, col]
            for r, buffer in enumerate(state):
                for k, label in enumerate(_labels(buffer, p)):
                    chunk = int(label[-1])
                    ax.add_patch(Rectangle((r * (p + 1) + k, 0), 0.95, 0.9, color=COLORS[chunk % len(COLORS)], alpha=0.35))
                    ax.text(r * (p + 1) + k + 0.47, 0.45, label, ha="center", va="center", fontsize=6.5)
                ax.text(r * (p + 1) + p / 2 - 0.5, -0.35, f"rank {RANK_LETTERS[r]}", ha="center", va="center", fontsize=7)
            ax.set(xlim=(-0.2, p * (p + 1)), ylim=(-0.7, 1.0))
            ax.axis("off")
            if row == 0:
                ax.set_title("before" if col == 0 else "after", fontsize=9)
        axes[row, 0].text(-0.6, 0.45, name, ha="right", va="center", fontsize=8.5)
    fig.tight_layout()
    return fig
