"""The Colab check itself, on small synthetic notebooks: it passes a good one, and fails each way it should.

A notebook fails the check when its first cell reaches for the network (a pip
install from an index, a download it swallows, a git clone), when a widget
callback raises, or when a control redraws nothing. Each notebook runs in the
Colab-like environment (``colab_kernel.py``).
"""

from pathlib import Path

import nbformat
import pytest

from colab_kernel import ROOT, Overlay, colab_python, kernel_environment, run_notebook, static_problems
from colab_notebook import install_cell, lower_bounds
from labs_wheel import build_wheel

COMMIT = "fedcba9876543210fedcba9876543210fedcba98"

EXPLORE = '''
import matplotlib.pyplot as plt
from labs.widgets import explore


def picture(slope, style):
    {body}
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [0, slope], linestyle=style)
    return fig


explore(picture, {{"slope": [1, 2, 3], "style": ["-", "--"]}}, alt="a line")
'''


@pytest.fixture(scope="module")
def setup_cell():
    return install_cell(build_wheel(ROOT, COMMIT), lower_bounds(ROOT / "pyproject.toml"), {})


def notebook(*sources, setup=None):
    nb = nbformat.v4.new_notebook()
    nb.cells = ([setup] if setup is not None else []) + [nbformat.v4.new_code_cell(s) for s in sources]
    return nb


def test_a_good_notebook_passes_and_changes_no_package(colab_env, setup_cell, tmp_path):
    base = Overlay(colab_env.parents[1])
    env = kernel_environment(tmp_path / "probe", base)
    before = base.packages(env)
    report = run_notebook(notebook(EXPLORE.format(body="pass"), setup=setup_cell), tmp_path / "run")
    assert report.ok, report.summary()
    assert report.facts["ipywidgets"] == "7.7.1" and report.facts["google_colab_imported"]
    assert report.facts["labs_file"].startswith(str(tmp_path / "run" / "venv"))  # from the wheel, not the checkout
    assert report.packages_after.get("labs") == "0.1.0+gfedcba987654" and "labs" not in report.packages_before
    assert len(report.changes) == 5 and all(c.figures >= 1 and c.error is None for c in report.changes)
    assert not report.network
    assert base.packages(env) == before  # the shared base environment is untouched


@pytest.mark.parametrize(
    "first_cell, expected",
    [
        ("%pip install einops", "failed with exit status"),  # an index install: no index here
        ("import os, subprocess, sys\n"  # pip told to use an index after all, its failure ignored
         "subprocess.run([sys.executable, '-m', 'pip', 'install', '--index-url', 'https://pypi.org/simple', 'einops'],"
         " env={**os.environ, 'PIP_NO_INDEX': '0'})", "tried to reach the network"),
        ("import urllib.request\ntry:\n    urllib.request.urlopen('https://example.com', timeout=5)\n"
         "except Exception:\n    pass  # a swallowed error is still caught", "tried to reach the network"),
        ("import os, subprocess, sys\nif 'google.colab' in sys.modules:\n"
         "    subprocess.run(['git', 'clone', '-q', 'https://github.com/labs-book/labs-book', '/tmp/x'], check=True)",
         "CalledProcessError"),
    ],
    ids=["pip-magic", "pip-index-url", "swallowed-download", "git-clone"],
)
def test_a_first_cell_that_reaches_for_the_network_fails(colab_env, tmp_path, first_cell, expected):
    report = run_notebook(notebook(first_cell, "print('never reached')"), tmp_path, widgets=False)
    assert not report.ok
    assert expected in "\n".join(report.problems), report.summary()
    assert "einops" not in report.packages_after


def test_a_widget_callback_that_raises_fails(colab_env, setup_cell, tmp_path):
    body = 'if style == "--":\n        raise ValueError("dashed lines are broken")'
    report = run_notebook(notebook(EXPLORE.format(body=body), setup=setup_cell), tmp_path)
    assert not report.ok
    problems = "\n".join(report.problems)
    assert "the callback raised" in problems and "dashed lines are broken" in problems
    assert "Dropdown style" in problems


