"""Chapter "Allreduce": collective algorithms simulated, costed, and run over ``torch.distributed``.

The public API checks its input and names the function and argument in every
error; the modules behind it hold the plain versions:

* ``algorithms.py`` the algorithms step by step on in-memory buffers, and the
  other collectives defined by their result;
* ``cost.py``      the alpha-beta-gamma cost of each algorithm (SymPy or numbers),
  and of the 2D (hierarchical) allreduce on two kinds of link;
* ``overlap.py``   gradient buckets overlapped with backward: the exposed communication;
* ``ring.py``      the ring over point-to-point ``torch.distributed`` messages;
* ``launch.py``    ``spawn``: p local processes on the loopback address;
* ``experiment.py`` what the chapter runs on every rank (importable, as ``spawn`` needs).
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from .._checks import FLOAT_DTYPES, choice, positive, real_number, whole_number
from .cost import (
    _allreduce_cost_unchecked, _hierarchical_cost_unchecked, algbw, busbw, cost_terms, hierarchical_terms,
    schedule_cost, schedule_cost_two_level,
)
from .overlap import _exposed_unchecked, bucket_sizes, exposed_closed_form
from .launch import RankFailed, _spawn_unchecked, loopback_env, why_not_importable
from .ring import ring_all_gather_, ring_reduce_scatter_
from .algorithms import (
    ALGORITHMS,
    Message,
    Step,
    all_gather,
    all_reduce,
    all_to_all,
    broadcast,
    chunk_bounds,
    double_binary_tree as _double_binary_tree_unchecked,
    reduce,
    reduce_scatter,
    _run,
    _simulate_unchecked,
)

__all__ = [
    "ALGORITHMS", "Message", "REDUCIBLE_DTYPES", "RankFailed", "Step", "algbw", "all_gather", "all_reduce",
    "all_to_all", "loopback_env",
    "allreduce_cost", "broadcast", "bucket_sizes", "busbw", "chunk_bounds", "cost_terms", "double_binary_tree",
    "exposed_closed_form", "exposed_communication", "hierarchical_cost", "hierarchical_terms", "reduce",
    "reduce_scatter", "ring_all_gather", "ring_allreduce", "ring_reduce_scatter", "schedule_cost",
    "schedule_cost_two_level", "simulate", "simulate_hierarchical", "simulate_steps", "spawn",
]

REDUCIBLE_DTYPES = FLOAT_DTYPES + (torch.int32, torch.int64)
"""The dtypes the simulator and the ring add up: every float dtype of the book, and 32/64-bit ints."""


def _check_dtype(fn: str, name: str, dtype: torch.dtype) -> None:
    if dtype not in REDUCIBLE_DTYPES:
        wanted = ", ".join(str(d).removeprefix("torch.") for d in REDUCIBLE_DTYPES)
        raise TypeError(f"{fn}: {name} must have a dtype in ({wanted}), got {dtype}")


def simulate(algorithm: str, buffers: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[Step]]:
    """Run an allreduce (sum) on ``buffers``, one per rank, step by step in this process.

    Returns ``(results, schedule)``: what each rank holds at the end, and the
    list of steps, each a list of ``Message(src, dst, n_elements)`` sent at the
    same time. Every algorithm accepts any p >= 1: recursive doubling and
    Rabenseifner fold a non-power-of-two p into a power of two first.
    """
    _check_simulation("simulate", algorithm, buffers)
    return _simulate_unchecked(algorithm, list(buffers))


def simulate_steps(algorithm: str, buffers: list[torch.Tensor]) -> tuple[torch.Tensor, list[Step]]:
    """``simulate``, keeping what every rank holds after each step: for pictures of an algorithm at work.

    Returns ``(states, schedule)``: ``states`` of shape (steps + 1, p, n) in float64 (row 0 is the
    input, row s what each rank holds after step s, every buffer flattened), and the schedule.
    """
    _check_simulation("simulate_steps", algorithm, buffers)
    net = _run(algorithm, list(buffers), record=True)
    return torch.stack(net.states), net.schedule


def _check_simulation(fn: str, algorithm: str, buffers) -> None:
    choice(fn, "algorithm", algorithm, ALGORITHMS)
    if not isinstance(buffers, (list, tuple)) or not buffers:
        raise ValueError(f"{fn}: buffers must be a non-empty list of tensors (one per rank), got {buffers!r}")
    for r, b in enumerate(buffers):
        if not isinstance(b, torch.Tensor):
            raise TypeError(f"{fn}: buffers[{r}] must be a torch.Tensor, got {type(b).__name__}")
        if b.shape != buffers[0].shape or b.dtype != buffers[0].dtype:
            raise ValueError(
                f"{fn}: every rank's buffer must match rank 0's shape {tuple(buffers[0].shape)} and dtype "
                f"{buffers[0].dtype}; buffers[{r}] has shape {tuple(b.shape)} and dtype {b.dtype}"
            )
    _check_dtype(fn, "buffers", buffers[0].dtype)


def allreduce_cost(algorithm: str, p: int, n_bytes: float, *, alpha: float, beta: float, gamma: float = 0.0) -> float:
    """Predicted seconds of an allreduce of ``n_bytes`` on ``p`` ranks in the alpha-beta-gamma model.

    ``alpha``: seconds per message; ``beta``: seconds per byte sent;
    ``gamma``: seconds per byte reduced.
    """
    choice("allreduce_cost", "algorithm", algorithm, ALGORITHMS)
    p = whole_number("allreduce_cost", "p", p)
    n_bytes, alpha, beta, gamma = (real_number("allreduce_cost", name, value, low=0.0) for name, value in
                                   [("n_bytes", n_bytes), ("alpha", alpha), ("beta", beta), ("gamma", gamma)])
    return _allreduce_cost_unchecked(algorithm, p, n_bytes, alpha, beta, gamma)


def simulate_hierarchical(buffers: list[torch.Tensor], nodes: int) -> tuple[list[torch.Tensor], list[Step]]:
    """The 2D allreduce on ``nodes`` nodes of ``len(buffers) / nodes`` ranks each, simulated like ``simulate``.

    Rank r sits on node ``r // g``. Inside each node a ring reduce-scatter, then
    a ring allreduce across nodes of each chunk, then a ring all-gather inside
    each node.
    """
    _check_simulation("simulate_hierarchical", "ring", buffers)
    nodes = whole_number("simulate_hierarchical", "nodes", nodes)
    if len(buffers) % nodes:
        raise ValueError(f"simulate_hierarchical: the {len(buffers)} ranks must split evenly over nodes, "
                         f"got nodes={nodes}")
    return _simulate_unchecked("hierarchical", list(buffers), nodes)


def hierarchical_cost(g: int, nodes: int, n_bytes: float, *, alpha_intra: float, beta_intra: float,
                      alpha_inter: float, beta_inter: float) -> float:
    """Predicted seconds of the 2D allreduce of ``n_bytes`` on ``nodes`` nodes of ``g`` ranks (``hierarchical_terms``)."""
    g = whole_number("hierarchical_cost", "g", g)
    nodes = whole_number("hierarchical_cost", "nodes", nodes)
    values = [real_number("hierarchical_cost", name, value, low=0.0) for name, value in
              [("n_bytes", n_bytes), ("alpha_intra", alpha_intra), ("beta_intra", beta_intra),
               ("alpha_inter", alpha_inter), ("beta_inter", beta_inter)]]
    return _hierarchical_cost_unchecked(g, nodes, *values)


def exposed_communication(grad_bytes: float, bucket_bytes: float, backward_s: float, *, p: int, alpha: float,
                          beta: float) -> float:
    """Seconds of gradient allreduce left after backward ends, with buckets of ``bucket_bytes`` (``overlap.py``).

    Buckets fill in the order backward produces gradients, at a steady rate
    over ``backward_s``; each is ring-allreduced on p ranks as soon as it is
    full and the previous one is done.
    """
    grad_bytes = positive("exposed_communication", "grad_bytes", grad_bytes)
    bucket_bytes = positive("exposed_communication", "bucket_bytes", bucket_bytes)
    backward_s = real_number("exposed_communication", "backward_s", backward_s, low=0.0)
    p = whole_number("exposed_communication", "p", p)
    alpha = real_number("exposed_communication", "alpha", alpha, low=0.0)
    beta = real_number("exposed_communication", "beta", beta, low=0.0)
    return _exposed_unchecked(grad_bytes, min(bucket_bytes, grad_bytes), backward_s, p, alpha, beta)


def double_binary_tree(p: int) -> tuple[list[int], list[int]]:
    """NCCL's two complementary binary trees over p ranks, as parent lists (-1 for the root); see ``algorithms.py``."""
    return _double_binary_tree_unchecked(whole_number("double_binary_tree", "p", p))


