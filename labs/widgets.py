"""Explorable figures: a live ipywidget in a kernel, a pre-rendered slider in the HTML book.

Live, it works on ipywidgets 7.7 (what Colab ships) and 8: `make colab-check`
drives every control of every chapter with ipywidgets 7.7.1 and checks that each
change redraws the figure.

A static page cannot call Python, so in the book build ``explore`` renders
every combination of the control values up front and emits a small,
self-contained HTML/JS slider that swaps between the pre-rendered frames. No
JavaScript from a CDN is needed.

Live, a control can be continuous: ``Range(low, high, step, grid=...)`` is a
float (or int) slider over the whole range in a kernel, and its ``grid`` is what
the static page pre-renders. ``actions`` adds buttons that run work (retrain a
model with the reader's settings, say) with a progress bar, then redraw; the
static page shows them disabled, since it cannot run anything.
"""

from __future__ import annotations

import html
import itertools
import json
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt

from .book import in_book_build
from .plotting import figure_png

MAX_FRAMES = 64
_counter = itertools.count()


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass(frozen=True)
class Range:
    """A continuous control: a slider from ``low`` to ``high`` in steps of ``step`` in a live kernel.

    ``grid`` lists the values the static page pre-renders (default: ``low`` and ``high``).
    With int ``low``, ``high`` and ``step`` the live slider is an ``IntSlider``.
    """

    low: float
    high: float
    step: float | None = None
    grid: tuple = ()

    def __post_init__(self):
        if not (_is_real(self.low) and _is_real(self.high)) or not self.low < self.high:
            raise ValueError(f"Range: needs real numbers low < high, got low={self.low!r}, high={self.high!r}")
        step = (self.high - self.low) / 100 if self.step is None else self.step
        if not _is_real(step) or not 0 < step <= self.high - self.low:
            raise ValueError(f"Range: step must be a number in (0, high - low], got {self.step!r}")
        grid = tuple(self.grid) or (self.low, self.high)
        if isinstance(self.grid, (str, bytes)) or not all(_is_real(v) and self.low <= v <= self.high for v in grid):
            raise ValueError(f"Range: grid values must be numbers within [{self.low}, {self.high}], got {self.grid!r}")
        object.__setattr__(self, "step", step)
        object.__setattr__(self, "grid", grid)

    @property
    def integer(self) -> bool:
        return all(isinstance(v, numbers.Integral) for v in (self.low, self.high, self.step))


def _check_controls(controls) -> dict[str, list]:
    """name -> the values the static page pre-renders (a ``Range``'s grid)."""
    if not isinstance(controls, dict) or not controls:
        raise ValueError(f"explore: controls must be a non-empty dict name -> list of values, got {controls!r}")
    checked = {}
    for name, values in controls.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"explore: control names must be identifiers, got {name!r}")
        if isinstance(values, Range):
            checked[name] = list(values.grid)
            continue
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0:
            raise ValueError(f"explore: control {name!r} needs a non-empty list of values or a Range, got {values!r}")
        checked[name] = list(values)
    return checked


def _check_actions(actions) -> dict[str, Callable]:
    if actions is None:
        return {}
    if not isinstance(actions, dict) or not all(isinstance(k, str) and k.strip() for k in actions):
        raise ValueError(f"explore: actions must be a dict button label -> callable, got {actions!r}")
    for label, action in actions.items():
        if not callable(action):
            raise TypeError(f"explore: action {label!r} must be callable, got {type(action).__name__}")
    return dict(actions)


