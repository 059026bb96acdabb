from pathlib import Path

import pytest

import labs
from labs.book import colab_notebook, in_book_build, progress
from labs.exercises import check_formula

CHAPTER = Path(__file__).resolve().parents[2] / "book" / "attention_scaling.md"


def test_glue_returns_value_and_checks_name():
    assert labs.glue("a_number", 3.5) == 3.5
    with pytest.raises(ValueError, match="glue: name must be"):
        labs.glue("not a name", 1)


def test_progress_is_silent_in_the_book_build(monkeypatch):
    items = [1, 2, 3]
    monkeypatch.setenv("LABS_BOOK_BUILD", "1")
    assert in_book_build() and progress(items) is items
    monkeypatch.setenv("LABS_BOOK_BUILD", "0")
    assert list(progress(items, disable=True)) == items and progress(items) is not items


def test_colab_notebook_installs_labs_at_the_commit():
    nb = colab_notebook(CHAPTER, repo_url="https://github.com/org/book", commit="abc123")
    setup = nb.cells[0]
    assert setup.cell_type == "code" and "google.colab" in setup.source
    assert '"checkout", "-q", "abc123"' in setup.source and "https://github.com/org/book" in setup.source
    assert "jupytext" not in nb.metadata and nb.metadata["kernelspec"]["name"] == "python3"
    assert any("labs.seed(0)" in cell.source for cell in nb.cells[1:])


def test_check_formula_reports_each_outcome(capsys):
    import sympy as sp

    n = sp.Symbol("n")
    points = [dict(n=2), dict(n=5)]
    assert not check_formula(None, lambda n: n, points)
    assert "Not attempted" in capsys.readouterr().out
    assert check_formula(n, lambda n: n, points)
    assert not check_formula(n + 1, lambda n: n, points)
    assert "Not quite" in capsys.readouterr().out
    assert not check_formula(n * sp.Symbol("m"), lambda n: n, points)
    assert "does not define: ['m']" in capsys.readouterr().out
    assert not check_formula(object(), lambda n: n, points)