def _check_distributed_tensor(name: str, tensor, group, *, agree: bool) -> torch.Tensor:
    """Validate ``tensor`` and, with ``agree``, that every rank passed the same shape and dtype."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name}: tensor must be a torch.Tensor, got {type(tensor).__name__}")
    _check_dtype(name, "tensor", tensor.dtype)
    if not tensor.is_contiguous():
        raise ValueError(
            f"{name}: tensor must be contiguous (it is updated in place through a flat view), got a "
            f"non-contiguous tensor of shape {tuple(tensor.shape)} and strides {tensor.stride()}; "
            "call .contiguous() and copy the result back"
        )
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError(f"{name}: torch.distributed is not initialised (use labs.comm.spawn or torchrun)")
    if agree:
        fingerprint = torch.tensor(
            [tensor.ndim, REDUCIBLE_DTYPES.index(tensor.dtype), tensor.numel(), hash(tuple(tensor.shape)) % (1 << 61)],
            dtype=torch.int64, device=tensor.device,
        )
        both = torch.cat([fingerprint, -fingerprint])
        dist.all_reduce(both, op=dist.ReduceOp.MAX, group=group)
        if not (torch.equal(both[:4], fingerprint) and torch.equal(-both[4:], fingerprint)):
            raise ValueError(
                f"{name}: every rank must pass a tensor of the same shape and dtype; rank "
                f"{dist.get_rank(group)} passed shape {tuple(tensor.shape)} and dtype {tensor.dtype}, "
                "and another rank passed something else"
            )
    return tensor.view(-1)


def ring_reduce_scatter(tensor: torch.Tensor, group=None, *, check: bool = True) -> torch.Tensor:
    """Ring reduce-scatter (sum), in place: returns this rank's chunk of the sum (a view into ``tensor``).

    The chunks are ``chunk_bounds(tensor.numel(), p)`` of the flattened tensor;
    the other chunks are left holding partial sums. ``check=False`` skips the
    agreement check across ranks (one tiny allreduce) when timing.
    """
    flat = _check_distributed_tensor("ring_reduce_scatter", tensor, group, agree=check)
    return ring_reduce_scatter_(flat, group)


def ring_all_gather(tensor: torch.Tensor, group=None, *, check: bool = True) -> torch.Tensor:
    """Ring all-gather, in place: chunk ``rank`` of the flattened ``tensor`` is sent to every rank."""
    flat = _check_distributed_tensor("ring_all_gather", tensor, group, agree=check)
    ring_all_gather_(flat, group)
    return tensor


def ring_allreduce(tensor: torch.Tensor, group=None, *, check: bool = True) -> torch.Tensor:
    """Ring allreduce (sum), in place: reduce-scatter, then all-gather. Returns ``tensor``."""
    flat = _check_distributed_tensor("ring_allreduce", tensor, group, agree=check)
    ring_reduce_scatter_(flat, group)
    ring_all_gather_(flat, group)
    return tensor


def spawn(fn, world_size: int, *args, backend: str = "gloo", timeout: float = 120.0, threads: int = 1) -> list:
    """Run ``fn(*args)`` on ``world_size`` new local processes forming a process group; return each rank's result.

    Processes bind to 127.0.0.1 on a free port. The new processes import
    ``fn`` by name, as with ``torch.multiprocessing.spawn``: define it in a
    module, or at the top level of the script you run (with the call to
    ``spawn`` under ``if __name__ == "__main__":``); a function typed into a
    notebook or an interactive session is refused. Its result must be
    picklable. If a rank raises, the call raises ``RankFailed`` with that
    rank's traceback and stops the others; a rank that dies without a word
    (killed, ``os._exit``) is named with its exit code. ``timeout`` (seconds)
    bounds the whole run and every collective inside it. Each rank runs ``fn``
    with ``threads`` torch CPU threads (default 1: the ranks share this
    machine's cores).
    """
    if not callable(fn):
        raise TypeError(f"spawn: fn must be callable, got {type(fn).__name__}")
    reason = why_not_importable(fn)
    if reason:
        raise ValueError(f"spawn: fn must be importable by the new processes; {reason}")
    world_size = whole_number("spawn", "world_size", world_size)
    choice("spawn", "backend", backend, ("gloo", "nccl"))
    timeout = positive("spawn", "timeout", timeout)
    threads = whole_number("spawn", "threads", threads)
    return _spawn_unchecked(fn, world_size, args, backend, timeout, threads)
