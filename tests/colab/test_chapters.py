"""Every chapter's notebook, as the book build wrote it, run as a reader would run it in Colab.

Run after `make book` (``make colab-check`` does both). Each notebook must read
like its page (no raw MyST; every glued number of the HTML page in its
markdown), run top to bottom in the Colab-like kernel with no network and no
repository, have every widget control redraw its figure, and leave every
package but the labs it installs as it was (ipywidgets still 7.7.1).
"""

from pathlib import Path

import nbformat
import pytest
import yaml

from colab_kernel import ROOT, run_notebook, static_problems

HTML = ROOT / "_build" / "html"
CHAPTERS = [entry["file"] for entry in yaml.safe_load((ROOT / "_toc.yml").read_text())["chapters"]]


def built(chapter: str) -> tuple[nbformat.NotebookNode, str]:
    notebook, page = HTML / "notebooks" / f"{chapter}.ipynb", HTML / f"{chapter}.html"
    assert notebook.exists() and page.exists(), f"no built notebook or page for {chapter}: run `make book` first"
    return nbformat.read(notebook, as_version=4), page.read_text(encoding="utf-8")


def test_there_are_chapters():
    assert CHAPTERS


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[Path(c).name for c in CHAPTERS])
def test_chapter_notebook_reads_like_its_page(chapter):
    notebook, page = built(chapter)
    assert not static_problems(notebook, page), "\n".join(static_problems(notebook, page))
    assert 'href="../notebooks/' in page and ".ipynb" in page, "the page offers no notebook download"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[Path(c).name for c in CHAPTERS])
def test_chapter_runs_as_in_colab(colab_env, chapter, tmp_path):
    notebook, _ = built(chapter)
    report = run_notebook(notebook, tmp_path)
    print(f"{chapter}: {report.summary()}")
    assert report.ok, f"{chapter} in the Colab-like kernel:\n{report.summary()}"
    assert report.facts["ipywidgets"] == "7.7.1" and report.facts["ipywidgets_module"] == "7.7.1"
    assert report.facts["labs_file"].startswith(str(tmp_path)), "labs must come from the notebook's own wheel"
