"""Execute every chapter, two at a time, into the cache the book build then reads.

The build (``jupyter-book build``, execution mode ``cache``) executes a chapter
only when the cache holds no run of its current code; this script fills that
cache first, running chapters in parallel worker processes, each with its own
kernel, so that a 2-core machine executes the book in about half the time of
one chapter after another. Sphinx's own parallel build cannot do this: it
executes chapters in forked workers, where the allreduce chapter's process
group fails.

Each chapter is read exactly as myst-nb reads it (the cache matches a notebook
by the hash of its code cells), executed as myst-nb executes it (in ``book/``,
no errors allowed, the build's timeout) with ``LABS_BOOK_BUILD=1``, and cached.
The cache is emptied first, so every build re-executes every chapter. A
chapter that fails prints its traceback, and the script exits with status 1.

Usage: ``python book/_ext/execute_chapters.py CACHE_DIR [--jobs N] [--timeout S] CHAPTER.md ...``
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

# The myst extensions of _config.yml's `parse:` (they decide how the text splits into cells).
MYST_EXTENSIONS = {"amsmath", "dollarmath", "colon_fence", "deflist", "substitution"}


def read_chapter(path: Path):
    """The chapter as the build's myst-nb reads it: a notebook whose code cells hash the same."""
    from myst_nb.core.read import read_myst_markdown_notebook
    from myst_parser.config.main import MdParserConfig

    config = MdParserConfig(enable_extensions=MYST_EXTENSIONS)
    return read_myst_markdown_notebook(path.read_text(encoding="utf-8"), config=config, add_source_map=True,
                                       path=str(path))


def execute_chapter(path: str, timeout: int):
    """Execute one chapter in its own kernel: (path, executed notebook or None, seconds, traceback or None)."""
    from jupyter_cache.executors.utils import single_nb_execution

    os.environ["LABS_BOOK_BUILD"] = "1"
    chapter = Path(path)
    nb = read_chapter(chapter)
    result = single_nb_execution(nb, cwd=str(chapter.parent.resolve()), allow_errors=False, timeout=timeout,
                                 meta_override=True)
    return path, (None if result.err else nb), result.time, result.exc_string if result.err else None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cache", type=Path)
    parser.add_argument("chapters", nargs="+", type=Path)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=600)
    args = parser.parse_args(argv)
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    shutil.rmtree(args.cache, ignore_errors=True)
    cache = get_cache(str(args.cache))
    # Longest first, so that the last chapter to start is a short one.
    chapters = sorted(args.chapters, key=lambda p: -p.stat().st_size)
    failed, start = [], time.time()
    spawn = multiprocessing.get_context("spawn")  # fresh workers: no forked torch or ZMQ state
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=spawn) as pool:
        futures = [pool.submit(execute_chapter, str(p), args.timeout) for p in chapters]
        for future in as_completed(futures):
            path, nb, seconds, error = future.result()
            if error is not None:
                failed.append(path)
                print(f"[execute] {path} FAILED after {seconds:.0f} s\n{error}", flush=True)
                continue
            cache.cache_notebook_bundle(CacheBundleIn(nb, path, data={"execution_seconds": seconds}),
                                        check_validity=False, overwrite=True)
            print(f"[execute] {path}: {seconds:.0f} s", flush=True)
    print(f"[execute] {len(chapters) - len(failed)} of {len(chapters)} chapters in {time.time() - start:.0f} s "
          f"({args.jobs} at a time)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
