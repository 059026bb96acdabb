"""A pytest plugin for the nbval runs in ``test_notebooks.py``: wait longer for a cell's output.

nbval waits a hard-coded 5 s for a cell's output messages after the cell has
finished. On a busy 2-core machine the kernel can take longer than that to
flush them, and the chapter fails with "Timeout of 5 seconds exceeded waiting
for output" though nothing is wrong with it.
"""

OUTPUT_WAIT_S = 120


def pytest_collection_modifyitems(items):
    for item in items:
        if hasattr(item, "output_timeout"):
            item.output_timeout = OUTPUT_WAIT_S
