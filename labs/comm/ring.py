"""Ring collectives over ``torch.distributed`` point-to-point messages.

Rank i sends to rank i + 1 and receives from rank i - 1 (mod p) at every
step, so each link carries one chunk of n / p elements per step in each
direction: the schedule that ``labs.comm.simulate("ring", ...)`` draws.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from .algorithms import chunk_bounds


def _ring_peers(group):
    rank, p = dist.get_rank(group), dist.get_world_size(group)
    to_global = (lambda r: r) if group is None else (lambda r: dist.get_global_rank(group, r))
    return rank, p, to_global((rank + 1) % p), to_global((rank - 1) % p)


def _exchange(send: torch.Tensor, recv: torch.Tensor, dst: int, src: int, group) -> None:
    """Send ``send`` to ``dst`` while receiving ``recv`` from ``src``.

    The send is posted first and never waited on before the receive, so the
    ring cannot deadlock. NCCL wants the pair grouped (``batch_isend_irecv``);
    with gloo a plain ``isend`` + ``recv`` has less overhead.
    """
    if send.is_cuda:
        ops = [dist.P2POp(dist.isend, send, dst, group), dist.P2POp(dist.irecv, recv, src, group)]
        for request in dist.batch_isend_irecv(ops):
            request.wait()
        return
    request = dist.isend(send, dst, group)
    dist.recv(recv, src, group)
    request.wait()


def ring_reduce_scatter_(flat: torch.Tensor, group=None) -> torch.Tensor:
    """In place on a contiguous 1-D tensor: afterwards chunk ``rank`` holds the sum over ranks.

    Returns that chunk (a view). The other chunks hold partial sums.
    """
    rank, p, nxt, prev = _ring_peers(group)
    chunks = [flat[a:b] for a, b in chunk_bounds(flat.numel(), p)]
    incoming = torch.empty_like(chunks[0])
    for s in range(p - 1):
        send, recv = chunks[(rank - s - 1) % p], chunks[(rank - s - 2) % p]
        buffer = incoming[: recv.numel()]
        _exchange(send, buffer, nxt, prev, group)
        recv += buffer
    return chunks[rank]


def ring_all_gather_(flat: torch.Tensor, group=None) -> torch.Tensor:
    """In place on a contiguous 1-D tensor whose chunk ``rank`` is this rank's part: fill in the rest."""
    rank, p, nxt, prev = _ring_peers(group)
    chunks = [flat[a:b] for a, b in chunk_bounds(flat.numel(), p)]
    for s in range(p - 1):
        send, recv = chunks[(rank - s) % p], chunks[(rank - s - 1) % p]
        _exchange(send, recv, nxt, prev, group)
    return flat
