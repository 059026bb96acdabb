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
from pathlib import Path

import pytest

kernel_compile = pytest.importorskip("kernel_compile")
triton = pytest.importorskip("triton")

HARNESS = Path(__file__).with_name("kernel_compile.py")
KERNEL_FILES = {
    "softmax": "labs.scaling.triton_softmax",
    "rope": "labs.rope.triton_rope",
    "attention": "labs.attention.triton_chunk",
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


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    missing = _internals_missing()
    if missing:
        pytest.skip(missing)
    out = tmp_path_factory.mktemp("compile") / "compiled.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    mode = os.environ.get("LABS_COMPILE", "frontier")
    done = subprocess.run([sys.executable, str(HARNESS), "--out", str(out), "--mode", mode, "--planted"],
                          env=env, capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, f"the compile harness failed:\n{done.stdout}\n{done.stderr[-5000:]}"
    print(done.stdout)
    return json.loads(out.read_text())


def _describe(result):
    return f"{result['kernel']} sm_{result['capability']} {result['config']} {result['types']}"


@pytest.mark.parametrize("target", [75, 80, 90])
@pytest.mark.parametrize("kernel", sorted(KERNEL_FILES))
def test_every_configuration_fits_its_target(compiled, kernel, target):
    module = KERNEL_FILES[kernel]
    results = [r for r in compiled["results"]
               if not r["planted"] and r["capability"] == target and r["kernel"].endswith("@" + module)]
    assert results, f"nothing from {module} was compiled for sm_{target}"
    bad = [f"{_describe(r)}: {'; '.join(r['problems'])}" for r in results if r["problems"]]
    assert not bad, "configurations the dispatch can choose that the target cannot run well:\n" + "\n".join(bad)


def test_every_planned_configuration_is_compiled_or_covered(compiled):
    done = {r["key"] for r in compiled["results"] if not r["planted"]}
    missing = [c for c in compiled["configurations"] if c["key"] not in done and c["key"] not in compiled["covered"]]
    assert not missing, f"{len(missing)} configurations neither compiled nor covered, e.g. {missing[0]}"
    assert all(cover in done for cover in compiled["covered"].values())


def test_planted_oversized_configurations_are_rejected_and_never_chosen(compiled):
    planted = [r for r in compiled["results"] if r["planted"]]
    assert len(planted) == 3
    for result in planted:
        assert result["problems"], f"the judge accepted a planted configuration: {result['planted']}"
    chosen = {(c["kernel"], c["capability"], json.dumps(c["config"], sort_keys=True))
              for c in compiled["configurations"]}
    for result in planted:
        key = (result["kernel"], result["capability"], json.dumps(result["config"], sort_keys=True))
        assert key not in chosen, f"the dispatch chooses the planted configuration {result['planted']}"


def test_no_dot_rounds_float32_operands_to_tf32(compiled):
    """Every fp32 x fp32 dot asks for IEEE precision; 16-bit inputs reach the dots as 16-bit."""
    dots = [(r, d) for r in compiled["results"] if not r["planted"] for d in r.get("dots", [])]
    assert dots, "no tt.dot found in the chunk kernels' IR"
    for result, (a, b, precision) in dots:
        assert a == b, f"{_describe(result)}: mixed dot operands {a} x {b}"
        if a == "f32":
            assert precision == "ieee", f"{_describe(result)}: an fp32 dot at {precision} precision"
        pointer = result["types"].get("q_ptr") or result["types"].get("a_ptr")
        if pointer in ("*fp16", "*bf16"):
            assert a in ("f16", "bf16"), f"{_describe(result)}: a 16-bit input dotted as {a}"


def test_bfloat16_dispatch_is_excluded_on_sm75(compiled):
    """Colab's T4 has no bf16 tensor cores: no kernel is launched with bf16 tensors for sm_75."""
    sm75 = [c for c in compiled["configurations"] if c["capability"] == 75]
    assert sm75 and not any("*bf16" in c["types"].values() for c in sm75)
    assert any("*bf16" in c["types"].values() for c in compiled["configurations"] if c["capability"] == 80)


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
