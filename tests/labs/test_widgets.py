import ipywidgets
import matplotlib.pyplot as plt
import pytest

from labs.widgets import MAX_FRAMES, StaticExplorer, explore


def line_plot(slope, style):
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [0, slope], linestyle=style)
    return fig


CONTROLS = {"slope": [1, 2, 3], "style": ["-", "--"]}


def test_book_build_gets_prerendered_frames(monkeypatch):
    monkeypatch.setenv("LABS_BOOK_BUILD", "1")
    widget = explore(line_plot, CONTROLS, alt="a line", initial={"slope": 2})
    assert isinstance(widget, StaticExplorer)
    assert len(widget.frames) == 6 and len(set(widget.frames.values())) == 6
    html = widget._repr_html_()
    assert html.count('type="range"') == 2
    assert 'alt="a line"' in html and 'value="1"' in html  # slope starts at its second value
    for cdn in ("unpkg", "jsdelivr", "cdnjs", "require.js"):
        assert cdn not in html


def test_live_kernel_gets_an_ipywidget(monkeypatch):
    monkeypatch.setenv("LABS_BOOK_BUILD", "0")
    widget = explore(line_plot, CONTROLS, alt="a line")
    assert isinstance(widget, ipywidgets.VBox)
    sliders = widget.children[0].children
    assert [type(s).__name__ for s in sliders] == ["SelectionSlider", "Dropdown"]
    assert sliders[0].continuous_update is False  # one redraw per move, not per pixel
    assert isinstance(widget.children[1], ipywidgets.Output)


def test_every_live_control_redraws_the_figure(monkeypatch):
    """Each change calls the plot again with the new values (in Colab's ipywidgets 7.7.1 too: make colab-check)."""
    monkeypatch.setenv("LABS_BOOK_BUILD", "0")
    calls = []

    def plot(slope, style):
        calls.append((slope, style))
        return line_plot(slope, style)

    widget = explore(plot, CONTROLS, alt="a line", initial={"slope": 2})
    slope, style = widget.children[0].children
    assert calls == [(2, "-")]  # drawn once on creation
    slope.value = 3
    style.value = "--"
    slope.value = 1
    assert calls == [(2, "-"), (3, "-"), (3, "--"), (1, "--")]


def test_true_and_false_are_a_choice_not_a_number(monkeypatch):
    monkeypatch.setenv("LABS_BOOK_BUILD", "0")
    widget = explore(lambda flag: line_plot(1, "-" if flag else "--"), {"flag": [True, False]}, alt="a line")
    assert type(widget.children[0].children[0]).__name__ == "Dropdown"


@pytest.mark.parametrize(
    "plot, controls, kwargs, error, match",
    [
        ("not callable", CONTROLS, {}, TypeError, "plot must be callable"),
        (line_plot, {}, {}, ValueError, "non-empty dict"),
        (line_plot, {"slope": []}, {}, ValueError, "control 'slope' needs a non-empty list"),
        (line_plot, {"slope": "123"}, {}, ValueError, "control 'slope' needs a non-empty list"),
        (line_plot, {"slope": list(range(MAX_FRAMES + 1))}, {}, ValueError, "at most 64"),
        (line_plot, CONTROLS, {"initial": {"slope": 9}}, ValueError, "initial value slope=9"),
        (line_plot, CONTROLS, {"alt": " "}, ValueError, "alt must be"),
    ],
)
def test_bad_input(plot, controls, kwargs, error, match):
    kwargs = {"alt": "a line"} | kwargs
    with pytest.raises(error, match=match):
        explore(plot, controls, **kwargs)


def test_a_range_is_a_continuous_slider_live_and_its_grid_static(monkeypatch):
    from labs.widgets import Range

    calls = []

    def plot(slope, width):
        calls.append((slope, width))
        return line_plot(slope, "-")

    controls = {"slope": Range(0.5, 3.0, 0.25, grid=(0.5, 1.0, 3.0)), "width": Range(1, 9, 2, grid=(1, 5))}
    monkeypatch.setenv("LABS_BOOK_BUILD", "0")
    widget = explore(plot, controls, alt="a line", initial={"slope": 1.0})
    slope, width = widget.children[0].children
    assert type(slope).__name__ == "FloatSlider" and type(width).__name__ == "IntSlider"
    assert (slope.min, slope.max, slope.step, slope.value) == (0.5, 3.0, 0.25, 1.0)
    assert slope.continuous_update is False
    slope.value = 2.25  # a value off the static grid: computed on the spot
    width.value = 7
    assert calls == [(1.0, 1), (2.25, 1), (2.25, 7)]
    monkeypatch.setenv("LABS_BOOK_BUILD", "1")
    static = explore(plot, controls, alt="a line", initial={"slope": 1.0})
    assert len(static.frames) == 6 and (3.0, 5) in calls


def test_an_action_button_runs_work_then_redraws(monkeypatch):
    monkeypatch.setenv("LABS_BOOK_BUILD", "0")
    state = {"trained": 0}
    calls, runs = [], []

    def plot(slope):
        calls.append((slope, state["trained"]))
        return line_plot(slope + state["trained"], "-")

    def train(progress, slope):
        runs.append(slope)
        progress.max = 3
        for _ in range(3):  # a tiny "training"
            progress.value += 1
        state["trained"] += 1

    widget = explore(plot, {"slope": [1, 2]}, alt="a line", actions={"train": train})
    row, actions, output = widget.children
    button, bar, status = actions.children
    assert type(button).__name__ == "Button" and button.description == "train"
    row.children[0].value = 2
    button.click()
    assert runs == [2] and bar.value == bar.max == 3 and status.value == "train: done"
    assert calls == [(1, 0), (2, 0), (2, 1)]  # redrawn after the work, with its result
    assert button.disabled is False


def test_a_failing_action_re_enables_its_button(monkeypatch):
    monkeypatch.setenv("LABS_BOOK_BUILD", "0")

    def broken(progress, slope):
        raise RuntimeError("no")

    widget = explore(lambda slope: line_plot(slope, "-"), {"slope": [1, 2]}, alt="a line", actions={"go": broken})
    button, _, status = widget.children[1].children
    button.click()  # ipywidgets catches and logs what a callback raises
    assert button.disabled is False and status.value == "go failed: RuntimeError: no"


def test_static_page_shows_actions_disabled(monkeypatch):
    monkeypatch.setenv("LABS_BOOK_BUILD", "1")
    widget = explore(line_plot, CONTROLS, alt="a line", actions={"train": lambda progress, **v: None})
    html = widget._repr_html_()
    assert "<button" in html and "disabled" in html and ">train</button>" in html


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda R: R(2, 1), ValueError, "low < high"),
        (lambda R: R(0, 1, 0), ValueError, "step must be"),
        (lambda R: R(0, 1, grid=(0.5, 2)), ValueError, "grid values must be numbers within"),
        (lambda R: R("a", 1), ValueError, "low < high"),
    ],
)
def test_bad_ranges(make, error, match):
    from labs.widgets import Range

    with pytest.raises(error, match=match):
        make(Range)


def test_bad_actions():
    with pytest.raises(TypeError, match="action 'train' must be callable"):
        explore(line_plot, CONTROLS, alt="a line", actions={"train": 3})
    with pytest.raises(ValueError, match="actions must be a dict"):
        explore(line_plot, CONTROLS, alt="a line", actions=["train"])
