"""One CPU thread for code made of many tiny tensor operations (RL loops, small models, timings)."""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def single_threaded():
    """Run the block (or, as a decorator, the function) with one intra-op CPU thread, then restore.

    On tensors of a few hundred elements, waking a pool of threads costs more than the work
    itself, and on a busy machine a waiting thread can stall every operation by milliseconds.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
