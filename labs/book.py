"""Helpers that connect a chapter to the book build, and degrade gracefully elsewhere.

The HTML build sets ``LABS_BOOK_BUILD=1`` for the kernels it starts (see
``book/_ext/labs_book.py``): there, progress bars stay quiet and widgets are
pre-rendered. In Jupyter or Colab everything is live.

Only what chapters call at run time lives here; the build's own tooling (the
Colab notebook generator) is in ``book/_ext``.
"""

from __future__ import annotations

import os

import numpy as np
import torch


def in_book_build() -> bool:
    """True while the page is being executed for the static HTML book."""
    return os.environ.get("LABS_BOOK_BUILD", "0") == "1"


def _plain(value):
    """A NumPy or 0-d torch scalar as the Python number it holds: NumPy 2 prints ``np.float64(0.5)``,
    which a ``{glue:text}`name:.2f``` format cannot read."""
    if isinstance(value, np.generic) or (isinstance(value, torch.Tensor) and value.numel() == 1 and value.ndim == 0):
        return value.item()
    return value


def glue(name: str, value, *, display: bool = False):
    """Glue ``value`` under ``name`` for the ``{glue:text}`` role (myst-nb).

    Returns None, so a cell that ends in ``glue(...)`` prints nothing on the page.
    Colab has no myst-nb: there the call does nothing, so a chapter runs unchanged.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"glue: name must be an identifier-like string, got {name!r}")
    value = _plain(value)
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        return None
    myst_glue(name, value, display=display)
    return None


def progress(iterable, **tqdm_kwargs):
    """Wrap a loop in a tqdm progress bar in a live kernel; no bar in the book build."""
    if in_book_build():
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, **tqdm_kwargs)
