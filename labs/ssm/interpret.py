"""Run the Triton scan in Triton's CPU interpreter from a process that does not interpret.

``@triton.jit`` reads ``TRITON_INTERPRET`` when a kernel is defined, so a
process that imported ``labs.ssm`` without it cannot switch to the interpreter
later, and setting it for the whole process would send every other kernel
through the (slow) interpreter too. ``scan_in_interpreter`` therefore starts a
fresh Python with ``TRITON_INTERPRET=1`` for this one check and reads back what
it measured.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from .._checks import whole_number


def _measure(rows: int, L: int, seed: int) -> dict:
    """In the interpreting child: the kernel path's float32 and float64 scans against the float64 loop."""
    import torch

    from .. import _backend
    from . import linear_scan
    from .reference import linear_scan_reference

    generator = torch.Generator().manual_seed(seed)
    a = torch.rand(rows, L, dtype=torch.float64, generator=generator) * 0.5 + 0.5
    b = torch.randn(rows, L, dtype=torch.float64, generator=generator)
    loop = linear_scan_reference(a, b)
    out = {"kernel_path": _backend.kernel_path()[0], "takes_triton": _backend.use_triton(a)}
    for name, dtype in (("float32", torch.float32), ("float64", torch.float64)):
        out[f"max_abs_error_{name}"] = (linear_scan(a.to(dtype), b.to(dtype)).double() - loop).abs().max().item()
    overflow = linear_scan(torch.full((1, 300), 2.0), torch.cat([torch.zeros(1, 299), torch.ones(1, 1)], -1))
    out["overflow_case_finite"] = bool(overflow.isfinite().all())  # a = 2 for 300 steps, zero state until the end
    return out


NUMPY_SCALAR_ERROR = "only 0-dimensional arrays can be converted to Python scalars"


class InterpreterUnavailable(RuntimeError):
    """The installed Triton's CPU interpreter cannot run kernels here (Triton 3.6, Colab's, with NumPy 2.4)."""


def scan_in_interpreter(rows: int = 4, L: int = 200, *, seed: int = 0, timeout: float = 300.0) -> dict:
    """Run ``labs.ssm.linear_scan`` through the Triton kernel in the CPU interpreter, in a child process.

    Returns the child's ``kernel_path`` (``"triton-interpret"`` when the kernel ran),
    whether dispatch took the Triton path, the largest absolute errors of the
    float32 and float64 kernel scans of ``rows x L`` random steps against the
    float64 loop, and whether the overflow case (``a = 2``, ``L = 300``) stays finite.
    """
    whole_number("scan_in_interpreter", "rows", rows)
    whole_number("scan_in_interpreter", "L", L)
    whole_number("scan_in_interpreter", "seed", seed, minimum=0)
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    code = f"import json; from labs.ssm.interpret import _measure; print(json.dumps(_measure({rows}, {L}, {seed})))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        if NUMPY_SCALAR_ERROR in done.stderr:
            import numpy
            import triton

            raise InterpreterUnavailable(
                f"scan_in_interpreter: the CPU interpreter of this Triton ({triton.__version__}) cannot run "
                f"kernels with this NumPy ({numpy.__version__}): it turns a 1-element array into an int, which "
                "NumPy 2.4 refuses. The kernel is not run on this page here; the test suite holds it to the "
                "loop in a newer interpreter, and on a GPU it is compiled, not interpreted.")
        raise RuntimeError(f"scan_in_interpreter: the interpreting process failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
