"""labs.comm over real processes: the ring against gloo, data parallelism, and failures that must not hang."""

import os
import re
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from labs.comm import RankFailed, loopback_env, ring_all_gather, ring_allreduce, ring_reduce_scatter, spawn
from labs.comm.experiment import chapter_run, die_on_rank, fail_on_rank, mismatched_shapes, train_single_process
from labs.comm.launch import _loopback_interface
from labs.comm.torchrun_demo import standalone_command

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
        for key in ("bucketed", "sharded"):  # DDP-style buckets during backward; ZeRO-style sharded update
            for ours, reference in zip(result[key][0], single):
                torch.testing.assert_close(ours, reference, rtol=0, atol=1e-12)
        stats = result["bucketed"][2]
        assert (stats["params"], stats["buckets"]) == (4, 2) and len(stats["waiting"]) == 2 * 4
        assert stats["waiting"][0::2] == [1] * 4  # the first bucket went out with a gradient still to come
        sent = result["sharded"][2]
        assert abs(sent["reduce_scatter"] - 2 / 3 * sent["elements"]) <= 1 and abs(sent["all_gather"] - 2 / 3 * sent["elements"]) <= 1
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


def test_torchrun_script_runs_standalone_on_loopback_with_gloo():
    command = standalone_command(2, "--elements", "1000", "--timeout", "30")
    assert "--standalone" in command  # its own rendezvous on a free port, never the default 29500
    # An inherited interface that does not exist would break gloo: the loopback must win, not setdefault.
    inherited = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"} | {
        "PYTHONPATH": str(ROOT), "GLOO_SOCKET_IFNAME": "no-such-nic0", "NCCL_SOCKET_IFNAME": "no-such-nic0"}
    result = subprocess.run(command, cwd=ROOT, env=loopback_env(inherited), capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "rank 0 of 2 (gloo): ring allreduce matches dist.all_reduce" in result.stdout
    assert "rank 1 of 2 (gloo): ring allreduce matches dist.all_reduce" in result.stdout


def test_loopback_env_forces_the_loopback_interface():
    interface = _loopback_interface()
    assert interface is not None
    env = loopback_env({"GLOO_SOCKET_IFNAME": "eth0", "NCCL_SOCKET_IFNAME": "ib0", "OTHER": "kept"})
    assert env == {"GLOO_SOCKET_IFNAME": interface, "NCCL_SOCKET_IFNAME": interface, "OTHER": "kept"}


@pytest.mark.parametrize("how, code", [("kill", r"-9 \(SIGKILL\)"), ("exit", "0")])
def test_a_rank_that_dies_hard_is_blamed_with_its_exit_code(how, code):
    # Rank 1 dies between two allreduces; ranks 0 and 2 then fail with "connection closed/reset".
    with pytest.raises(RankFailed) as failure:
        spawn(die_on_rank, 3, 1, how, timeout=90)
    first_line = str(failure.value).splitlines()[0]
    assert re.fullmatch(rf"spawn: rank 1 of 3 died with exit code {code} without reporting a result", first_line)


SCRIPT = """
import sys
from labs.comm import spawn
import torch.distributed as dist


def work(offset):
    return dist.get_rank() + offset


if __name__ == "__main__":
    print("results", spawn(work, 2, 10, timeout=90))
    if len(sys.argv) > 1:
        def nested(offset):  # defined where the new processes never look: under the guard
            return offset

        spawn(nested, 2, 0, timeout=90)
"""


def _python(args, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"} | {"PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=240)


def test_spawn_runs_a_worker_defined_in_a_scripts_main(tmp_path):
    script = tmp_path / "script_with_worker.py"
    script.write_text(SCRIPT)
    result = _python([str(script), "also-the-nested-one"], tmp_path)
    assert "results [10, 11]" in result.stdout, result.stdout[-2000:] + result.stderr[-3000:]
    # A function the children cannot find fails with the reason, not a bare unpickling error.
    assert result.returncode != 0
    assert "spawn: rank 0 could not import the function it was given" in result.stderr, result.stderr[-3000:]


def test_spawn_refuses_a_function_typed_into_an_interactive_session(tmp_path):
    code = "from labs.comm import spawn\ndef work():\n    return 1\nspawn(work, 2)\n"
    result = _python(["-c", code], tmp_path)
    assert result.returncode != 0
    assert ("ValueError: spawn: fn must be importable by the new processes; 'work' was defined in a notebook "
            "or an interactive session") in result.stderr, result.stderr[-3000:]
