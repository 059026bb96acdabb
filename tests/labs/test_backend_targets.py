"""labs._backend's targets and launch recording: what a launcher plans for, and the one door for launches."""

import pytest
import torch

from labs import _backend
from labs.scaling import scaled_softmax


def test_shared_memory_by_capability():
    assert _backend.shared_memory_limit((7, 5)) == 64 * 1024
    assert _backend.shared_memory_limit((8, 0)) == 163 * 1024
    assert _backend.shared_memory_limit((9, 0)) == 227 * 1024
    assert _backend.shared_memory_limit((8, 7)) == 163 * 1024
    assert _backend.shared_memory_limit((8, 2)) == 99 * 1024  # unlisted: its generation's smallest
    assert _backend.shared_memory_limit((5, 0)) == 48 * 1024  # unknown generation: the no-opt-in 48 KB


def test_cpu_target_is_the_interpreter():
    target = _backend.kernel_target(torch.zeros(1))
    assert target.interpreter and target.capability == _backend.INTERPRETER_CAPABILITY


def test_recording_plans_for_the_requested_gpu_and_runs_nothing():
    x = torch.randn(3, 40)
    with _backend.record_launches((7, 5), sm_count=40) as launches:
        target = _backend.kernel_target(x)
        assert (target.capability, target.shared_memory, target.sm_count, target.interpreter) == (
            (7, 5), 64 * 1024, 40, False)
        assert _backend.use_triton(x)
        assert not _backend.triton_dtype_ok(torch.bfloat16, x.device)  # no bf16 dot on sm_75
        y = scaled_softmax(x, 0.5)
    assert [launch.name for launch in launches] == ["_forward_kernel"]
    assert launches[0].grid == (3,) and launches[0].kwargs["BLOCK"] == 256
    assert y.shape == x.shape  # allocated, never written: the kernel did not run
    assert _backend.kernel_target(x).interpreter  # the recording ends with the block


def test_launch_skips_an_empty_grid_and_rejects_an_oversized_one():
    calls = []

    class Kernel:
        def __getitem__(self, grid):
            return lambda *args, **kwargs: calls.append(grid)

    _backend.launch(Kernel(), (0, 4))
    _backend.launch(Kernel(), (5, 2, 1))
    assert calls == [(5, 2, 1)]
    with pytest.raises(ValueError, match="grid axis 2 must be an int in \\[0, 65535\\], got 70000"):
        _backend.launch(Kernel(), (1, 1, 70000))
    with pytest.raises(ValueError, match="1 to 3 axes"):
        _backend.check_grid((1, 1, 1, 1))
