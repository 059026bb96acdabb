"""Allreduce algorithms simulated step by step, in one process, with real data.

Each rank holds a flat float64 copy of its buffer. A step is a set of messages
that travel at the same time: every payload is read from the state at the
start of the step, then delivered (added for a reduction, copied otherwise).
The schedule that comes back is exactly what moved, so it can be drawn and
costed.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class Message(NamedTuple):
    """One transfer: ``n_elements`` values from rank ``src`` to rank ``dst``."""

    src: int
    dst: int
    n_elements: int


class Step(list):
    """The messages of one step; ``kind`` is ``"reduce"`` (receiver adds) or ``"copy"``."""

    def __init__(self, messages=(), kind: str = "copy"):
        super().__init__(messages)
        self.kind = kind


def chunk_bounds(n: int, parts: int) -> list[tuple[int, int]]:
    """Split ``range(n)`` into ``parts`` contiguous chunks whose sizes differ by at most one."""
    base, extra = divmod(n, parts)
    bounds, start = [], 0
    for i in range(parts):
        stop = start + base + (1 if i < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


class _Network:
    """The ranks' buffers and the schedule recorded while moving data between them."""

    def __init__(self, buffers: list[torch.Tensor], *, record: bool = False):
        self.data = [b.detach().reshape(-1).to(torch.float64).clone() for b in buffers]
        self.schedule: list[Step] = []
        # With ``record``, every rank's buffer before the first step and after each step: (p, n) each.
        self.states = [torch.stack(self.data)] if record else None

    def step(self, transfers, kind: str) -> None:
        """``transfers``: (src, dst, start, stop) slices, all sent at once."""
        payloads = [self.data[src][start:stop].clone() for src, _, start, stop in transfers]
        for (src, dst, start, stop), payload in zip(transfers, payloads):
            if kind == "reduce":
                self.data[dst][start:stop] += payload
            else:
                self.data[dst][start:stop] = payload
        self.schedule.append(Step([Message(s, d, stop - start) for s, d, start, stop in transfers], kind))
        if self.states is not None:
            self.states.append(torch.stack(self.data))


def _ring_steps(net: _Network, rings, part: str) -> None:
    """One half of the ring algorithm on several disjoint rings at once.

    ``rings``: ``(ranks, start, stop)`` triples, all with the same number of
    ranks; ring ``ranks`` works on ``data[start:stop]``, cut into
    ``len(ranks)`` chunks. ``part`` is ``"reduce_scatter"`` (afterwards
    ``ranks[i]`` holds the sum of chunk i) or ``"all_gather"`` (``ranks[i]``
    passes chunk i on to every other rank of its ring).
    """
    for s in range(len(rings[0][0]) - 1):
        transfers = []
        for ranks, start, stop in rings:
            q = len(ranks)
            chunks = [(start + a, start + b) for a, b in chunk_bounds(stop - start, q)]
            for i in range(q):  # reduce-scatter receives chunk (i - s - 2) and adds it; all-gather passes it on
                c = (i - s - 1) % q if part == "reduce_scatter" else (i - s) % q
                transfers.append((ranks[i], ranks[(i + 1) % q], *chunks[c]))
        net.step(transfers, "reduce" if part == "reduce_scatter" else "copy")


def _ring(net: _Network, ranks: list[int]) -> None:
    """Reduce-scatter then all-gather around the ring ``ranks``; rank i ends owning chunk i."""
    n = net.data[0].numel()
    _ring_steps(net, [(ranks, 0, n)], "reduce_scatter")
    _ring_steps(net, [(ranks, 0, n)], "all_gather")


