import subprocess
import sys

import pytest

import labs
from labs.book import in_book_build, progress
from labs.exercises import check_formula


def test_glue_returns_nothing_and_checks_name():
    """A cell that ends in glue(...) must not print the value on the page."""
    assert labs.glue("a_number", 3.5) is None
    with pytest.raises(ValueError, match="glue: name must be"):
        labs.glue("not a name", 1)


def test_glue_stores_numpy_and_torch_scalars_as_python_numbers(monkeypatch):
    """NumPy 2 writes np.float64(0.5) as its text; a {glue:text}`x:.2f` format could not read it."""
    import numpy as np
    import torch

    stored = {}
    monkeypatch.setattr("myst_nb.glue", lambda name, value, display=False: stored.update({name: value}))
    for name, value in {"a": np.float64(0.5), "b": np.int64(3), "c": torch.tensor(1.5), "d": 2.5}.items():
        labs.glue(name, value)
    assert stored == {"a": 0.5, "b": 3, "c": 1.5, "d": 2.5}
    assert all(type(v) in (float, int) for v in stored.values())


def test_progress_is_silent_in_the_book_build(monkeypatch):
    items = [1, 2, 3]
    monkeypatch.setenv("LABS_BOOK_BUILD", "1")
    assert in_book_build() and progress(items) is items
    monkeypatch.setenv("LABS_BOOK_BUILD", "0")
    assert list(progress(items, disable=True)) == items and progress(items) is not items


def test_glue_without_myst_nb_does_nothing(monkeypatch):
    """Colab has no myst-nb: glue must then do nothing, and not fail."""
    monkeypatch.setitem(sys.modules, "myst_nb", None)  # makes `import myst_nb` raise ImportError
    assert labs.glue("a_number", 2.5) is None


def test_labs_imports_no_build_tooling():
    """labs holds what chapters import at run time; the notebook generator lives in book/_ext."""
    code = ("import sys, labs, labs.book, labs.widgets, labs.plotting; "
            "print(sorted(m for m in ('jupytext', 'nbformat', 'myst_nb', 'sphinx') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
    assert not hasattr(labs.book, "colab_notebook")


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


def test_log_ticks_labels_only_the_given_values():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from labs.plotting import log_ticks

    fig, ax = plt.subplots()
    ax.plot([128, 2048], [1, 2])
    log_ticks(ax, [128, 256, 512, 1024, 2048])
    fig.canvas.draw()
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["128", "256", "512", "1024", "2048"]
    assert ax.xaxis.get_minorticklocs().size == 0  # minor labels (2x10^2, ...) are what overlapped
    with pytest.raises(ValueError, match="log_ticks: axis must be 'x' or 'y', got 'z'"):
        log_ticks(ax, [1, 10], axis="z")
    with pytest.raises(ValueError, match="log_ticks: labels must match values one to one, got 1 labels for 2"):
        log_ticks(ax, [1, 10], ["1"])
    plt.close(fig)


def test_tick_label_check_fails_a_figure_whose_labels_overlap(monkeypatch):
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from labs.derive import DerivationError
    from labs.plotting import overlapping_tick_labels, use_style

    monkeypatch.delenv("LABS_CHECKS", raising=False)
    with matplotlib.rc_context():
        use_style()
        fine, ax = plt.subplots()
        ax.plot([1, 2, 3])
        fine.savefig(io.BytesIO())  # drawn and checked: no overlap, no error
        crowded, ax = plt.subplots(figsize=(2, 2))
        ax.plot(range(100))
        ax.set_xticks(range(0, 100, 3), [f"label{i}" for i in range(0, 100, 3)])
        ax.set_title("crowded")
        with pytest.raises(DerivationError, match="figure 'crowded': tick labels overlap: 'label0' and 'label3'"):
            crowded.savefig(io.BytesIO())
        assert ("label0", "label3") in overlapping_tick_labels(crowded)
        ax.tick_params(labelbottom=False)  # hidden labels are not drawn, so they cannot overlap
        crowded.canvas.draw()
        assert overlapping_tick_labels(crowded) == []
        with pytest.raises(TypeError, match="overlapping_tick_labels: fig must be a matplotlib Figure, got Axes"):
            overlapping_tick_labels(ax)
    plt.close("all")
