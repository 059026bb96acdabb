"""Unit tests run every Triton kernel on the CPU through Triton's interpreter.

``@triton.jit`` reads TRITON_INTERPRET when a kernel is defined, so it is set
here, before any test module imports ``labs``.
"""

import os

os.environ["TRITON_INTERPRET"] = "1"
os.environ.pop("LABS_DEVICE", None)
os.environ.pop("LABS_BOOK_BUILD", None)

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same random state, so a failure reproduces."""
    import labs

    labs.seed(0)


@pytest.fixture
def torch_kernels(monkeypatch):
    """Run a test on the torch reference path instead of the interpreter.

    For tests that train a model: hundreds of steps through the Triton interpreter take
    minutes, and every kernel is held to its reference in tests of its own.
    """
    monkeypatch.setenv("TRITON_INTERPRET", "0")