def _hierarchical(net: _Network, nodes: int) -> None:
    """The 2D allreduce on ``nodes`` nodes of g = p / nodes ranks each (rank = node * g + local index).

    1. every node reduce-scatters its vector over its g ranks (a ring inside the node);
    2. the g ranks with the same local index, one per node, allreduce their chunk (a ring across nodes);
    3. every node all-gathers the chunks (a ring inside the node).
    """
    p, n = len(net.data), net.data[0].numel()
    g = p // nodes
    inside = [(list(range(k * g, (k + 1) * g)), 0, n) for k in range(nodes)]
    across = [([k * g + i for k in range(nodes)], start, stop) for i, (start, stop) in enumerate(chunk_bounds(n, g))]
    _ring_steps(net, inside, "reduce_scatter")
    _ring_steps(net, across, "reduce_scatter")
    _ring_steps(net, across, "all_gather")
    _ring_steps(net, inside, "all_gather")


def _recursive_doubling(net: _Network, ranks: list[int]) -> None:
    """lg p rounds; in round k each rank swaps its whole vector with the rank 2^k away."""
    p, n = len(ranks), net.data[0].numel()
    distance = 1
    while distance < p:
        net.step([(ranks[i], ranks[i ^ distance], 0, n) for i in range(p)], "reduce")
        distance *= 2


def _rabenseifner(net: _Network, ranks: list[int]) -> None:
    """Reduce-scatter by recursive halving, then all-gather by recursive doubling."""
    p, n = len(ranks), net.data[0].numel()
    owned = [(0, n)] * p
    history = []
    distance = p // 2
    while distance >= 1:  # halving: keep one half, send the other half to the partner
        transfers, new_owned = [], []
        for i in range(p):
            start, stop = owned[i]
            middle = (start + stop) // 2
            keep_low = i & distance == 0
            keep, give = ((start, middle), (middle, stop)) if keep_low else ((middle, stop), (start, middle))
            transfers.append((ranks[i], ranks[i ^ distance], *give))
            new_owned.append(keep)
        net.step(transfers, "reduce")
        history.append(distance)
        owned = new_owned
        distance //= 2
    for distance in reversed(history):  # doubling: swap finished pieces, each owned range doubles
        net.step([(ranks[i], ranks[i ^ distance], *owned[i]) for i in range(p)], "copy")
        owned = [(min(owned[i][0], owned[i ^ distance][0]), max(owned[i][1], owned[i ^ distance][1])) for i in range(p)]


def _with_fold_in(power_of_two_algorithm):
    """Run a power-of-two algorithm on any p (the standard fold-in of Thakur et al., 2005).

    With p' the largest power of two <= p and r = p - p': among the first 2r
    ranks, each even rank first adds its vector into its odd neighbour and sits
    out; the p' remaining ranks run the algorithm; finally each odd neighbour
    copies the result back. Two extra steps, and only when p is not a power of two.
    """

    def run(net: _Network) -> None:
        p, n = len(net.data), net.data[0].numel()
        extra = p - (1 << (p.bit_length() - 1))
        if extra:
            net.step([(2 * i, 2 * i + 1, 0, n) for i in range(extra)], "reduce")
        active = [2 * i + 1 for i in range(extra)] + list(range(2 * extra, p))
        power_of_two_algorithm(net, active)
        if extra:
            net.step([(2 * i + 1, 2 * i, 0, n) for i in range(extra)], "copy")

    return run


def _binomial_tree(net: _Network) -> None:
    """Binomial-tree reduce to rank 0, then binomial-tree broadcast back: 2 ceil(lg p) steps."""
    p, n = len(net.data), net.data[0].numel()
    masks = []
    mask = 1
    while mask < p:
        net.step([(r, r - mask, 0, n) for r in range(mask, p, 2 * mask)], "reduce")
        masks.append(mask)
        mask *= 2
    for mask in reversed(masks):
        net.step([(r, r + mask, 0, n) for r in range(0, p - mask, 2 * mask)], "copy")


def _reduce_broadcast(net: _Network) -> None:
    """The naive algorithm: rank 0 receives every vector in turn, then sends the sum to each rank."""
    p, n = len(net.data), net.data[0].numel()
    for r in range(1, p):
        net.step([(r, 0, 0, n)], "reduce")
    for r in range(1, p):
        net.step([(0, r, 0, n)], "copy")


