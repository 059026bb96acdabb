import sys

import pytest
import torch

from labs import _backend, backend_info


def test_labs_device_override(monkeypatch):
    monkeypatch.setenv("LABS_DEVICE", "cpu")
    assert _backend.device() == torch.device("cpu")
    assert "LABS_DEVICE" in backend_info()


def test_default_device_follows_cuda(monkeypatch):
    monkeypatch.delenv("LABS_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _backend.device() == torch.device("cpu")
    assert "(auto)" in backend_info()


def test_bad_labs_device_names_the_variable(monkeypatch):
    monkeypatch.setenv("LABS_DEVICE", "tpu-please")
    with pytest.raises(ValueError, match="LABS_DEVICE.*'tpu-please'"):
        _backend.device()


def test_cuda_requested_without_cuda(monkeypatch):
    monkeypatch.setenv("LABS_DEVICE", "cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA device"):
        _backend.device()


def test_interpreter_path_on_cpu(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    path, why = _backend.kernel_path(torch.device("cpu"))
    assert path == "triton-interpret" and "TRITON_INTERPRET=1" in why
    assert _backend.use_triton(torch.zeros(1))


def test_torch_path_on_cpu_without_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    path, why = _backend.kernel_path(torch.device("cpu"))
    assert path == "torch" and "no CUDA device" in why
    assert not _backend.use_triton(torch.zeros(1))


def test_missing_triton_falls_back(monkeypatch):
    """A triton that cannot be imported leaves the torch path, with the reason in the info line."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setitem(sys.modules, "triton", None)  # makes `import triton` raise ImportError
    _backend.triton_status.cache_clear()
    try:
        ok, why = _backend.triton_status()
        assert not ok and "ModuleNotFoundError" in why
        assert _backend.kernel_path(torch.device("cpu"))[0] == "torch"
        assert not _backend.use_triton(torch.zeros(1))
        assert "triton unavailable" in backend_info()
    finally:
        _backend.triton_status.cache_clear()


def test_backend_info_is_one_line():
    assert "\n" not in backend_info()


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_triton_dtypes_on_cpu(dtype):
    assert _backend.triton_dtype_ok(dtype, torch.device("cpu"))


def test_integer_dtype_has_no_triton_path():
    assert not _backend.triton_dtype_ok(torch.int32, torch.device("cpu"))


def test_labs_device_cpu_wins_over_cuda(monkeypatch):
    """LABS_DEVICE=cpu keeps everything on the CPU even where CUDA is available."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.delenv("LABS_DEVICE", raising=False)
    assert _backend.device() == torch.device("cuda")
    monkeypatch.setenv("LABS_DEVICE", "cpu")
    assert _backend.device() == torch.device("cpu")
    assert _backend.kernel_path()[0] in ("torch", "triton-interpret")
