"""The last step of ``make gpu-check``: what the CUDA tests found and what the benchmarks recorded.

Reads the CUDA tests' JUnit report (``<dir>/cuda-tests.xml``) and, for every
benchmark, the records its run appended to ``benchmarks/results/`` since
``<dir>/started`` (written when the target began). Exits 1 when a CUDA test
failed, so the make target fails after the benchmarks have still been recorded.

    python tests/cuda/summary.py _build/gpu-check
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def test_counts(report: Path) -> dict[str, int]:
    """tests / failures / errors / skipped from a JUnit XML report (all zero when there is none)."""
    if not report.exists():
        return {"tests": 0, "failures": 0, "errors": 0, "skipped": 0, "missing": 1}
    root = ET.parse(report).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    return {key: sum(int(s.get(key, 0)) for s in suites) for key in ("tests", "failures", "errors", "skipped")}


def failed_tests(report: Path) -> list[str]:
    if not report.exists():
        return []
    root = ET.parse(report).getroot()
    return [f"{case.get('classname')}::{case.get('name')}" for case in root.iter("testcase")
            if case.find("failure") is not None or case.find("error") is not None]


def main(argv: list[str]) -> int:
    import torch

    from labs import bench

    out = Path(argv[1] if len(argv) > 1 else "_build/gpu-check")
    kind = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.cuda.get_device_name() if kind == "cuda" else "CPU (no CUDA device)"
    counts = test_counts(out / "cuda-tests.xml")
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    print(f"gpu-check on {device}: torch {torch.__version__}")
    if counts.get("missing"):
        print("CUDA tests: no report (did pytest run?)")
    else:
        print(f"CUDA tests: {passed} passed, {counts['failures'] + counts['errors']} failed, "
              f"{counts['skipped']} skipped (of {counts['tests']})")
    for name in failed_tests(out / "cuda-tests.xml"):
        print(f"  FAILED {name}")
    started = (out / "started").read_text().strip() if (out / "started").exists() else ""
    if kind == "cpu":
        print("benchmarks: run once each on the CPU (--quick), nothing recorded")
    for name in bench.BENCHMARKS:
        records = [r for r in bench.load_results(name) if r.get("date", "") >= started and r.get("device_kind") == kind]
        records = bench.latest_run(records, device_kind=kind)
        if not records:
            if kind == "cuda":
                print(f"\n{name}: no records from this run")
            continue
        print(f"\n{name}: {len(records)} records, run {records[0]['run_id']} on {records[0]['device']}")
        print(bench.text_table(records))
    failed = counts["failures"] + counts["errors"] > 0 or counts.get("missing")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
