"""Start p local processes that form a ``torch.distributed`` group, and collect their results.

Every process binds to the loopback address only. The rendezvous is a
``TCPStore`` that the parent opens on a free port (port 0: the kernel picks
one, so two runs never collide). Ranks are started with the ``spawn`` method,
so this works from a Jupyter kernel as long as ``fn`` is importable (defined
in a module, not in the notebook).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import queue
import socket
import time
import traceback
from datetime import timedelta

import torch.distributed as dist

from .._threads import threads

LOOPBACK = "127.0.0.1"


class RankFailed(RuntimeError):
    """A rank raised (its traceback is in the message) or died."""


def _loopback_interface() -> str | None:
    names = [name for _, name in socket.if_nameindex()]
    return next((n for n in ("lo", "lo0") if n in names), None)


def _worker(rank, world_size, port, backend, timeout_s, n_threads, fn, args, results) -> None:
    reported = False
    try:
        interface = _loopback_interface()
        if interface:
            os.environ.setdefault("GLOO_SOCKET_IFNAME", interface)
        os.environ.setdefault("OMP_NUM_THREADS", str(n_threads))
        import torch

        if backend == "nccl":
            torch.cuda.set_device(rank % torch.cuda.device_count())
        store = dist.TCPStore(LOOPBACK, port, world_size + 1, False, timedelta(seconds=timeout_s))
        dist.init_process_group(backend, store=store, rank=rank, world_size=world_size,
                                timeout=timedelta(seconds=timeout_s))
        try:
            with threads(n_threads):
                value = fn(*args)
        except BaseException:
            # Report before leaving the group: leaving makes the other ranks fail too,
            # and the parent should hear about the cause first.
            results.put((rank, "error", traceback.format_exc()))
            reported = True
            raise
        finally:
            dist.destroy_process_group()
        results.put((rank, "ok", pickle.dumps(value)))
    except BaseException:  # set-up errors (errors of fn were reported above)
        if not reported:
            results.put((rank, "error", traceback.format_exc()))


def _later_errors(results, grace_s: float = 1.0) -> str:
    """One line for each other rank that failed shortly after the first (often as a consequence)."""
    lines, deadline = [], time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            rank, status, payload = results.get(timeout=0.1)
        except queue.Empty:
            continue
        if status == "error":
            lines.append(f"  rank {rank}: {payload.strip().splitlines()[-1]}")
    return "\nThen, probably as a consequence:\n" + "\n".join(lines) if lines else ""


def _spawn_unchecked(fn, world_size: int, args: tuple, backend: str, timeout_s: float, n_threads: int) -> list:
    """Run ``fn(*args)`` on ``world_size`` ranks; return the results in rank order (see ``labs.comm.spawn``)."""
    store = dist.TCPStore(LOOPBACK, 0, world_size + 1, True, timedelta(seconds=timeout_s), wait_for_workers=False)
    context = mp.get_context("spawn")
    results = context.Queue()
    processes = [
        context.Process(target=_worker, daemon=True,
                        args=(r, world_size, store.port, backend, timeout_s, n_threads, fn, args, results))
        for r in range(world_size)
    ]
    for process in processes:
        process.start()
    collected: dict[int, object] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while len(collected) < world_size:
            try:
                rank, status, payload = results.get(timeout=0.2)
            except queue.Empty:
                dead = [r for r, proc in enumerate(processes)
                        if r not in collected and proc.exitcode not in (None, 0)]
                if dead:
                    raise RankFailed(f"spawn: rank {dead[0]} died with exit code {processes[dead[0]].exitcode} "
                                     "without reporting a result") from None
                if time.monotonic() > deadline:
                    missing = sorted(set(range(world_size)) - set(collected))
                    raise TimeoutError(f"spawn: ranks {missing} gave no result within {timeout_s} s") from None
                continue
            if status == "error":
                raise RankFailed(f"spawn: rank {rank} of {world_size} failed:\n{payload}{_later_errors(results)}")
            collected[rank] = pickle.loads(payload)
    finally:
        for process in processes:
            process.join(timeout=5 if len(collected) == world_size else 0)
            if process.is_alive():
                process.kill()
                process.join()
        del store
    return [collected[r] for r in range(world_size)]