def test_a_control_that_redraws_nothing_fails(colab_env, tmp_path):
    code = ("import ipywidgets as w\nslider = w.IntSlider(min=0, max=3)\n"
            "slider.observe(lambda change: print(change['new']), names='value')\nslider")
    report = run_notebook(notebook(code), tmp_path)
    assert not report.ok and "redrew no figure" in "\n".join(report.problems)


def test_a_raising_cell_stops_the_run_and_names_the_cell(colab_env, tmp_path):
    report = run_notebook(notebook("x = 1", "1 / 0", "print('after')"), tmp_path, widgets=False)
    assert report.cells_run == 2 and "cell 1 raised" in report.problems[0]
    assert "ZeroDivisionError" in report.problems[0]


def test_the_repository_is_out_of_reach(colab_env, tmp_path):
    code = ("import importlib.util, os, sys\n"
            f"assert importlib.util.find_spec('labs') is None, 'labs importable without installing'\n"
            f"assert not os.getcwd().startswith({str(ROOT)!r})\n"
            f"allowed = ({str(ROOT / '.venv' / 'colab')!r}, {str(ROOT / 'tests' / 'colab' / 'colab_env')!r})\n"
            f"inside = [p for p in sys.path if p.startswith({str(ROOT)!r}) and not p.startswith(allowed)]\n"
            "assert not inside, inside\n"
            "for name in ('jupytext', 'myst_nb', 'jupyter_book'):\n"
            "    assert importlib.util.find_spec(name) is None, name\n")
    report = run_notebook(notebook(code), tmp_path, widgets=False)
    assert report.ok, report.summary()


def test_the_workdir_must_be_outside_the_repository(colab_env):
    with pytest.raises(ValueError, match="workdir must be outside the repository"):
        run_notebook(notebook("1"), ROOT / "_build" / "colab-run")


def test_colab_python_names_its_base():
    assert colab_python().name == "python" and isinstance(colab_python(), Path)


def test_a_markdown_cell_that_keeps_a_raw_role_fails(setup_cell):
    nb = notebook("x = 1", setup=setup_cell)
    nb.cells.insert(1, nbformat.v4.new_markdown_cell("The value is {glue:text}`x:.2f`, as {cite}`someone`."))
    assert static_problems(nb) == ["markdown cell 1 keeps raw MyST: {glue:text}`x:.2f`",
                                   "markdown cell 1 keeps raw MyST: {cite}`someone`"]
    nb.cells[1].source = "The value is 1.00, as (Someone, 2020)."
    assert static_problems(nb) == []


def test_a_notebook_without_the_offline_set_up_fails(setup_cell):
    assert "first cell is not the set-up" in static_problems(notebook("x = 1"))[0]
    clone = nbformat.v4.new_code_cell("!git clone https://github.com/labs-book/labs-book", metadata={"tags": ["colab-setup"]})
    assert "does not install labs offline" in static_problems(notebook("x = 1", setup=clone))[0]


def test_a_glued_value_of_the_page_missing_from_the_notebook_fails(setup_cell):
    nb = notebook("x = 1", setup=setup_cell)
    nb.cells.append(nbformat.v4.new_markdown_cell("Loss 0.25 after 300 steps."))
    page = '<p>Loss <span class="pasted-text">0.25</span> after <span class="pasted-text">300</span></p>'
    assert static_problems(nb, page) == []
    page += '<span class="pasted-text">4.0</span>'
    assert static_problems(nb, page) == ["glued values on the page but not in the notebook's markdown: ['4.0']"]


def test_a_cell_past_its_time_fails(colab_env, tmp_path):
    report = run_notebook(notebook("import time\ntime.sleep(60)", "print('after')"), tmp_path, cell_timeout=3,
                          widgets=False)
    assert report.cells_run == 0 and "cell 0 did not finish" in report.problems[0]