ALGORITHMS = {
    "ring": lambda net: _ring(net, list(range(len(net.data)))),
    "recursive_doubling": _with_fold_in(_recursive_doubling),
    "rabenseifner": _with_fold_in(_rabenseifner),
    "binomial_tree": _binomial_tree,
    "reduce_broadcast": _reduce_broadcast,
}


def _run(algorithm: str, buffers: list[torch.Tensor], nodes: int = 1, record: bool = False) -> _Network:
    """Run ``algorithm`` on ``buffers`` (no input checks) and return the network it ran on."""
    net = _Network(buffers, record=record)
    if algorithm == "hierarchical":
        _hierarchical(net, nodes)
    else:
        ALGORITHMS[algorithm](net)
    return net


def _simulate_unchecked(algorithm: str, buffers: list[torch.Tensor],
                        nodes: int = 1) -> tuple[list[torch.Tensor], list[Step]]:
    """Run ``algorithm`` on ``buffers`` (no input checks: see ``labs.comm.simulate``)."""
    net = _run(algorithm, buffers, nodes)
    shape, dtype = buffers[0].shape, buffers[0].dtype
    return [d.reshape(shape).to(dtype) for d in net.data], net.schedule


def double_binary_tree(p: int) -> tuple[list[int], list[int]]:
    """NCCL's two complementary binary trees over ranks 0..p-1, as parent lists (the root's parent is -1).

    Tree A numbers rank r as r + 1 and gives label i the height of its lowest
    set bit: odd labels are leaves, and the parent of i is i - L or i + L
    (L = i's lowest set bit), climbing further while that lies beyond p.
    Tree B is tree A shifted by one rank. For even p every rank is a leaf of
    one tree and an inner node of the other, so no rank forwards data in both.
    """
    def tree(shift: int) -> list[int]:
        label = [(r + shift) % p + 1 for r in range(p)]
        rank_of = {lab: r for r, lab in enumerate(label)}
        parents = []
        for r in range(p):
            i = label[r]
            while True:
                low = i & -i
                i = i - low if i & (2 * low) else i + low
                if i <= p or low > p:
                    break
            parents.append(rank_of[i] if i <= p else -1)
        return parents

    return tree(0), tree(1)


# The other collectives, defined by what each rank holds at the end (rank r's input is x[r]).


def broadcast(x: list[torch.Tensor], root: int = 0) -> list[torch.Tensor]:
    """Every rank ends with the root's vector."""
    return [x[root].clone() for _ in x]


def reduce(x: list[torch.Tensor], root: int = 0) -> list[torch.Tensor]:
    """The root ends with the sum; the other ranks keep their input."""
    total = torch.stack(x).sum(0)
    return [total if r == root else x[r].clone() for r in range(len(x))]


def all_reduce(x: list[torch.Tensor]) -> list[torch.Tensor]:
    """Every rank ends with the sum."""
    total = torch.stack(x).sum(0)
    return [total.clone() for _ in x]


def reduce_scatter(x: list[torch.Tensor]) -> list[torch.Tensor]:
    """Rank r ends with chunk r of the sum."""
    total = torch.stack(x).sum(0).reshape(-1)
    return [total[a:b].clone() for a, b in chunk_bounds(total.numel(), len(x))]


def all_gather(x: list[torch.Tensor]) -> list[torch.Tensor]:
    """Every rank ends with all inputs laid end to end."""
    joined = torch.cat([t.reshape(-1) for t in x])
    return [joined.clone() for _ in x]


def all_to_all(x: list[torch.Tensor]) -> list[torch.Tensor]:
    """Rank r ends with chunk r of every rank's input, in rank order (a transpose)."""
    p = len(x)
    pieces = [[t.reshape(-1)[a:b] for a, b in chunk_bounds(t.numel(), p)] for t in x]
    return [torch.cat([pieces[src][dst] for src in range(p)]) for dst in range(p)]