class StaticExplorer:
    """Pre-rendered frames over every combination of control values, with an HTML slider per control."""

    def __init__(self, plot: Callable, controls: dict[str, list], initial: dict, alt: str,
                 actions: Sequence[str] = ()):
        self.controls, self.alt, self.actions = controls, alt, list(actions)
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
        for label in self.actions:  # a static page cannot run work: shown, disabled, with the reason
            rows.append(
                f'<button type="button" disabled title="runs in a live kernel (Colab, Jupyter)">'
                f"{html.escape(label)}</button> "
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


def _live(plot: Callable, controls: dict, initial: dict, actions: dict[str, Callable]):
    """Controls and an output that redraws on every change, built from what ipywidgets 7.7 and 8 share.

    Only core widgets and ``interactive_output`` (an ``Output`` cleared with
    ``clear_output(wait=True)`` before each redraw): Colab renders them with its
    own ipywidgets 7.7.1, with no custom widget manager and no ipympl.
    Sliders send their value when released (``continuous_update=False``), so a
    figure that takes a moment to compute is drawn once per move, not once per pixel.
    A ``Range`` becomes a ``FloatSlider`` (``IntSlider`` for ints) over its whole range.
    Each action is a ``Button``: a click calls ``action(progress=bar, **values)`` with an
    ``IntProgress`` bar the action may advance (``bar.max``, ``bar.value``), then redraws.
    """
    import ipywidgets as widgets
    from IPython.display import display

    style = {"description_width": "initial"}  # show each control's whole name
    inputs = {}
    for name, values in controls.items():
        if isinstance(values, Range):
            slider = widgets.IntSlider if values.integer else widgets.FloatSlider
            inputs[name] = slider(min=values.low, max=values.high, step=values.step, value=initial[name],
                                  description=name, continuous_update=False, style=style)
        elif all(_is_number(v) for v in values):
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
    if not actions:
        return widgets.VBox([row, output])

    bar = widgets.IntProgress(value=0, min=0, max=1, description="", layout=widgets.Layout(width="40%"))
    status = widgets.Label(value="")
    buttons = []
    for label, action in actions.items():
        button = widgets.Button(description=label, tooltip=f"{label} with the settings above")

        def run(_button, action=action, label=label):
            values = {name: widget.value for name, widget in inputs.items()}
            for b in buttons:
                b.disabled = True
            bar.value, status.value = 0, f"{label}: running"
            try:
                action(progress=bar, **values)
                status.value = f"{label}: done"
            except Exception as error:
                status.value = f"{label} failed: {type(error).__name__}: {error}"
                raise  # ipywidgets logs it in the kernel
            finally:
                for b in buttons:
                    b.disabled = False
            with output:  # redraw with the work's results
                output.clear_output(wait=True)
                show(**values)

        button.on_click(run)
        buttons.append(button)
    actions_row = widgets.HBox([*buttons, bar, status], layout=widgets.Layout(flex_flow="row wrap"))
    return widgets.VBox([row, actions_row, output])


def explore(plot: Callable, controls: dict[str, Sequence], *, alt: str, initial: dict | None = None,
            actions: dict[str, Callable] | None = None):
    """Let the reader vary ``controls`` and see ``plot(**values)`` (a matplotlib Figure).

    ``controls`` maps each argument name to the values a reader may pick, or to a
    ``Range`` (a continuous slider live, its ``grid`` pre-rendered). ``actions`` maps
    button labels to callables ``action(progress=bar, **values)`` that do work (e.g.
    retrain) before the figure is redrawn. In a live kernel this returns an
    ipywidget; in the book build it returns a ``StaticExplorer`` whose frames are
    rendered now (at most ``MAX_FRAMES``) and whose buttons are disabled.
    ``alt`` describes the figure for screen readers.
    """
    if not callable(plot):
        raise TypeError(f"explore: plot must be callable, got {type(plot).__name__}")
    grid = _check_controls(controls)
    actions = _check_actions(actions)
    if not isinstance(alt, str) or not alt.strip():
        raise ValueError("explore: alt must be a non-empty description of the figure")
    initial = {name: values[0] for name, values in grid.items()} | dict(initial or {})
    for name, value in initial.items():
        if name not in grid or value not in grid[name]:
            raise ValueError(f"explore: initial value {name}={value!r} is not one of the control's values")
    n_frames = 1
    for values in grid.values():
        n_frames *= len(values)
    if n_frames > MAX_FRAMES:
        raise ValueError(
            f"explore: {n_frames} combinations of control values; at most {MAX_FRAMES} can be pre-rendered"
        )
    if in_book_build():
        return StaticExplorer(plot, grid, initial, alt, actions)
    live = {name: values if isinstance(values, Range) else grid[name] for name, values in controls.items()}
    return _live(plot, live, initial, actions)
