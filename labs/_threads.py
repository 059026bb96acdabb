"""The book's one way to choose the CPU thread count: scoped, and always restored."""

from __future__ import annotations

import contextlib

import torch

from ._checks import whole_number


@contextlib.contextmanager
def threads(n: int):
    """Run the block (or, as a decorator, the function) with ``n`` intra-op CPU threads, then restore.

    ``threads(1)`` suits code made of many tiny tensor operations (RL loops, small models,
    timings of small kernels): on tensors of a few hundred elements, waking a pool of
    threads costs more than the work, and on a busy machine a waiting thread can stall
    every operation by milliseconds.
    """
    n = whole_number("threads", "n", n)
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(previous)
