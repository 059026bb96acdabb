"""One place that decides where tensors live and which kernel path runs.

* Device: CUDA when available; the ``LABS_DEVICE`` environment variable
  (``cpu``, ``cuda``, ``cuda:1``, ...) overrides.
* Kernels: Triton on CUDA tensors; the same Triton kernels on CPU tensors when
  ``TRITON_INTERPRET=1`` (Triton's interpreter, slow but exact); otherwise the
  plain torch reference. A missing or broken Triton install falls back to
  torch rather than failing.
* Targets: a kernel's launcher asks ``kernel_target(tensor)`` which GPU it plans
  for (compute capability, shared memory per block, SM count) and chooses block
  sizes and warps that fit it. Every launch goes through ``launch``, which checks
  the grid against CUDA's limits on the host. ``record_launches(capability)``
  plans for a GPU that is not here: the public functions run their real
  dispatch, and each kernel launch is recorded instead of run, so a test can
  compile exactly what the dispatch would launch on that target.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
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
    if _RECORDING.get() is not None:
        return True
    if tensor.is_cuda:
        return True
    return tensor.device.type == "cpu" and interpreting()


def triton_dtype_ok(dtype: torch.dtype, dev: torch.device) -> bool:
    """bf16 ``tl.dot`` needs sm_80+ (Colab's T4 is sm_75); fp16/fp32/fp64 run everywhere."""
    if dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        return False
    if dtype is torch.bfloat16 and (dev.type == "cuda" or _RECORDING.get() is not None):
        return kernel_target(dev).capability >= (8, 0)
    return True


# --- Targets: what a launcher plans for --------------------------------------------------------

# The most shared memory one block may use (the opt-in maximum, bytes), by compute capability.
# From the CUDA C Programming Guide's table of technical specifications.
SHARED_MEMORY_PER_BLOCK = {
    (7, 0): 96 * 1024,  # V100
    (7, 5): 64 * 1024,  # T4, RTX 20xx (Colab's free GPU)
    (8, 0): 163 * 1024,  # A100
    (8, 6): 99 * 1024,  # RTX 30xx, A10, A40
    (8, 7): 163 * 1024,  # Jetson Orin
    (8, 9): 99 * 1024,  # L4, L40, RTX 40xx
    (9, 0): 227 * 1024,  # H100, H200
    (10, 0): 227 * 1024,  # B200
    (12, 0): 99 * 1024,  # RTX 50xx
}
# The targets the compile test builds every kernel for: Colab's T4, an A100, an H100/H200.
COMPILE_TARGETS = ((7, 5), (8, 0), (9, 0))
# CUDA's grid limits: axis 0 up to 2^31 - 1 programs, axes 1 and 2 up to 65535.
MAX_GRID = (2**31 - 1, 65535, 65535)
# The target the CPU interpreter plans as (its block sizes and warps); it has no limits of its own.
INTERPRETER_CAPABILITY = (8, 0)
INTERPRETER_SM_COUNT = 4


@dataclasses.dataclass(frozen=True)
class Target:
    """The machine a launcher chooses its configuration for."""

    capability: tuple[int, int]
    shared_memory: int  # bytes one block may use
    sm_count: int
    interpreter: bool  # True: Triton's CPU interpreter (exact fp32 dots, no bf16 dot, no limits)


def shared_memory_limit(capability: tuple[int, int]) -> int:
    """Shared memory per block for ``capability``; an unlisted one gets its generation's smallest."""
    if capability in SHARED_MEMORY_PER_BLOCK:
        return SHARED_MEMORY_PER_BLOCK[capability]
    same_major = [v for (major, _), v in SHARED_MEMORY_PER_BLOCK.items() if major == capability[0]]
    return min(same_major) if same_major else 48 * 1024  # 48 KB: what every CUDA GPU gives without opt-in


def kernel_target(dev: torch.device | torch.Tensor | None = None) -> Target:
    """The target a launch on ``dev`` (a device or a tensor) plans for."""
    recording = _RECORDING.get()
    if recording is not None:
        return recording.target
    if isinstance(dev, torch.Tensor):
        dev = dev.device
    dev = device() if dev is None else torch.device(dev)
    if dev.type == "cuda":
        capability = tuple(torch.cuda.get_device_capability(dev))
        props = torch.cuda.get_device_properties(dev)
        shared = getattr(props, "shared_memory_per_block_optin", None) or shared_memory_limit(capability)
        return Target(capability, int(shared), int(props.multi_processor_count), interpreter=False)
    return Target(INTERPRETER_CAPABILITY, shared_memory_limit(INTERPRETER_CAPABILITY), INTERPRETER_SM_COUNT,
                  interpreter=True)


# --- Launches: one door for every kernel -------------------------------------------------------


@dataclasses.dataclass
class Launch:
    """One kernel launch as a launcher asked for it: ``kernel[grid](*args, **kwargs)``."""

    kernel: object
    grid: tuple[int, ...]
    args: tuple
    kwargs: dict

    @property
    def name(self) -> str:
        fn = getattr(self.kernel, "fn", self.kernel)
        return getattr(fn, "__name__", repr(fn))


@dataclasses.dataclass
class _Recording:
    target: Target
    launches: list


_RECORDING: contextvars.ContextVar[_Recording | None] = contextvars.ContextVar("labs_recording", default=None)


def check_grid(grid: tuple[int, ...], name: str = "kernel") -> None:
    """Raise a ValueError naming the axis when ``grid`` exceeds CUDA's launch limits."""
    if not 1 <= len(grid) <= 3:
        raise ValueError(f"{name}: a launch grid has 1 to 3 axes, got {grid}")
    for axis, (size, limit) in enumerate(zip(grid, MAX_GRID)):
        if not isinstance(size, int) or size < 0 or size > limit:
            raise ValueError(f"{name}: grid axis {axis} must be an int in [0, {limit}], got {size} (grid {grid})")


def launch(kernel, grid: tuple[int, ...], *args, **kwargs) -> None:
    """Launch ``kernel[grid](*args, **kwargs)`` after checking the grid; record it instead inside ``record_launches``."""
    grid = tuple(int(g) for g in grid)
    record = Launch(kernel, grid, args, kwargs)
    check_grid(grid, record.name)
    if 0 in grid:
        return
    recording = _RECORDING.get()
    if recording is not None:
        recording.launches.append(record)
        return
    kernel[grid](*args, **kwargs)


@contextlib.contextmanager
def record_launches(capability: tuple[int, int] = (9, 0), sm_count: int = 132):
    """Plan for a GPU of ``capability`` and record every launch instead of running it.

    Inside the block the public functions take their Triton path on any tensor
    (CPU tensors included), launchers choose the configuration they would choose
    on that GPU, and ``launch`` appends a ``Launch`` to the yielded list. Outputs
    are left unwritten: use the list, not the results.
    """
    capability = tuple(capability)
    target = Target(capability, shared_memory_limit(capability), sm_count, interpreter=False)
    recording = _Recording(target, [])
    token = _RECORDING.set(recording)
    try:
        yield recording.launches
    finally:
        _RECORDING.reset(token)


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
