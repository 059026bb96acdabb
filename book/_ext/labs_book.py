"""Sphinx extension for the book build.

* Sets ``LABS_BOOK_BUILD=1`` so the kernels that execute the chapters (they
  inherit this process's environment) pre-render widgets and hide progress bars.
* Writes a Colab-ready notebook for every chapter to ``notebooks/<page>.ipynb``
  in the HTML output and points the page's Colab button at it: Colab cannot open
  the MyST ``.md`` source that the theme's default button links to.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat

from labs.book import colab_notebook
from labs.provenance import head_commit

os.environ["LABS_BOOK_BUILD"] = "1"


def _colab_buttons(context):
    for group in context.get("header_buttons", []):
        for button in group.get("buttons", []) if group.get("label") == "launch-buttons" else []:
            if button.get("text") == "Colab":
                yield button


def _point_colab_at_notebook(app, pagename, templatename, context, doctree):
    buttons = list(_colab_buttons(context))
    if not buttons:
        return
    repo_url = app.config.html_theme_options["repository_url"].rstrip("/")
    relpath = f"notebooks/{pagename}.ipynb"
    notebook = colab_notebook(app.env.doc2path(pagename), repo_url=repo_url, commit=app.config.labs_commit)
    target = Path(app.outdir) / relpath
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, target)
    org_repo = repo_url.split("github.com/")[-1]
    for button in buttons:
        button["url"] = f"https://colab.research.google.com/github/{org_repo}/blob/{app.config.labs_colab_branch}/{relpath}"


def setup(app):
    app.add_config_value("labs_colab_branch", "gh-pages", "html")
    app.add_config_value("labs_commit", head_commit() or "main", "html")
    app.connect("html-page-context", _point_colab_at_notebook, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
