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
