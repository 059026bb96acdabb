"""Shared set-up of the Colab checks: the notebook generator's modules, and the Colab-like environment."""

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(ROOT / "book" / "_ext"), str(HERE)]

from colab_kernel import colab_python  # noqa: E402


@pytest.fixture(scope="session")
def colab_env():
    """The Colab-like environment's interpreter. `make colab-check` sets COLAB_CHECK=1: there, a missing one fails."""
    python = colab_python()
    if not python.exists():
        message = f"no Colab-like environment at {python}: run `make colab-env`"
        if os.environ.get("COLAB_CHECK") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return python
