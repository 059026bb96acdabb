"""Run every benchmark script in this folder (``make bench``); flags go to every script.

``make bench`` records a full run; ``make bench BENCH_FLAGS=--quick`` (or
``python benchmarks/run_all.py --quick``) checks that every script runs, in
seconds, and records nothing. See ``python benchmarks/rope.py --help`` for the
flags the runner (``labs.bench.run_benchmark``) gives every script.
"""

import subprocess
import sys
from pathlib import Path

here = Path(__file__).parent
scripts = sorted(p for p in here.glob("*.py") if p.name != "run_all.py")
failed = [p.name for p in scripts if subprocess.run([sys.executable, str(p), *sys.argv[1:]]).returncode]
sys.exit(f"failed: {', '.join(failed)}" if failed else 0)
