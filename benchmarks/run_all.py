"""Run every benchmark script in this folder (``make bench``)."""

import subprocess
import sys
from pathlib import Path

here = Path(__file__).parent
scripts = sorted(p for p in here.glob("*.py") if p.name != "run_all.py")
failed = [p.name for p in scripts if subprocess.run([sys.executable, str(p), *sys.argv[1:]]).returncode]
sys.exit(f"failed: {', '.join(failed)}" if failed else 0)
