"""Sphinx extension for the book build.

* Sets ``LABS_BOOK_BUILD=1`` so the kernels that execute the chapters (they
  inherit this process's environment) pre-render widgets and hide progress bars.
* Writes a self-contained notebook for every chapter to
  ``notebooks/<page>.ipynb`` in the HTML output (``colab_notebook``): it carries
  the ``labs`` this build was made from as an embedded wheel, and its markdown
  shows the values this build computed. The chapter's Colab button opens it
  (Colab cannot open the MyST ``.md`` that the theme's default button links to),
  and the page's download menu offers it.

The Colab button's target is ``repository.url`` in ``_config.yml`` plus the
branch ``labs_colab_branch`` (``sphinx.config``) where the built HTML is
published. The notebook itself depends on neither.

Problems converting a page (an unknown role, a glued value the build did not
produce) are Sphinx warnings, so the ``-W`` build fails on them.
"""

from __future__ import annotations

import json
import os
import posixpath
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ["LABS_BOOK_BUILD"] = "1"

import jupytext  # noqa: E402
import nbformat  # noqa: E402
from sphinx.util import logging  # noqa: E402

from colab_citations import Bibliography  # noqa: E402
from colab_notebook import colab_notebook, lower_bounds, raw_myst_in_notebook  # noqa: E402
from labs_wheel import build_wheel  # noqa: E402
from myst_to_markdown import Context, Ref  # noqa: E402

logger = logging.getLogger(__name__)
NOTEBOOKS = "notebooks"


def _git(root: Path, *args: str) -> str:
    try:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def checkout_state(root: Path) -> tuple[str, bool]:
    """(full commit hash or "", whether tracked files have uncommitted changes)."""
    commit = _git(root, "rev-parse", "HEAD")
    return commit, bool(commit and _git(root, "status", "--porcelain", "--untracked-files=no"))


def is_chapter(path: Path) -> bool:
    """A MyST notebook (it names a kernel), as opposed to a plain page such as the intro."""
    return path.suffix == ".md" and "kernelspec" in jupytext.read(path).metadata


def _prepare(app) -> None:
    root = Path(app.srcdir)
    commit, dirty = checkout_state(root)
    if app.config.labs_commit:
        commit, dirty = app.config.labs_commit, False
    if not commit:
        logger.warning("Colab notebooks: not a git checkout, so the embedded labs carries no commit",
                       type="labs", subtype="colab")
    app.labs_wheel = build_wheel(root, commit, dirty=dirty)
    app.labs_requirements = lower_bounds(root / "pyproject.toml")
    bibfiles = [root / name for name in getattr(app.config, "bibtex_bibfiles", [])]
    app.labs_bibliography = Bibliography.from_files(bibfiles) if bibfiles else None


def _output_folder(app) -> Path:
    config = getattr(app.env, "mystnb_config", None)
    return Path(getattr(config, "output_folder", "") or Path(app.outdir).parent / "jupyter_execute")


def _glue(app, docname: str) -> dict:
    """The values page ``docname`` glued when the build executed it (myst-nb saves them next to the notebook)."""
    path = _output_folder(app) / f"{docname}.glue.json"
    if not path.is_file():
        return {}
    return {key: output.get("data", {}) for key, output in json.loads(path.read_text(encoding="utf-8")).items()}


def _resolver(app, pagename: str):
    env = app.env

    def docname_of(target: str) -> str:
        target = target.strip()
        return target.lstrip("/") if target.startswith("/") else posixpath.normpath(
            posixpath.join(posixpath.dirname(pagename), target))

    def resolve(label: str) -> Ref | None:
        if label.startswith("doc:"):
            docname = docname_of(label[4:])
            title = env.titles.get(docname)
            return Ref("document", None, title.astext()) if title is not None else None
        std = env.get_domain("std")
        if label in std.labels:
            docname, labelid, title = std.labels[label]
            for kind, numbers in env.toc_fignumbers.get(docname, {}).items():
                if labelid in numbers:
                    return Ref(kind, ".".join(map(str, numbers[labelid])), title or None)
            return Ref("section", None, title or None)
        equations = getattr(env.get_domain("math"), "equations", {})
        if label in equations:
            return Ref("equation", str(equations[label][1]))
        return None

    return resolve, lambda doc: _glue(app, docname_of(doc))


def _write_notebook(app, pagename: str) -> str:
    source = Path(app.env.doc2path(pagename))
    resolve, glue_for = _resolver(app, pagename)
    ctx = Context(source=source, glue=_glue(app, pagename), bibliography=app.labs_bibliography,
                  resolve=resolve, glue_for=glue_for)
    fmt = getattr(app.config, "numfig_format", None)
    if fmt:
        ctx.numfig_format = {**ctx.numfig_format, **fmt}
    notebook = colab_notebook(source, wheel=app.labs_wheel, requirements=app.labs_requirements, ctx=ctx)
    for warning in ctx.warnings:
        logger.warning(f"Colab notebook: {warning}", location=pagename, type="labs", subtype="colab")
    for index, raw in raw_myst_in_notebook(notebook):
        logger.warning(f"Colab notebook: raw MyST left in markdown cell {index}: {raw}", location=pagename,
                       type="labs", subtype="colab")
    relpath = f"{NOTEBOOKS}/{pagename}.ipynb"
    target = Path(app.outdir) / relpath
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, target)
    return relpath


def _on_page(app, pagename, templatename, context, doctree):
    if doctree is None or pagename not in app.env.found_docs or not is_chapter(Path(app.env.doc2path(pagename))):
        return
    relpath = _write_notebook(app, pagename)
    repo_url = (app.config.html_theme_options.get("repository_url") or "").rstrip("/")
    org_repo = repo_url.split("github.com/")[-1]
    for group in context.get("header_buttons", []):
        if group.get("label") == "launch-buttons" and org_repo:
            for button in group.get("buttons", []):
                if button.get("text") == "Colab":
                    button["url"] = (f"https://colab.research.google.com/github/{org_repo}/blob/"
                                     f"{app.config.labs_colab_branch}/{relpath}")
        if group.get("label") == "download-buttons":
            # In place of the theme's notebook entry (the executed MyST source, which shows raw roles).
            group["buttons"][:] = [b for b in group["buttons"] if b.get("label") != "download-notebook-button"]
            group["buttons"].insert(0, {
                "type": "link",
                "url": context["pathto"](relpath, 1),
                "text": ".ipynb",
                "icon": "fas fa-code",
                "tooltip": "Download this chapter as a notebook (runs in Colab or Jupyter)",
                "label": "download-notebook-button",
            })


def setup(app):
    app.add_config_value("labs_colab_branch", "gh-pages", "html")
    # The commit stamped on the embedded labs; "" means the checkout's HEAD (with .dirty if modified).
    app.add_config_value("labs_commit", "", "html")
    app.connect("builder-inited", _prepare)
    # The notebook's entry in the download menu downloads it (rather than showing its JSON).
    # Added here, before the builder exists, so that it is on each page once.
    app.add_js_file(None, body=(
        "document.addEventListener('DOMContentLoaded',function(){document.querySelectorAll("
        "'a.btn-download-notebook-button').forEach(function(a){a.setAttribute('download','')})});"
    ))
    app.connect("html-page-context", _on_page, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
