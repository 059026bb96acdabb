"""The CUDA suite: every Triton kernel compiled and run on a GPU, held against float64 references.

Run it in a pytest session of its own: ``pytest tests/cuda -m cuda`` (``make
gpu-check``). Without a CUDA device every test is skipped, with the reason.
It is also skipped inside a session that collected ``tests/labs``: that
conftest sets ``TRITON_INTERPRET=1``, which turns every kernel defined after it
into the CPU interpreter's.
"""

import os

import pytest


def _skip_reason():
    import torch

    if not torch.cuda.is_available():
        return "no CUDA device (these tests compile and run the Triton kernels on a GPU)"
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        return "TRITON_INTERPRET=1 in this session: run `pytest tests/cuda -m cuda` on its own"
    try:
        import triton  # noqa: F401
    except Exception as error:  # pragma: no cover - a broken install on a GPU machine
        return f"triton does not import: {error}"
    return None


def pytest_collection_modifyitems(config, items):
    reason = _skip_reason()
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.cuda)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(autouse=True)
def _seeded():
    import labs

    labs.seed(0)
