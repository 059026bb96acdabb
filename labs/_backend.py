"""One place that decides where tensors live and which kernel path runs.

* Device: CUDA when available; the ``LABS_DEVICE`` environment variable
  (``cpu``, ``cuda``, ``cuda:1``, ...) overrides.
* Kernels: Triton on CUDA tensors; the same Triton kernels on CPU tensors when
  ``TRITON_INTERPRET=1`` (Triton's interpreter, slow but exact); otherwise the
  plain torch reference. A missing or broken Triton install falls back to
  torch rather than failing.
"""

from __future__ import annotations

import functools
import os

import torch


@functools.lru_cache(maxsize=None)
def triton_status() -> tuple[bool, str]:
    """Return ``(importable, why)`` for Triton, importing it at most once."""
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception as error:  # ImportError, or a broken install raising anything
        return False, f"triton unavailable ({type(error).__name__}: {error})"
    return True, f"triton {triton.__version__}"


def interpreting() -> bool:
    """True when ``TRITON_INTERPRET=1`` asks for Triton kernels on the CPU."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def device() -> torch.device:
    """The device the book's code runs on: ``LABS_DEVICE``, else CUDA if present, else CPU."""
    requested = os.environ.get("LABS_DEVICE", "").strip()
    if not requested:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(requested)
    except RuntimeError as error:
        raise ValueError(
            f"LABS_DEVICE must name a torch device such as 'cpu' or 'cuda:0', got {requested!r}"
        ) from error
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"LABS_DEVICE={requested!r} asks for CUDA, but torch sees no CUDA device")
    return chosen


def use_triton(tensor: torch.Tensor) -> bool:
    """Whether a kernel should take its Triton path for ``tensor``."""
    if not triton_status()[0]:
        return False
    if tensor.is_cuda:
        return True
    return tensor.device.type == "cpu" and interpreting()


def triton_dtype_ok(dtype: torch.dtype, dev: torch.device) -> bool:
    """bf16 ``tl.dot`` needs sm_80+ (Colab's T4 is sm_75); fp16/fp32/fp64 run everywhere."""
    if dtype is torch.bfloat16 and dev.type == "cuda":
        return torch.cuda.get_device_capability(dev) >= (8, 0)
    return dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def kernel_path(dev: torch.device | None = None) -> tuple[str, str]:
    """Return ``(path, why)`` with path one of ``"triton"``, ``"triton-interpret"``, ``"torch"``."""
    dev = device() if dev is None else dev
    ok, triton_why = triton_status()
    if not ok:
        return "torch", f"torch reference kernels: {triton_why}"
    if dev.type == "cuda":
        return "triton", f"Triton kernels on {torch.cuda.get_device_name(dev)} ({triton_why})"
    if interpreting():
        return "triton-interpret", f"Triton kernels in the CPU interpreter, TRITON_INTERPRET=1 ({triton_why})"
    return "torch", "torch reference kernels: no CUDA device (set TRITON_INTERPRET=1 to run Triton on the CPU)"


def backend_info() -> str:
    """One readable line: which device, which kernel path, and why."""
    dev = device()
    source = "LABS_DEVICE" if os.environ.get("LABS_DEVICE", "").strip() else "auto"
    return f"device {dev} ({source}); {kernel_path(dev)[1]}"
