"""labs.comm over real processes: the ring against gloo, data parallelism, and failures that must not hang."""

import os
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from labs.comm import RankFailed, ring_all_gather, ring_allreduce, ring_reduce_scatter, spawn
from labs.comm.experiment import chapter_run, fail_on_rank, mismatched_shapes, train_single_process

ROOT = Path(__file__).resolve().parents[2]


def test_ring_matches_gloo_and_data_parallel_matches_one_process():
    # p = 3 and 7 elements: uneven chunks; sizes [2] gives some ranks an empty chunk.
    results = spawn(chapter_run, 3, [2, 7], 1, 1, 7, 4, timeout=120)
    single, single_losses = train_single_process(steps=4)
    for result in results:
        check = result["check"]
        assert check["ring_vs_exact"] < 1e-12 and check["backend_vs_exact"] < 1e-12
        assert check["reduce_scatter_vs_exact"] < 1e-12 and check["all_gather_equal"]
        assert [row["n_elements"] for row in result["timings"]] == [2, 7]
        assert all(row["ring_s"] > 0 and row["backend_s"] > 0 for row in result["timings"])
        params, losses = result["training"]
        for ours, reference in zip(params, single):
            torch.testing.assert_close(ours, reference, rtol=0, atol=1e-12)
    # The shards' mean losses average to the whole batch's loss at the first step (same parameters).
    assert sum(r["training"][1][0] for r in results) / 3 == pytest.approx(single_losses[0], rel=1e-12)


def test_a_failing_rank_fails_the_call_with_its_traceback_and_does_not_hang():
    start = time.monotonic()
    with pytest.raises(RankFailed, match=r"(?s)rank 1 of 2 failed.*ValueError: rank 1 fails on purpose"):
        spawn(fail_on_rank, 2, 1, timeout=90)
    assert time.monotonic() - start < 90


def test_mismatched_shapes_across_ranks_raise_a_clear_error():
    with pytest.raises(RankFailed, match="ring_allreduce: every rank must pass a tensor of the same shape"):
        spawn(mismatched_shapes, 2, timeout=90)


def test_every_rank_runs_with_the_thread_count_asked_for():
    assert spawn(torch.get_num_threads, 2, threads=3, timeout=90) == [3, 3]


def test_spawn_rejects_bad_input():
    with pytest.raises(ValueError, match="spawn: fn must be importable"):
        spawn(lambda: 1, 2)
    with pytest.raises(ValueError, match="spawn: world_size must be a positive int, got 0"):
        spawn(fail_on_rank, 0)
    with pytest.raises(ValueError, match="spawn: backend must be one of 'gloo', 'nccl'; got 'mpi'"):
        spawn(fail_on_rank, 2, backend="mpi")
    with pytest.raises(ValueError, match="spawn: timeout must be a finite real number > 0, got 0"):
        spawn(fail_on_rank, 2, timeout=0)
    with pytest.raises(ValueError, match="spawn: threads must be a positive int, got 0"):
        spawn(fail_on_rank, 2, threads=0)
    with pytest.raises(TypeError, match="spawn: fn must be callable"):
        spawn(3, 2)


@pytest.fixture
def single_rank_group():
    """A one-process gloo group in this process, on a loopback port the kernel picks."""
    store = dist.TCPStore("127.0.0.1", 0, 1, True, timedelta(seconds=30))
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_ring_functions_reject_bad_input(single_rank_group):
    x = torch.arange(12.0).reshape(3, 4)
    with pytest.raises(ValueError, match=r"ring_allreduce: tensor must be contiguous.*shape \(4, 3\)"):
        ring_allreduce(x.T)
    with pytest.raises(TypeError, match="ring_reduce_scatter: tensor must be a torch.Tensor, got list"):
        ring_reduce_scatter([1.0, 2.0])
    with pytest.raises(TypeError, match=r"ring_all_gather: tensor must have a dtype in \(float16, "):
        ring_all_gather(torch.ones(3, dtype=torch.bool))
    assert torch.equal(ring_allreduce(x.clone()), x)  # one rank: the sum is the tensor itself


def test_ring_needs_an_initialised_group():
    with pytest.raises(RuntimeError, match="ring_allreduce: torch.distributed is not initialised"):
        ring_allreduce(torch.ones(3))


def test_torchrun_script_runs_on_one_machine_with_gloo():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"} | {"PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc-per-node=2",
         "--master-addr=127.0.0.1", f"--master-port={port}", "-m", "labs.comm.torchrun_demo", "--elements", "1000"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "rank 0 of 2 (gloo): ring allreduce matches dist.all_reduce" in result.stdout
    assert "rank 1 of 2 (gloo): ring allreduce matches dist.all_reduce" in result.stdout
