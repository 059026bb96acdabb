"""Compile every Triton kernel configuration the dispatch can choose, for real GPU targets, with no GPU.

How it finds the configurations: inside ``labs._backend.record_launches(cc)``
the public functions (``scaled_softmax``, ``apply_rope_qk``,
``linear_attention(method="chunk")``, ``linear_scan``, ``gated_linear_attention``) run their real dispatch
for a GPU of compute capability ``cc``, forward and backward, over inputs that
reach every branch of each launcher's configuration choice (dtypes, flags,
head dims, chunk sizes, row lengths). Each launch is recorded instead of run.
Triton's own binder turns a recorded launch into the signature, constants and
options it would compile at that launch (the same code ``JITFunction.run``
uses), and ``triton.compile`` builds it for the target with the ptxas that
ships with Triton. ``ptxas -v`` reports registers and spills; the kernel's
metadata gives the shared memory. ``problems`` judges a compiled kernel against
its target.

Run as a script (``TRITON_INTERPRET`` must be unset: interpreted kernels
cannot be compiled)::

    python tests/labs/kernel_compile.py --out compiled.json [--kernels softmax,rope] [--targets 75,80,90] [--jobs 2]

The test ``tests/labs/test_compile.py`` runs it and checks its records.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import importlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9's default, stated (silences its warning)

KERNELS = ("softmax", "rope", "attention", "scan", "recurrent")
TARGETS = (75, 80, 90)
# A memory-bound kernel needs warps in flight to hide latency. At most 128 registers per thread
# leaves room for 16 warps of 128 threads per SM (a quarter of an H100's 64): enough for the
# streaming kernels. The tensor-core kernel (chunked attention) may use the full 255.
STREAMING_MAX_REGISTERS = 128
STREAMING_KERNELS = {"_forward_kernel@labs.scaling.triton_softmax", "_backward_kernel@labs.scaling.triton_softmax",
                     "_rope_kernel@labs.rope.triton_rope", "_scan_kernel@labs.ssm.triton_scan",
                     "_aggregate_kernel@labs.ssm.triton_scan"}


# --- Which launches the dispatch makes ---------------------------------------------------------


def _softmax_cases():
    import torch

    from labs.scaling import scaled_softmax
    from labs.scaling.triton_softmax import MAX_BLOCK

    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        n = MAX_BLOCK
        while n >= 1:  # one row length per block size the launcher can choose
            yield f"softmax {dtype} cols={n}", dtype, _with_backward(lambda n=n, dtype=dtype: scaled_softmax(
                torch.zeros(2, n, dtype=dtype, requires_grad=True), 0.125))
            n //= 2


def _rope_cases():
    import torch

    from labs.rope import apply_rope, apply_rope_qk
    from labs.rope.triton_rope import MAX_HEAD_DIM

    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        for interleaved in (False, True):
            dim = MAX_HEAD_DIM
            while dim >= 2:  # one head dim per pair-block size, the widest (most aligned) first
                def run(dim=dim, dtype=dtype, interleaved=interleaved):
                    qkv = torch.zeros(2, 40, 3, 4, dim, dtype=dtype)  # (B, T, 3, H, D): strided q/k views
                    q = qkv[:, :, 0].transpose(1, 2).requires_grad_()
                    k = qkv[:, :, 1, :2].transpose(1, 2).requires_grad_()
                    inv_freq = torch.ones(dim // 2, dtype=torch.float64)
                    q_rot, k_rot = apply_rope_qk(q, k, torch.arange(40), inv_freq, interleaved=interleaved)
                    (q_rot.sum() + k_rot.sum()).backward()
                    apply_rope(q.detach(), torch.arange(40), inv_freq, interleaved=interleaved)
                yield f"rope {dtype} D={dim} interleaved={interleaved}", dtype, run
                dim //= 2


def _attention_cases():
    import torch

    from labs.attention import TRITON_CHUNK_SIZES, linear_attention

    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        for chunk in TRITON_CHUNK_SIZES:
            for dk, dv in ((16, 16), (32, 32), (64, 64), (128, 128), (256, 256), (64, 256)):
                def run(dtype=dtype, chunk=chunk, dk=dk, dv=dv):
                    q = torch.zeros(1, 2, 2 * chunk, dk, dtype=dtype, requires_grad=True)
                    k = torch.zeros(1, 2, 2 * chunk, dk, dtype=dtype, requires_grad=True)
                    v = torch.zeros(1, 2, 2 * chunk, dv, dtype=dtype, requires_grad=True)
                    out = linear_attention(q, k, v, causal=True, feature_map="identity", normalize=False,
                                           method="chunk", chunk_size=chunk)
                    out.sum().backward()
                yield f"attention {dtype} chunk={chunk} dk={dk} dv={dv}", dtype, run


def _scan_cases():
    import torch

    from labs.ssm import linear_scan

    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        for rows, length in ((2, 100), (2, 5000), (1024, 5000), (8, 1 << 20)):
            for with_h0 in (False, True):
                def run(dtype=dtype, rows=rows, length=length, with_h0=with_h0):
                    a = torch.zeros(rows, length, dtype=dtype, requires_grad=True)
                    b = torch.zeros(rows, length, dtype=dtype, requires_grad=True)
                    h0 = torch.zeros(rows, dtype=dtype, requires_grad=True) if with_h0 else None
                    linear_scan(a, b, h0=h0).sum().backward()
                yield f"scan {dtype} rows={rows} L={length} h0={with_h0}", dtype, run


def _recurrent_cases():
    import torch

    from labs.attention import TRITON_CHUNK_SIZES
    from labs.recurrent import gated_linear_attention

    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        for chunk in TRITON_CHUNK_SIZES:
            for dk, dv in ((16, 16), (64, 64), (128, 128), (256, 256), (64, 256)):
                for channel in (False, True):  # one decay per step (B, H, T); one per key channel (B, H, T, K)
                    def run(dtype=dtype, chunk=chunk, dk=dk, dv=dv, channel=channel):
                        q = torch.zeros(1, 2, 2 * chunk, dk, dtype=dtype, requires_grad=True)
                        v = torch.zeros(1, 2, 2 * chunk, dv, dtype=dtype, requires_grad=True)
                        shape = (1, 2, 2 * chunk, dk) if channel else (1, 2, 2 * chunk)
                        log_decay = torch.zeros(shape, dtype=dtype, requires_grad=True)
                        gated_linear_attention(q, q, v, log_decay, chunk_size=chunk).sum().backward()
                    label = "per-channel" if channel else "per-step"
                    yield f"recurrent {label} {dtype} chunk={chunk} dk={dk} dv={dv}", dtype, run


CASES = {"softmax": _softmax_cases, "rope": _rope_cases, "attention": _attention_cases, "scan": _scan_cases,
         "recurrent": _recurrent_cases}


def _with_backward(forward):
    def run():
        forward().sum().backward()
    return run


def recorded_launches(kernel: str, capability: int):
    """Every launch the dispatch makes for ``kernel``'s cases on a GPU of ``capability`` (e.g. 90).

    A case whose dtype the dispatch sends to torch on this target (bf16 below
    sm_80) is not run: its torch path launches nothing and may be slow.
    """
    import torch

    from labs import _backend

    launches = []
    for label, dtype, run in CASES[kernel]():
        with _backend.record_launches((capability // 10, capability % 10)) as recorded:
            if not _backend.triton_dtype_ok(dtype, torch.device("cpu")):
                continue
            run()
        if not recorded:
            raise RuntimeError(f"sm_{capability}: {label} launched no Triton kernel")
        launches.extend(recorded)
    return launches


# --- What Triton would compile for a launch ----------------------------------------------------


def jit_function(kernel):
    """The ``JITFunction`` behind ``kernel`` (an interpreted kernel is rebuilt from its Python source)."""
    from triton.runtime.jit import JITFunction

    return kernel if isinstance(kernel, JITFunction) else JITFunction(kernel.fn)


def specialize(launch, capability: int) -> dict:
    """Triton's own signature, constants, attributes and options for ``launch`` on ``capability``.

    This is what ``JITFunction.run`` computes before it compiles: the binder
    mangles each argument (a Python float becomes fp32 unless annotated, an int
    that equals 1 becomes a constant, pointers get their alignment).
    """
    from triton.backends.compiler import GPUTarget
    from triton.compiler import make_backend
    from triton.runtime.jit import create_function_from_signature

    fn = jit_function(launch.kernel)
    target = GPUTarget("cuda", capability, 32)
    backend = make_backend(target)
    binder = create_function_from_signature(fn.signature, fn.params, backend)
    bound_args, specialization, options = binder(*launch.args, **launch.kwargs)
    options, signature, constexprs, attrs = fn._pack_args(backend, launch.kwargs, bound_args, specialization, options)
    return {"signature": signature, "constexprs": constexprs, "attrs": attrs, "options": options.__dict__}


def job(launch, capability: int) -> dict:
    """A picklable compile job for ``launch`` on ``capability``, with a key that identifies the binary."""
    spec = specialize(launch, capability)
    fn = jit_function(launch.kernel)
    kernel_id = f"{fn.fn.__name__}@{fn.fn.__module__}"
    consts = {fn.arg_names[path[0]]: value for path, value in spec["constexprs"].items() if len(path) == 1}
    config = {k: v for k, v in consts.items() if k.isupper()}  # the launcher's choices: BLOCK, FP64, ...
    config["num_warps"] = spec["options"]["num_warps"]
    # One binary per configuration: the launcher's constexpr choices, the warps, and the pointer and
    # float argument types. Triton also specialises integer arguments (a value of 1 becomes a
    # constant, multiples of 16 get an alignment hint); those variants differ in address arithmetic,
    # not in tiles, so the first launch seen stands for them (the cases run wide, aligned shapes first).
    types = {k: v for k, v in spec["signature"].items() if v != "constexpr" and not v.startswith(("i", "u"))}
    key = json.dumps([kernel_id, capability, sorted(config.items()), sorted(types.items())], default=str)
    return {"kernel": kernel_id, "capability": capability, "config": config, "types": types, "key": key,
            "module": fn.fn.__module__, "name": fn.fn.__name__, **spec}


# --- Compiling, and reading what ptxas says ----------------------------------------------------


def _ptxas_report(log: str) -> dict:
    regs = re.search(r"Used (\d+) registers", log)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    stack = re.search(r"(\d+) bytes stack frame", log)
    if regs is None or spills is None:
        raise RuntimeError(f"could not read ptxas -v output:\n{log}")
    return {"registers": int(regs.group(1)), "spill_stores": int(spills.group(1)),
            "spill_loads": int(spills.group(2)), "stack": int(stack.group(1)) if stack else 0}


def _run_ptxas(ptx: str, capability: int) -> str:
    from triton.backends.nvidia.compiler import get_ptxas, sm_arch_from_capability

    with tempfile.TemporaryDirectory() as tmp:
        src, out = os.path.join(tmp, "k.ptx"), os.path.join(tmp, "k.cubin")
        with open(src, "w") as f:
            f.write(ptx)
        done = subprocess.run([get_ptxas(capability).path, "-v", f"--gpu-name={sm_arch_from_capability(capability)}",
                               src, "-o", out], capture_output=True, text=True, check=True)
        return done.stderr


def compile_job(spec: dict) -> dict:
    """Compile one job for its target; return the resources ptxas and Triton report (or the error)."""
    import triton
    from triton import knobs
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn = jit_function(getattr(importlib.import_module(spec["module"]), spec["name"]))
    capability = spec["capability"]
    src = ASTSource(fn, spec["signature"], spec["constexprs"], spec["attrs"])
    start = time.perf_counter()
    log = io.StringIO()
    result = {k: spec[k] for k in ("kernel", "capability", "config", "types")}
    try:
        with knobs.nvidia.scope():
            knobs.nvidia.dump_ptxas_log = True
            with contextlib.redirect_stdout(log):
                compiled = triton.compile(src, target=GPUTarget("cuda", capability, 32), options=spec["options"])
    except Exception as error:  # a compile failure is a finding, reported with the configuration
        result["error"] = f"{type(error).__name__}: {str(error)[-2000:]}"
        return result
    text = log.getvalue()
    if "registers" not in text:  # a cache hit: Triton did not run ptxas this time, so run it here
        text = _run_ptxas(compiled.asm["ptx"], capability)
    result.update(_ptxas_report(text))
    result["shared"] = int(compiled.metadata.shared)
    result["seconds"] = round(time.perf_counter() - start, 2)
    result["dots"] = dots(compiled.asm.get("ttir", ""))
    return result


def dots(ttir: str) -> list[list[str]]:
    """``[a_type, b_type, input_precision]`` of every ``tt.dot`` in Triton's IR, before lowering.

    The IR prints ``inputPrecision`` only when it is not IEEE (an unannotated fp32 dot on sm_80+
    prints ``inputPrecision = tf32``)."""
    found = []
    for line in ttir.splitlines():
        if "tt.dot " not in line:
            continue
        precision = re.search(r"inputPrecision = (\w+)", line)
        types = re.search(r": tensor<[^>]*x(\w+)> \* tensor<[^>]*x(\w+)>", line)
        found.append([types.group(1) if types else "?", types.group(2) if types else "?",
                      precision.group(1) if precision else "ieee"])
    return found


# --- Judging a compiled kernel -----------------------------------------------------------------


def problems(result: dict) -> list[str]:
    """What would stop (or cripple) this compiled kernel on its target; empty when it is fine."""
    from labs._backend import shared_memory_limit

    if "error" in result:
        return [f"does not compile: {result['error']}"]
    capability = result["capability"]
    found = []
    limit = shared_memory_limit((capability // 10, capability % 10))
    if result["shared"] > limit:
        found.append(f"shared memory {result['shared']} B > {limit} B per block on sm_{capability}")
    if result["spill_stores"] or result["spill_loads"]:
        found.append(f"register spills: {result['spill_stores']} B stored, {result['spill_loads']} B loaded")
    threads = 32 * result["config"]["num_warps"]
    if result["registers"] * threads > 65536:
        found.append(f"{result['registers']} registers x {threads} threads > 65536 registers per SM")
    if result["kernel"] in STREAMING_KERNELS and result["registers"] > STREAMING_MAX_REGISTERS:
        found.append(f"{result['registers']} registers > {STREAMING_MAX_REGISTERS} for a memory-bound kernel")
    return found


def plan(kernels=KERNELS, targets=TARGETS) -> list[dict]:
    """Unique compile jobs: every configuration the dispatch launches, per target."""
    jobs = {}
    for capability in targets:
        for kernel in kernels:
            for launch in recorded_launches(kernel, capability):
                spec = job(launch, capability)
                jobs.setdefault(spec["key"], spec)
    return list(jobs.values())


# Tile sizes. For one kernel, target, argument types, warps and flags, registers and shared memory
# grow with each of them, so a configuration whose sizes are all <= another's fits if that one does.
SIZE_KEYS = ("BLOCK", "BLOCK_T", "BLOCK_H", "BT", "BK", "BV", "BA", "BB")


def _family(spec: dict) -> str:
    rest = {k: v for k, v in spec["config"].items() if k not in SIZE_KEYS}
    return json.dumps([spec["kernel"], spec["capability"], sorted(rest.items()), sorted(spec["types"].items())])


def _dominates(big: dict, small: dict) -> bool:
    return all(big["config"].get(k, 0) >= small["config"].get(k, 0) for k in SIZE_KEYS)


def frontier(specs: list[dict]) -> tuple[list[dict], dict[str, str]]:
    """The configurations no other in their family dominates, and, for each of the others, which one covers it."""
    families: dict[str, list[dict]] = {}
    for spec in specs:
        families.setdefault(_family(spec), []).append(spec)
    keep, covered = [], {}
    for members in families.values():
        top = [m for m in members if not any(o is not m and _dominates(o, m) and not _dominates(m, o) for o in members)]
        keep += top
        for m in members:
            if m not in top:
                covered[m["key"]] = next(t["key"] for t in top if _dominates(t, m))
    return keep, covered


def planted() -> list[dict]:
    """Configurations the dispatch must never choose, each compiled to show the judge rejects it.

    * the chunk kernel with 128-wide q/k and value tiles and 128-position chunks on a T4 (sm_75);
    * the softmax backward holding a 32k-column fp32 row in registers with 16 warps (what the
      dispatch chose before issue 17: it spills, the row and its gradient fill the register file);
    * the RoPE kernel with a 64 x 64 tile (4096 pairs) per program (before issue 17: 255
      registers, too few warps in flight for a streaming kernel).
    """
    import torch

    from labs import _backend
    from labs.attention import linear_attention
    from labs.rope import apply_rope
    from labs.scaling import scaled_softmax

    def first(fn, name, capability, **override):
        with _backend.record_launches((capability // 10, capability % 10)) as recorded:
            fn()
        launch = next(l for l in recorded if l.name == name)
        kwargs = dict(launch.kwargs, **override)
        spec = job(_backend.Launch(launch.kernel, launch.grid, launch.args, kwargs), capability)
        spec["planted"] = f"{name} on sm_{capability} with {override}"
        return spec

    q = torch.zeros(1, 2, 256, 128, dtype=torch.float16)
    x = torch.zeros(2, 16384, requires_grad=True)  # recorded at 16k columns (one sweep), planted at 32k
    r = torch.zeros(1, 2, 64, 128)
    return [
        first(lambda: linear_attention(q, q, q, causal=True, feature_map="identity", normalize=False,
                                       method="chunk", chunk_size=128), "_forward_kernel", 75, BT=128, BK=128, BV=128),
        first(lambda: scaled_softmax(x, 0.5).sum().backward(), "_backward_kernel", 90, BLOCK=32768),
        first(lambda: apply_rope(r, torch.arange(64), torch.ones(64, dtype=torch.float64)), "_rope_kernel", 75,
              BLOCK_T=64, BLOCK_H=64),
    ]


def compile_all(specs: list[dict], workers: int = 1) -> list[dict]:
    if workers <= 1:
        return [compile_job(spec) for spec in specs]
    with concurrent.futures.ProcessPoolExecutor(workers) as pool:
        return list(pool.map(compile_job, specs, chunksize=1))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="where to write the JSON records")
    parser.add_argument("--kernels", default=",".join(KERNELS))
    parser.add_argument("--targets", default=",".join(map(str, TARGETS)))
    parser.add_argument("--mode", choices=("frontier", "all"), default="frontier",
                        help="frontier: compile the largest configuration of each family (the others are "
                             "covered by it); all: compile every configuration")
    parser.add_argument("--planted", action="store_true", help="also compile the planted over-sized configurations")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        parser.error("unset TRITON_INTERPRET: interpreted kernels cannot be compiled")
    start = time.perf_counter()
    specs = plan(args.kernels.split(","), [int(t) for t in args.targets.split(",")])
    chosen, covered = frontier(specs) if args.mode == "frontier" else (specs, {})
    extra = planted() if args.planted else []
    planned = time.perf_counter() - start
    results = compile_all(chosen + extra, args.jobs)
    for spec, result in zip(chosen + extra, results):
        result["key"] = spec["key"]
        result["planted"] = spec.get("planted")
        result["problems"] = problems(result)
    summary = {"mode": args.mode, "planned_seconds": round(planned, 1), "seconds": round(time.perf_counter() - start, 1),
               "configurations": [{k: s[k] for k in ("key", "kernel", "capability", "config", "types")} for s in specs],
               "covered": covered, "results": results}
    with open(args.out, "w") as f:
        json.dump(summary, f, indent=1, default=str)
    bad = [r for r in results if r["problems"] and not r["planted"]]
    print(f"{len(specs)} configurations planned, {len(chosen)} compiled ({args.mode}) in "
          f"{time.perf_counter() - start:.0f} s; {len(bad)} with problems")
    for r in bad:
        print(f"  {r['kernel']} sm_{r['capability']} {r['config']} {r['types']}: {'; '.join(r['problems'])}")
    for r in results:
        if r["planted"]:
            print(f"  planted {r['planted']}: {'; '.join(r['problems']) or 'NO PROBLEM FOUND'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
