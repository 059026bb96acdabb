"""Every Triton kernel, compiled for sm_75 (T4), sm_80 (A100) and sm_90 (H100/H200) without a GPU.

``kernel_compile.py`` (beside this file) records what the dispatch launches
for each target, forward and backward, over inputs that reach every branch of
the launchers' configuration choices, and compiles it with Triton's compiler
and the ptxas that ships with Triton. Here the records are judged: no register
spills, shared memory within the target's limit, at most 128 registers for the
memory-bound kernels, no TF32 dots, and the planted over-sized configurations
rejected.

By default (``make test``) it compiles the *frontier*: for each family of
configurations (one kernel, target, argument types, warps and flags) the ones
whose tile sizes no other member's exceed; registers and shared memory grow
with tile sizes, so they cover the rest. ``LABS_COMPILE=all`` compiles every
configuration. Both run in a subprocess: this directory's conftest turns every
kernel into the CPU interpreter's, which cannot be compiled.
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

kernel_compile = pytest.importorskip("kernel_compile")
triton = pytest.importorskip("triton")

HARNESS = Path(__file__).with_name("kernel_compile.py")
KERNEL_FILES = {
    "softmax": "labs.scaling.triton_softmax",
    "rope": "labs.rope.triton_rope",
    "attention": "labs.attention.triton_chunk",
    "recurrent": "labs.recurrent.triton_chunk",
    "scan": "labs.ssm.triton_scan",
}


def _internals_missing():
    try:
        from triton.backends.compiler import GPUTarget  # noqa: F401
        from triton.compiler import ASTSource, make_backend  # noqa: F401
        from triton.runtime.jit import create_function_from_signature  # noqa: F401
    except ImportError as error:
        return f"this triton ({triton.__version__}) lacks the compiler internals the harness uses: {error}"
    return None


def _compile_everything():
    missing = _internals_missing()
    if missing:
        pytest.skip(missing)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "compiled.json"
        env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
        mode = os.environ.get("LABS_COMPILE", "frontier")
        done = subprocess.run([sys.executable, str(HARNESS), "--out", str(out), "--mode", mode, "--planted"],
                              env=env, capture_output=True, text=True, timeout=3600)
        assert done.returncode == 0, f"the compile harness failed:\n{done.stdout}\n{done.stderr[-5000:]}"
        print(done.stdout)
        return json.loads(out.read_text())


def _describe(result):
    return f"{result['kernel']} sm_{result['capability']} {result['config']} {result['types']}"


def test_compiled_kernels_fit_their_targets():
    """One test (one compile run, on one worker under pytest-xdist) that checks, and lists, everything:

    * every kernel file is compiled for every target, and no configuration has a problem (spills,
      shared memory over the target's limit, over 128 registers in a memory-bound kernel);
    * every configuration the dispatch plans is compiled, or covered by a larger one of its family;
    * the planted over-sized configurations are rejected, and the dispatch never chooses them;
    * no fp32 dot runs at TF32, and 16-bit inputs reach their dots as 16-bit;
    * bf16 is never launched for sm_75 (it is for sm_80).
    """
    compiled = _compile_everything()
    results = [r for r in compiled["results"] if not r["planted"]]
    failures = []

    for module in KERNEL_FILES.values():
        for target in (75, 80, 90):
            if not any(r["capability"] == target and r["kernel"].endswith("@" + module) for r in results):
                failures.append(f"nothing from {module} was compiled for sm_{target}")
    failures += [f"{_describe(r)}: {'; '.join(r['problems'])}" for r in results if r["problems"]]

    done = {r["key"] for r in results}
    missing = [c for c in compiled["configurations"] if c["key"] not in done and c["key"] not in compiled["covered"]]
    failures += [f"planned but neither compiled nor covered: {c['kernel']} sm_{c['capability']} {c['config']}"
                 for c in missing]

    planted = [r for r in compiled["results"] if r["planted"]]
    if len(planted) != 3:
        failures.append(f"expected 3 planted configurations, got {len(planted)}")
    chosen = {(c["kernel"], c["capability"], json.dumps(c["config"], sort_keys=True))
              for c in compiled["configurations"]}
    for result in planted:
        if not result["problems"]:
            failures.append(f"the judge accepted the planted configuration {result['planted']}")
        if (result["kernel"], result["capability"], json.dumps(result["config"], sort_keys=True)) in chosen:
            failures.append(f"the dispatch chooses the planted configuration {result['planted']}")

    dots = [(r, d) for r in results for d in r.get("dots", [])]
    if not dots:
        failures.append("no tt.dot found in the chunk kernels' IR")
    for result, (a, b, precision) in dots:
        if a != b:
            failures.append(f"{_describe(result)}: mixed dot operands {a} x {b}")
        if a == "f32" and precision != "ieee":
            failures.append(f"{_describe(result)}: an fp32 dot at {precision} precision")
        pointer = result["types"].get("q_ptr") or result["types"].get("a_ptr")
        if pointer in ("*fp16", "*bf16") and a not in ("f16", "bf16"):
            failures.append(f"{_describe(result)}: a 16-bit input dotted as {a}")

    types_at = {cc: [c["types"] for c in compiled["configurations"] if c["capability"] == cc] for cc in (75, 80)}
    if any("*bf16" in t.values() for t in types_at[75]):
        failures.append("a kernel is launched with bf16 tensors for sm_75 (no bf16 tensor cores on a T4)")
    if not any("*bf16" in t.values() for t in types_at[80]):
        failures.append("no bf16 launch planned for sm_80: the cases do not reach bf16")

    assert not failures, f"{len(failures)} problems:\n" + "\n".join(failures)


# --- The judge itself, on made-up reports (no compiler needed) ---------------------------------


def _report(**changes):
    report = {"kernel": "_forward_kernel@labs.attention.triton_chunk", "capability": 75,
              "config": {"num_warps": 4}, "types": {}, "registers": 96, "spill_stores": 0, "spill_loads": 0,
              "shared": 32 * 1024}
    report.update(changes)
    return report


def test_judge_accepts_a_clean_kernel():
    assert kernel_compile.problems(_report()) == []


@pytest.mark.parametrize("changes, expected", [
    ({"spill_stores": 8, "spill_loads": 8}, "register spills"),
    ({"shared": 65 * 1024}, "shared memory 66560 B > 65536 B"),
    ({"capability": 90, "shared": 228 * 1024}, "shared memory"),
    ({"registers": 255, "config": {"num_warps": 16}}, "registers per SM"),
    ({"kernel": "_rope_kernel@labs.rope.triton_rope", "registers": 160}, "memory-bound"),
    ({"error": "CompilationError: boom"}, "does not compile"),
])
def test_judge_rejects(changes, expected):
    found = kernel_compile.problems(_report(**changes))
    assert any(expected in p for p in found), found


def test_ptxas_report_is_parsed():
    log = ("ptxas info    : Function properties for k\n"
           "    40 bytes stack frame, 36 bytes spill stores, 44 bytes spill loads\n"
           "ptxas info    : Used 255 registers, used 1 barriers, 40 bytes cumulative stack size\n")
    assert kernel_compile._ptxas_report(log) == {"registers": 255, "spill_stores": 36, "spill_loads": 44,
                                                  "stack": 40}
    with pytest.raises(RuntimeError, match="could not read ptxas"):
        kernel_compile._ptxas_report("nothing here")


def test_frontier_keeps_the_largest_of_each_family():
    def spec(key, warps, **sizes):
        return {"key": key, "kernel": "k", "capability": 80, "types": {"x": "*fp16"},
                "config": {"num_warps": warps, "FP64": False, **sizes}}

    specs = [spec("a", 4, BLOCK=256), spec("b", 4, BLOCK=2048), spec("c", 8, BLOCK=4096),
             spec("d", 4, BLOCK_T=64, BLOCK_H=16), spec("e", 4, BLOCK_T=16, BLOCK_H=64)]
    keep, covered = kernel_compile.frontier(specs)
    assert {s["key"] for s in keep} == {"b", "c", "d", "e"}
    assert covered == {"a": "b"}


def test_ttir_dots_are_read():
    ttir = ("%5 = tt.dot %3, %4, %cst, inputPrecision = tf32 : tensor<16x16xf32> * tensor<16x16xf32> -> "
            "tensor<16x16xf32>\n%9 = tt.dot %7, %8, %5 : tensor<64x32xf16> * tensor<32x64xf16> -> tensor<64x64xf32>")
    assert kernel_compile.dots(ttir) == [["f32", "f32", "tf32"], ["f16", "f16", "ieee"]]
