"""Gradient buckets overlapped with the backward pass: when does communication hide behind compute?

Backward produces the gradients last layer first, at a steady rate: a model
with ``grad_bytes`` of gradients and a backward pass of ``backward_s`` seconds
has produced ``x`` bytes of them after ``x / grad_bytes * backward_s``
seconds. DDP cuts them, in that order, into buckets of ``bucket_bytes``; a
bucket's allreduce starts when its last gradient exists and the previous
bucket's allreduce is done (one communication stream). What is left after
backward ends is the *exposed* communication: the time the step waits.
"""

from __future__ import annotations


def bucket_sizes(grad_bytes: float, bucket_bytes: float) -> list[float]:
    """Full buckets of ``bucket_bytes``, then what is left (the last bucket backward fills)."""
    full, rest = divmod(grad_bytes, bucket_bytes)
    sizes = [float(bucket_bytes)] * int(full)
    if rest > 1e-9 * bucket_bytes:
        sizes.append(float(rest))
    return sizes


def ring_allreduce_seconds(n_bytes: float, p: int, alpha: float, beta: float) -> float:
    """The ring's ``2(p-1) alpha + 2(p-1)/p n beta``."""
    return 2 * (p - 1) * alpha + 2 * (p - 1) / p * n_bytes * beta


def _exposed_unchecked(grad_bytes: float, bucket_bytes: float, backward_s: float, p: int, alpha: float,
                       beta: float) -> float:
    done, produced = 0.0, 0.0
    for size in bucket_sizes(grad_bytes, bucket_bytes):
        produced += size
        ready = produced / grad_bytes * backward_s
        done = max(done, ready) + ring_allreduce_seconds(size, p, alpha, beta)
    return done - backward_s


def exposed_closed_form(grad_bytes, bucket_bytes, backward_s, p, alpha, beta):
    """The exposed time for K = grad_bytes / bucket_bytes equal buckets (a whole number), in closed form.

    ``max(c, K c + T/K - T)`` with c one bucket's allreduce and T the backward
    time: either the network keeps up and only the last bucket shows, or it
    falls behind from the first bucket on. Works on SymPy symbols too.
    """
    k = grad_bytes / bucket_bytes
    c = ring_allreduce_seconds(bucket_bytes, p, alpha, beta)
    if any(type(v).__module__.startswith("sympy") for v in (grad_bytes, bucket_bytes, backward_s, p, alpha, beta)):
        import sympy

        return sympy.Max(c, k * c + backward_s / k - backward_s)
    return max(c, k * c + backward_s / k - backward_s)
