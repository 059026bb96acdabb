"""The alpha-beta-gamma cost model of allreduce (Hockney's model with a reduction term).

Sending a message of m bytes costs ``alpha + m * beta``; adding m received
bytes into a buffer costs ``m * gamma``. A step of an algorithm lasts as long
as its largest message. ``cost_terms`` gives each algorithm's count of the
three, symbolically (SymPy symbols, p a power of two) or for numbers (any p),
following Thakur, Rabenseifner and Gropp (2005).
"""

from __future__ import annotations



def _is_symbolic(*values) -> bool:
    # Checked by module name so that ranks, which only need numbers, never import SymPy.
    return any(type(v).__module__.startswith("sympy") for v in values)


def _log2_floor_ceil(p):
    """(floor(lg p), ceil(lg p)); both lg p when p is symbolic (read: a power of two)."""
    if _is_symbolic(p):
        import sympy

        lg = sympy.log(p, 2)
        return lg, lg
    floor = p.bit_length() - 1
    return floor, floor + (p != 1 << floor)


def cost_terms(algorithm: str, p, n):
    """Coefficients ``(a, b, c)`` of ``time = a*alpha + b*beta + c*gamma`` for an allreduce of n bytes.

    a counts message start-ups on the critical path, b the bytes sent along it,
    c the bytes reduced along it. Recursive doubling and Rabenseifner fold a
    non-power-of-two p into the largest power of two below it, which costs one
    full-vector step before and one after.
    """
    if algorithm == "ring":
        return 2 * (p - 1), 2 * (p - 1) * n / p, (p - 1) * n / p
    if algorithm == "reduce_broadcast":
        return 2 * (p - 1), 2 * (p - 1) * n, (p - 1) * n
    floor, ceil = _log2_floor_ceil(p)
    if algorithm == "binomial_tree":
        return 2 * ceil, 2 * ceil * n, ceil * n
    fold = 0 if _is_symbolic(p) else int(floor != ceil)
    if algorithm == "recursive_doubling":
        return floor + 2 * fold, (floor + 2 * fold) * n, (floor + fold) * n
    if algorithm == "rabenseifner":
        q = p if _is_symbolic(p) else 1 << floor
        return 2 * floor + 2 * fold, 2 * (q - 1) * n / q + 2 * fold * n, (q - 1) * n / q + fold * n
    raise ValueError(f"cost_terms: unknown algorithm {algorithm!r}")


def _allreduce_cost_unchecked(algorithm: str, p: int, n_bytes: float, alpha: float, beta: float, gamma: float) -> float:
    """Predicted seconds for ``algorithm`` on p ranks (no input checks: see ``labs.comm.allreduce_cost``)."""
    a, b, c = cost_terms(algorithm, p, n_bytes)
    return float(a * alpha + b * beta + c * gamma)


def schedule_cost(schedule, *, bytes_per_element: int, alpha: float, beta: float, gamma: float = 0.0) -> float:
    """Seconds a simulated schedule takes when each step lasts as long as its largest message."""
    total = 0.0
    for step in schedule:
        largest = max(m.n_elements for m in step) * bytes_per_element
        total += alpha + largest * (beta + (gamma if step.kind == "reduce" else 0.0))
    return total


def algbw(n_bytes: float, seconds: float) -> float:
    """Algorithm bandwidth, bytes per second: message size over time."""
    return n_bytes / seconds


def busbw(n_bytes: float, seconds: float, p: int) -> float:
    """Bus bandwidth of an allreduce: ``algbw * 2 (p - 1) / p`` (the nccl-tests convention)."""
    return algbw(n_bytes, seconds) * 2 * (p - 1) / p



def hierarchical_terms(g, nodes, n):
    """Start-ups and bytes of the 2D allreduce on ``nodes`` nodes of ``g`` ranks, split by link.

    Returns ``(a_intra, b_intra, a_inter, b_inter)`` with ``time = a_intra alpha_intra
    + b_intra beta_intra + a_inter alpha_inter + b_inter beta_inter``: a ring
    reduce-scatter and all-gather inside the node on n bytes, and a ring
    allreduce across the nodes on a chunk of n / g bytes (every local index at
    once, each on its own network link).
    """
    return 2 * (g - 1), 2 * (g - 1) * n / g, 2 * (nodes - 1), 2 * (nodes - 1) * n / (g * nodes)


def _hierarchical_cost_unchecked(g: int, nodes: int, n_bytes: float, alpha_intra: float, beta_intra: float,
                                 alpha_inter: float, beta_inter: float) -> float:
    a_i, b_i, a_o, b_o = hierarchical_terms(g, nodes, n_bytes)
    return float(a_i * alpha_intra + b_i * beta_intra + a_o * alpha_inter + b_o * beta_inter)


def schedule_cost_two_level(schedule, node_of, *, bytes_per_element: float, alpha_intra: float, beta_intra: float,
                            alpha_inter: float, beta_inter: float) -> float:
    """Seconds a schedule takes when a message between nodes costs ``alpha_inter + m beta_inter`` and one
    inside a node ``alpha_intra + m beta_intra``; a step lasts as long as its slowest message."""
    total = 0.0
    for step in schedule:
        total += max((alpha_inter + m.n_elements * bytes_per_element * beta_inter) if node_of[m.src] != node_of[m.dst]
                     else (alpha_intra + m.n_elements * bytes_per_element * beta_intra) for m in step)
    return total
