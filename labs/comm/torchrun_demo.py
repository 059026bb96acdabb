"""The ring allreduce under ``torchrun``: one process per GPU (NCCL), or per CPU slot (gloo).

One machine, two processes (``--standalone``: torchrun picks a free local port)::

    torchrun --standalone --nproc-per-node=2 -m labs.comm.torchrun_demo

Two machines with 8 GPUs each (run on both; node 0's address is the rendezvous)::

    torchrun --nnodes=2 --nproc-per-node=8 --node-rank=$NODE_RANK \\
             --master-addr=$NODE0_ADDR --master-port=29500 -m labs.comm.torchrun_demo

torchrun sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT in
each process; ``init_process_group`` reads them (the ``env://`` method).
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import timedelta

import torch
import torch.distributed as dist

from labs.comm import ring_allreduce


def standalone_command(nproc: int, *script_args: str) -> list[str]:
    """The command that runs this script on ``nproc`` local processes under torchrun, alone on this machine.

    ``--standalone`` makes torchrun start its own rendezvous on a free local
    port (without it, every run would try port 29500). Run it with
    ``labs.comm.loopback_env()`` as the environment and a subprocess timeout.
    """
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={int(nproc)}",
            "-m", "labs.comm.torchrun_demo", *script_args]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--elements", type=int, default=1 << 20, help="elements per rank")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds any collective may wait before the process group gives up")
    args = parser.parse_args()

    local_rank = int(os.environ["LOCAL_RANK"])
    use_nccl = torch.cuda.is_available() and torch.cuda.device_count() > local_rank
    backend = "nccl" if use_nccl else "gloo"
    device = torch.device("cuda", local_rank) if use_nccl else torch.device("cpu")
    if use_nccl:
        torch.cuda.set_device(device)
    dist.init_process_group(backend, timeout=timedelta(seconds=args.timeout))
    rank, world = dist.get_rank(), dist.get_world_size()
    try:
        g = torch.Generator().manual_seed(rank)
        x = torch.randn(args.elements, generator=g, dtype=torch.float64).to(device)
        ours, theirs = ring_allreduce(x.clone()), x.clone()
        dist.all_reduce(theirs)
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
        print(f"rank {rank} of {world} ({backend}): ring allreduce matches dist.all_reduce on {args.elements} elements")
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
