"""The Triton linear scan (run by the interpreter here) against a plain loop, values and gradients."""

import pytest
import torch

import labs.ssm as ssm
from labs.ssm.reference import linear_scan_cumsum, linear_scan_reference
from labs.ssm.triton_scan import linear_scan_triton


def rel_err(x, y):
    return ((x.double() - y.double()).norm() / y.double().norm().clamp_min(1e-30)).item()


@pytest.mark.parametrize("shape", [(1, 1), (3, 63), (2, 65), (2, 3, 100), (1, 1025)])
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-13), (torch.float32, 1e-6), (torch.float16, 2e-3)])
def test_forward_matches_loop(shape, dtype, tol):
    a = torch.rand(shape).to(dtype)
    b = torch.randn(shape).to(dtype)
    h0 = torch.randn(shape[:-1]).to(dtype)
    for start in (None, h0):
        expected = linear_scan_reference(a.double(), b.double(), None if start is None else start.double())
        assert rel_err(linear_scan_triton(a, b, start), expected) < tol


def test_negative_and_large_coefficients():
    a = torch.randn(4, 70, dtype=torch.float64) * 1.1  # signs flip, magnitudes above 1
    b = torch.randn(4, 70, dtype=torch.float64)
    assert rel_err(linear_scan_triton(a, b), linear_scan_reference(a, b)) < 1e-12


def test_gradcheck():
    a = torch.rand(1, 2, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(1, 2, 5, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(1, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(linear_scan_triton, (a, b, h0))
    assert torch.autograd.gradcheck(lambda x, y: linear_scan_triton(x, y), (a, b))


@pytest.mark.parametrize("L", [1, 65, 1030])
def test_backward_matches_loop_autograd(L):
    a = torch.rand(3, L, requires_grad=True)
    b = torch.randn(3, L, requires_grad=True)
    h0 = torch.randn(3, requires_grad=True)
    g = torch.randn(3, L)
    ours = torch.autograd.grad(linear_scan_triton(a, b, h0), (a, b, h0), g)
    expected = torch.autograd.grad(linear_scan_reference(a, b, h0), (a, b, h0), g)
    for x, y in zip(ours, expected):
        assert rel_err(x, y) < 1e-5


def test_public_function_takes_triton_when_interpreting(monkeypatch):
    calls = []
    real = linear_scan_triton
    monkeypatch.setattr("labs.ssm.triton_scan.linear_scan_triton", lambda *args: calls.append(1) or real(*args))
    a, b = torch.rand(2, 9), torch.randn(2, 9)
    assert rel_err(ssm.linear_scan(a, b), linear_scan_reference(a, b)) < 1e-6
    assert calls == [1]


def test_cumsum_formulation_matches_loop():
    a = torch.rand(3, 200, dtype=torch.float64) * 0.5 + 0.5
    b = torch.randn(3, 200, dtype=torch.float64)
    assert rel_err(linear_scan_cumsum(a, b), linear_scan_reference(a, b)) < 1e-10


@pytest.mark.parametrize("chunk_len", [64, 128])
@pytest.mark.parametrize("L", [300, 513])
def test_chunked_scan_matches_loop(L, chunk_len):
    """Rows cut into chunks (reduce each to one step, scan the steps, rescan from the carries): the
    path few long rows take on a GPU, forward and backward."""
    a = (torch.rand(2, L, dtype=torch.float64) * 0.5 + 0.6).requires_grad_()  # products grow and shrink
    b = torch.randn(2, L, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2, dtype=torch.float64, requires_grad=True)
    ours = linear_scan_triton(a, b, h0, chunk_len=chunk_len)
    expected = linear_scan_reference(a, b, h0)
    assert rel_err(ours, expected) < 1e-13
    g = torch.randn(2, L, dtype=torch.float64)
    for x, y in zip(torch.autograd.grad(ours, (a, b, h0), g), torch.autograd.grad(expected, (a, b, h0), g)):
        assert rel_err(x, y) < 1e-13


def test_broadcast_coefficient_is_read_in_place():
    """a of shape (N, 1) expanded over time reaches the kernel with a zero time stride, not copied."""
    from labs import _backend

    a = torch.rand(3, 1, dtype=torch.float64)
    b = torch.randn(3, 50, dtype=torch.float64)
    with _backend.record_launches() as launches:
        linear_scan_triton(a.expand(3, 50), b)
    (launch,) = launches
    assert launch.args[0].data_ptr() == a.data_ptr() and launch.args[0].stride() == (1, 0)
    assert rel_err(linear_scan_triton(a.expand(3, 50), b), linear_scan_reference(a.expand(3, 50), b)) < 1e-13


def test_few_long_rows_take_the_chunked_path_on_a_gpu():
    from labs import _backend

    b = torch.zeros(8, 1 << 20)
    with _backend.record_launches((9, 0), sm_count=132) as launches:
        ssm.linear_scan(b, b)
    names = [launch.name for launch in launches]
    assert names[0] == "_aggregate_kernel" and names[-1] == "_scan_kernel"
    assert launches[-1].grid[0] >= 2 * 132  # rows x chunks: programs for every SM (512 here)
    with _backend.record_launches((9, 0), sm_count=132) as launches:
        ssm.linear_scan(torch.zeros(1024, 4096), torch.zeros(1024, 4096))
    assert [launch.name for launch in launches] == ["_scan_kernel"]  # many rows: one pass


def test_scan_in_interpreter_runs_the_kernel_in_a_child_process(monkeypatch):
    from labs.ssm.interpret import scan_in_interpreter

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    out = scan_in_interpreter(rows=2, L=70, seed=1)
    assert out["kernel_path"] == "triton-interpret" and out["takes_triton"]
    assert out["max_abs_error_float64"] < 1e-12 and out["max_abs_error_float32"] < 1e-5
    assert out["overflow_case_finite"]
    import os

    assert "TRITON_INTERPRET" not in os.environ  # nothing leaks into this process
    with pytest.raises(ValueError, match="scan_in_interpreter: L must be a positive int, got 0"):
        scan_in_interpreter(rows=2, L=0)


def test_scan_in_interpreter_names_an_interpreter_that_cannot_run(monkeypatch):
    """Triton 3.6's interpreter (Colab's) with NumPy 2.4 fails on every kernel: a clear, specific error;
    any other failure of the child stays a plain RuntimeError with its stderr."""
    import subprocess

    from labs.ssm import interpret

    def failing(stderr):
        return lambda *a, **k: subprocess.CompletedProcess(a, 1, stdout="", stderr=stderr)

    monkeypatch.setattr(interpret.subprocess, "run", failing("TypeError: " + interpret.NUMPY_SCALAR_ERROR))
    with pytest.raises(interpret.InterpreterUnavailable, match="cannot run kernels with this NumPy"):
        interpret.scan_in_interpreter(rows=2, L=10)
    monkeypatch.setattr(interpret.subprocess, "run", failing("ValueError: something else"))
    with pytest.raises(RuntimeError, match="something else") as raised:
        interpret.scan_in_interpreter(rows=2, L=10)
    assert not isinstance(raised.value, interpret.InterpreterUnavailable)
