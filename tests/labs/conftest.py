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
