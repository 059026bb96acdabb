"""Helpers that connect a chapter to the book build, and degrade gracefully elsewhere.

The HTML build sets ``LABS_BOOK_BUILD=1`` for the kernels it starts (see
``book/_ext/labs_book.py``): there, progress bars stay quiet and widgets are
pre-rendered. In Jupyter or Colab everything is live.
"""

from __future__ import annotations

import os


def in_book_build() -> bool:
    """True while the page is being executed for the static HTML book."""
    return os.environ.get("LABS_BOOK_BUILD", "0") == "1"


def glue(name: str, value, *, display: bool = False):
    """Glue ``value`` under ``name`` for the ``{glue:text}`` role (myst-nb).

    Colab has no myst-nb: there the call does nothing and returns ``value``, so
    a chapter runs unchanged.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"glue: name must be an identifier-like string, got {name!r}")
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        return value
    myst_glue(name, value, display=display)
    return value


def progress(iterable, **tqdm_kwargs):
    """Wrap a loop in a tqdm progress bar in a live kernel; no bar in the book build."""
    if in_book_build():
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, **tqdm_kwargs)


COLAB_SETUP = '''\
# Colab only: fetch the book at the commit this notebook was built from and
# install its `labs` package (lower-bound dependencies, so Colab's own torch stays).
import os, subprocess, sys
if "google.colab" in sys.modules and not os.path.isdir("/content/book"):
    subprocess.run(["git", "clone", "-q", "{repo_url}", "/content/book"], check=True)
    subprocess.run(["git", "-C", "/content/book", "checkout", "-q", "{commit}"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "/content/book"], check=True)
    sys.path.insert(0, "/content/book")
'''


def colab_notebook(source, *, repo_url: str, commit: str):
    """The chapter at ``source`` (MyST markdown) as an ``.ipynb`` for Colab.

    Its first cell installs ``labs`` from ``repo_url`` pinned to ``commit``, and
    only when running in Colab.
    """
    import jupytext
    import nbformat

    notebook = jupytext.read(source)
    setup = nbformat.v4.new_code_cell(COLAB_SETUP.format(repo_url=repo_url, commit=commit))
    setup.metadata["tags"] = ["colab-setup"]
    notebook.cells.insert(0, setup)
    notebook.metadata.pop("jupytext", None)
    notebook.metadata.setdefault("accelerator", "GPU")
    return notebook
