"""Explorable figures: a live ipywidget in a kernel, a pre-rendered slider in the HTML book.

Live, it works on ipywidgets 7.7 (what Colab ships) and 8: `make colab-check`
drives every control of every chapter with ipywidgets 7.7.1 and checks that each
change redraws the figure.

A static page cannot call Python, so in the book build ``explore`` renders
every combination of the control values up front and emits a small,
self-contained HTML/JS slider that swaps between the pre-rendered frames. No
JavaScript from a CDN is needed.
"""

from __future__ import annotations

import html
import itertools
import json
from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt

from .book import in_book_build
from .plotting import figure_png

MAX_FRAMES = 64
_counter = itertools.count()


def _check_controls(controls) -> dict[str, list]:
    if not isinstance(controls, dict) or not controls:
        raise ValueError(f"explore: controls must be a non-empty dict name -> list of values, got {controls!r}")
    checked = {}
    for name, values in controls.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"explore: control names must be identifiers, got {name!r}")
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0:
            raise ValueError(f"explore: control {name!r} needs a non-empty list of values, got {values!r}")
        checked[name] = list(values)
    return checked


class StaticExplorer:
    """Pre-rendered frames over every combination of control values, with an HTML slider per control."""

    def __init__(self, plot: Callable, controls: dict[str, list], initial: dict, alt: str):
        self.controls, self.alt = controls, alt
        self.initial = [values.index(initial[name]) for name, values in controls.items()]
        self.frames = {}
        for index in itertools.product(*(range(len(v)) for v in controls.values())):
            values = {name: controls[name][i] for name, i in zip(controls, index)}
            fig = plot(**values)
            self.frames["-".join(map(str, index))] = figure_png(fig)
            plt.close(fig)

    def _repr_html_(self) -> str:
        uid = f"labs-explorer-{next(_counter)}"
        rows = []
        for k, (name, values) in enumerate(self.controls.items()):
            start = self.initial[k]
            rows.append(
                f'<label style="display:block;margin:0.2em 0">{html.escape(name)} '
                f'<input type="range" min="0" max="{len(values) - 1}" step="1" value="{start}" '
                f'data-control="{k}" aria-label="{html.escape(name)}"> '
                f'<output>{html.escape(str(values[start]))}</output></label>'
            )
        data = {
            "labels": [[str(v) for v in values] for values in self.controls.values()],
            "frames": self.frames,
        }
        first = self.frames["-".join(map(str, self.initial))]
        script = (
            "(function(){var root=document.getElementById('%s');"
            "var data=JSON.parse(root.querySelector('script.labs-explorer-data').textContent);"
            "var inputs=root.querySelectorAll('input[data-control]');"
            "var img=root.querySelector('img.labs-explorer-frame');"
            "function update(){var key=[];inputs.forEach(function(el,k){key.push(el.value);"
            "el.nextElementSibling.textContent=data.labels[k][el.value];});"
            "img.src='data:image/png;base64,'+data.frames[key.join('-')];}"
            "inputs.forEach(function(el){el.addEventListener('input',update);});})();" % uid
        )
        payload = json.dumps(data).replace("</", "<\\/")
        return (
            f'<div class="labs-explorer" id="{uid}" data-frames="{len(self.frames)}">'
            f'<div class="labs-explorer-controls">{"".join(rows)}</div>'
            f'<img class="labs-explorer-frame" style="max-width:100%" alt="{html.escape(self.alt)}" '
            f'src="data:image/png;base64,{first}">'
            f'<script type="application/json" class="labs-explorer-data">{payload}</script>'
            f"<script>{script}</script></div>"
        )


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _live(plot: Callable, controls: dict[str, list], initial: dict):
    """Controls and an output that redraws on every change, built from what ipywidgets 7.7 and 8 share.

    Only core widgets and ``interactive_output`` (an ``Output`` cleared with
    ``clear_output(wait=True)`` before each redraw): Colab renders them with its
    own ipywidgets 7.7.1, with no custom widget manager and no ipympl.
    Sliders send their value when released (``continuous_update=False``), so a
    figure that takes a moment to compute is drawn once per move, not once per pixel.
    """
    import ipywidgets as widgets
    from IPython.display import display

    style = {"description_width": "initial"}  # show each control's whole name
    inputs = {}
    for name, values in controls.items():
        if all(_is_number(v) for v in values):
            inputs[name] = widgets.SelectionSlider(
                options=values, value=initial[name], description=name, continuous_update=False, style=style
            )
        else:
            inputs[name] = widgets.Dropdown(options=values, value=initial[name], description=name, style=style)

    def show(**values):
        fig = plot(**values)
        display(fig)
        plt.close(fig)

    output = widgets.interactive_output(show, inputs)
    row = widgets.HBox(list(inputs.values()), layout=widgets.Layout(flex_flow="row wrap"))
    return widgets.VBox([row, output])


def explore(plot: Callable, controls: dict[str, Sequence], *, alt: str, initial: dict | None = None):
    """Let the reader vary ``controls`` and see ``plot(**values)`` (a matplotlib Figure).

    ``controls`` maps each argument name to the values a reader may pick. In a
    live kernel this returns an ipywidget; in the book build it returns a
    ``StaticExplorer`` whose frames are rendered now (at most ``MAX_FRAMES``).
    ``alt`` describes the figure for screen readers.
    """
    if not callable(plot):
        raise TypeError(f"explore: plot must be callable, got {type(plot).__name__}")
    controls = _check_controls(controls)
    if not isinstance(alt, str) or not alt.strip():
        raise ValueError("explore: alt must be a non-empty description of the figure")
    initial = {name: values[0] for name, values in controls.items()} | dict(initial or {})
    for name, value in initial.items():
        if name not in controls or value not in controls[name]:
            raise ValueError(f"explore: initial value {name}={value!r} is not one of the control's values")
    n_frames = 1
    for values in controls.values():
        n_frames *= len(values)
    if n_frames > MAX_FRAMES:
        raise ValueError(
            f"explore: {n_frames} combinations of control values; at most {MAX_FRAMES} can be pre-rendered"
        )
    if in_book_build():
        return StaticExplorer(plot, controls, initial, alt)
    return _live(plot, controls, initial)
