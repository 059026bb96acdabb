"""Every chapter, converted from MyST with jupytext, re-executed by nbval.

The converted notebooks live in a temporary folder and are never committed.
``--nbval-lax`` runs every cell and fails on any error; the chapters' own
asserts are the checks. Each chapter runs in its own pytest process so its
output is reported whole when it fails, with nbval's wait for cell output
raised (``nbval_patience.py``) so that a busy machine does not fail a chapter.

``LABS_CHECK_LOG_DIR=<dir>`` logs every check a chapter judges to
``<dir>/<chapter>.jsonl`` (``make seeds`` reads them).
"""

import os
import subprocess
import sys
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted(p for p in (ROOT / "book").glob("*.md") if "kernelspec" in jupytext.read(p).metadata)


def test_there_are_chapters():
    assert CHAPTERS, "no MyST notebooks found under book/"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_executes(chapter, tmp_path):
    notebook = tmp_path / f"{chapter.stem}.ipynb"
    jupytext.write(jupytext.read(chapter), notebook)
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "LABS_BOOK_BUILD")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), str(Path(__file__).parent), env.get("PYTHONPATH")]))
    if env.get("LABS_CHECK_LOG_DIR"):
        env["LABS_CHECK_LOG"] = str(Path(env["LABS_CHECK_LOG_DIR"]) / f"{chapter.stem}.jsonl")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-p", "no:cacheprovider",
         "-p", "no:xdist", "-p", "nbval_patience", "-q", str(notebook)],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )
    assert result.returncode == 0, f"{chapter.name} failed under nbval:\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
    assert " passed" in result.stdout
