"""Where a page's results came from: commit, versions, device, seed and run time."""

from __future__ import annotations

import html
import platform
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from . import __version__
from ._backend import backend_info, triton_status
from ._seed import last_seed

_IMPORTED_AT = time.perf_counter()
REPO_ROOT = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str:
    """Output of a git command in the book checkout; "" when git or the checkout is missing."""
    try:
        return subprocess.run(
            ["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def head_commit() -> str:
    """The full hash of the checked-out commit ("" outside a git checkout)."""
    return _git("rev-parse", "HEAD")


def book_commit() -> str:
    """The short commit of the book checkout that ``labs`` is imported from (``+dirty`` if modified)."""
    commit = _git("rev-parse", "--short=12", "HEAD")
    if commit and _git("status", "--porcelain", "--untracked-files=no"):
        commit += "+dirty"
    return commit or "unknown (not a git checkout)"


@dataclass(frozen=True)
class Provenance:
    commit: str
    labs: str
    python: str
    torch: str
    triton: str
    backend: str
    seed: int | None
    wall_time_s: float

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(k)}</th>"
            f"<td><code>{html.escape(str(v))}</code></td></tr>"
            for k, v in self._display_items()
        )
        return f"<details class='labs-provenance'><summary>How this page was computed</summary><table>{rows}</table></details>"

    def __str__(self) -> str:
        return "\n".join(f"{k}: {v}" for k, v in self._display_items())

    def _display_items(self):
        items = asdict(self)
        items["wall_time_s"] = f"{self.wall_time_s:.1f} s since labs was imported"
        return items.items()


def provenance() -> Provenance:
    """Collect the facts a reader needs to reproduce the page that calls this."""
    ok, triton_why = triton_status()
    return Provenance(
        commit=book_commit(),
        labs=__version__,
        python=platform.python_version(),
        torch=torch.__version__,
        triton=triton_why if ok else "not available",
        backend=backend_info(),
        seed=last_seed(),
        wall_time_s=time.perf_counter() - _IMPORTED_AT,
    )
