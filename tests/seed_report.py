"""Summarise what ``make seeds`` logged: per seed and chapter, how many checks ran and which failed.

Usage: ``python tests/seed_report.py _build/seeds`` (one folder per seed, one
``<chapter>.jsonl`` per chapter, written by ``labs.derive.judge``). Exits 1 if
any check failed or a chapter logged nothing (it did not run to its checks).
"""

import json
import sys
from pathlib import Path


def main(root: Path) -> int:
    chapters = sorted({p.stem for p in root.glob("*/*.jsonl")} | {p.stem for p in (Path(__file__).parents[1] / "book").glob("*.md") if p.stem != "intro"})
    bad = 0
    for seed_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        print(f"LABS_SEED={seed_dir.name}")
        for chapter in chapters:
            log = seed_dir / f"{chapter}.jsonl"
            rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
            failed = [r for r in rows if not r["ok"]]
            status = "no checks logged" if not rows else f"{len(rows) - len(failed)}/{len(rows)} checks hold"
            print(f"  {chapter:<20} {status}")
            for row in failed:
                print(f"      FAILS: {row['step']}")
            bad += len(failed) + (not rows)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "_build/seeds")))
