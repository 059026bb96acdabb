"""Start p local processes that form a ``torch.distributed`` group, and collect their results.

Every process binds to the loopback address only. The rendezvous is a
``TCPStore`` that the parent opens on a free port (port 0: the kernel picks
one, so two runs never collide). Ranks are started with the ``spawn`` method:
each new process imports ``fn`` by name, so ``fn`` must live in a module or
in the top level of the script being run (as with
``torch.multiprocessing.spawn``), not in a notebook or an interactive session.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import queue
import signal
import socket
import sys
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


def loopback_env(environ=None, *, interface: str | None = None) -> dict[str, str]:
    """``environ`` (default: this process's) with gloo and NCCL forced onto the loopback interface.

    Forced, not defaulted: an inherited ``GLOO_SOCKET_IFNAME=eth0`` would send
    a one-machine run out onto the network (or hang it where that is closed).
    """
    env = dict(os.environ if environ is None else environ)
    interface = interface or _loopback_interface()
    if interface:
        env["GLOO_SOCKET_IFNAME"] = interface
        env["NCCL_SOCKET_IFNAME"] = interface
    return env


def _worker(rank, world_size, port, backend, timeout_s, n_threads, payload, results) -> None:
    reported = False
    try:
        os.environ.update(loopback_env())
        os.environ.setdefault("OMP_NUM_THREADS", str(n_threads))
        try:
            fn, args = pickle.loads(payload)
        except Exception as error:
            raise ImportError(
                f"spawn: rank {rank} could not import the function it was given ({error}). Define it at the "
                "top level of a module or of the script being run, not inside `if __name__ == '__main__':`, "
                "a notebook or another function"
            ) from error
        import torch

        if backend == "nccl":
            torch.cuda.set_device(rank % torch.cuda.device_count())
        store = dist.TCPStore(LOOPBACK, port, world_size + 1, False, timedelta(seconds=timeout_s))
        dist.init_process_group(backend, store=store, rank=rank, world_size=world_size,
                                timeout=timedelta(seconds=timeout_s))
        try:
            # Nobody starts until every rank is connected, and nobody leaves before all have
            # finished: a rank that is done early would otherwise close connections a slower
            # peer is still setting up.
            dist.barrier()
            with threads(n_threads):
                value = fn(*args)
            dist.barrier()
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


def why_not_importable(fn) -> str | None:
    """Why new (spawned) processes could not import ``fn`` by name, or None if they can.

    They re-import the module ``fn`` comes from. A script run as ``python
    script.py`` is re-imported from its file, so its top-level functions are
    fine; a notebook's or an interactive session's ``__main__`` has no file,
    and lambdas and functions nested in other functions have no importable name.
    """
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if module is None or qualname is None:
        return f"{fn!r} has no module or qualified name"
    if "<lambda>" in qualname or "<locals>" in qualname:
        return f"{qualname!r} is a lambda or a function defined inside another function"
    if module in ("__main__", "__mp_main__"):
        main = sys.modules.get(module)
        spec_name = getattr(getattr(main, "__spec__", None), "name", None)
        path = getattr(main, "__file__", None)
        by_name = spec_name is not None and spec_name != "__main__" and not spec_name.endswith(".__main__")
        by_path = spec_name is None and path is not None and os.path.splitext(os.path.basename(path))[0] != "ipython"
        if not (by_name or by_path):
            return (f"{qualname!r} was defined in a notebook or an interactive session (module '__main__' "
                    "has no file the new processes could import); move it into a .py module and import it")
    return None


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"exit code {code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"exit code {code}"
    return f"exit code {code}"


def _spawn_unchecked(fn, world_size: int, args: tuple, backend: str, timeout_s: float, n_threads: int,
                     grace_s: float = 3.0) -> list:
    """Run ``fn(*args)`` on ``world_size`` ranks; return the results in rank order (see ``labs.comm.spawn``).

    When something goes wrong the culprit is named: a rank that died without
    reporting (killed, or ``os._exit``) before a rank that raised, because its
    peers' errors ("connection closed") are only the consequence.
    """
    payload = pickle.dumps((fn, args))
    store = dist.TCPStore(LOOPBACK, 0, world_size + 1, True, timedelta(seconds=timeout_s), wait_for_workers=False)
    context = mp.get_context("spawn")
    results = context.Queue()
    processes = [
        context.Process(target=_worker, daemon=True,
                        args=(r, world_size, store.port, backend, timeout_s, n_threads, payload, results))
        for r in range(world_size)
    ]
    for process in processes:
        process.start()
    reports: dict[int, tuple[str, object]] = {}  # rank -> (status, payload), in the order they arrived
    deadline = time.monotonic() + timeout_s
    trouble_since = None  # when the first error or silent death was seen

    def drain(wait_s: float) -> None:
        while True:
            try:
                rank, status, body = results.get(timeout=wait_s)
            except queue.Empty:
                return
            reports.setdefault(rank, (status, body))
            wait_s = 0.05

    def silent() -> list[int]:
        """Ranks whose process ended without a report (after reading whatever was still in the queue)."""
        ended = [r for r, proc in enumerate(processes) if r not in reports and proc.exitcode is not None]
        if ended:
            drain(0.2)
        return [r for r in ended if r not in reports]

    try:
        while True:
            drain(0.2)
            if len(reports) == world_size and all(status == "ok" for status, _ in reports.values()):
                break
            dead = silent()
            if trouble_since is None and (dead or any(status == "error" for status, _ in reports.values())):
                trouble_since = time.monotonic()
            if trouble_since is not None:
                settled = all(r in reports or proc.exitcode is not None for r, proc in enumerate(processes))
                if settled or time.monotonic() - trouble_since > grace_s:
                    raise RankFailed(_failure_text(world_size, reports, dead, processes)) from None
            elif time.monotonic() > deadline:
                missing = sorted(set(range(world_size)) - set(reports))
                raise TimeoutError(f"spawn: ranks {missing} gave no result within {timeout_s} s") from None
    finally:
        for process in processes:
            process.join(timeout=5 if len(reports) == world_size else 0)
            if process.is_alive():
                process.kill()
                process.join()
        del store
    return [pickle.loads(reports[r][1]) for r in range(world_size)]


def _failure_text(world_size: int, reports: dict, dead: list[int], processes) -> str:
    """The culprit first (a rank that died silently, else the first rank that raised), then the rest."""
    errors = [r for r, (status, _) in reports.items() if status == "error"]
    if dead:
        culprit = dead[0]
        head = (f"spawn: rank {culprit} of {world_size} died with {_exit_text(processes[culprit].exitcode)} "
                "without reporting a result")
        others = [f"  rank {r}: died with {_exit_text(processes[r].exitcode)}" for r in dead[1:]]
    else:
        culprit = errors[0]
        head = f"spawn: rank {culprit} of {world_size} failed:\n{reports[culprit][1]}"
        others = []
    others += [f"  rank {r}: {reports[r][1].strip().splitlines()[-1]}" for r in errors if r != culprit]
    return head + ("\nThen, probably as a consequence:\n" + "\n".join(others) if others else "")
