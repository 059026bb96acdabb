"""Run a notebook as Colab would, in a Colab-like kernel, and say what went wrong.

The environment (``make colab-env`` builds its base in ``.venv/colab`` from
``requirements-colab.txt``):

* Colab's packages at Colab's versions where this machine can install them
  (ipywidgets 7.7.1, ipykernel 6.17.1, IPython 7.34, triton 3.6), and none of
  jupytext, myst-nb, jupyter-book or labs;
* for each run, a throw-away virtual environment layered on that base (its own
  site-packages first, the base's after), so whatever a notebook installs lands
  there: the base stays clean and runs cannot see each other's installs;
* ``google.colab`` imported when the kernel starts (a stand-in,
  ``colab_env/google/colab``);
* no network: pip has no index and no configuration (``PIP_NO_INDEX=1``, an index
  URL and proxies that point at a closed loopback port, ``PIP_CONFIG_FILE`` empty),
  and ``colab_env/sitecustomize.py`` refuses and logs every connection that
  would leave the machine; a failed shell command in a cell raises;
* a working directory outside the repository, and nothing of the repository on
  ``sys.path``.

``run_notebook`` executes every code cell in order and stops at the first error;
then, unless told not to, it drives every widget control the notebook made
(each value of each slider, dropdown, toggle; each button) and checks that each
change redraws a figure with no traceback; then it checks that no package was
installed, upgraded or downgraded except ``labs``, and that the network was not
tried. ``RunReport.problems`` lists everything that failed.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
COLAB_ENV = HERE / "colab_env"
sys.path.insert(0, str(ROOT / "book" / "_ext"))
from myst_to_markdown import raw_myst  # noqa: E402
DEAD_PORT = 9  # "discard": nothing listens on it here
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def colab_python() -> Path:
    """The base interpreter of the Colab-like environment (``$COLAB_PYTHON`` or ``.venv/colab``)."""
    return Path(os.environ.get("COLAB_PYTHON", ROOT / ".venv" / "colab" / "bin" / "python"))


def _run(python: Path, code: str, env: dict | None = None) -> str:
    # Run from the interpreter's own folder: ``python -c`` puts the working directory on sys.path,
    # and the repository's (with labs.egg-info) must not count.
    result = subprocess.run([str(python), "-c", code], capture_output=True, text=True, env=env, timeout=120,
                            cwd=python.parent)
    if result.returncode != 0:
        raise RuntimeError(f"{python} failed:\n{result.stderr}")
    return result.stdout


LIST_PACKAGES = (
    "import importlib.metadata as m, json; "
    "print(json.dumps({d.metadata['Name'].lower(): d.version for d in m.distributions()}))"
)


@dataclass
class Overlay:
    """A throw-away virtual environment on top of the Colab-like base."""

    root: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    @classmethod
    def create(cls, folder: Path) -> "Overlay":
        base = colab_python()
        if not base.exists():
            raise FileNotFoundError(f"no Colab-like environment at {base}: run `make colab-env`")
        subprocess.run([str(base), "-m", "venv", "--without-pip", str(folder)], check=True, timeout=120)
        base_site = _run(base, "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip()
        site = Path(_run(folder / "bin" / "python", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip())
        (site / "colab-base.pth").write_text(base_site + "\n")
        pip = folder / "bin" / "pip"
        pip.write_text(f'#!/bin/sh\nexec "{folder / "bin" / "python"}" -m pip "$@"\n')
        pip.chmod(0o755)
        return cls(folder)

    def packages(self, env: dict) -> dict[str, str]:
        return json.loads(_run(self.python, LIST_PACKAGES, env=env))


def kernel_environment(workdir: Path, overlay: Overlay) -> dict[str, str]:
    """The kernel's whole environment: nothing is inherited from this process but LABS_SEED."""
    ipython = workdir / "ipython"
    startup = ipython / "profile_default" / "startup"
    startup.mkdir(parents=True, exist_ok=True)
    shutil.copy(COLAB_ENV / "ipython_startup" / "00-colab-check.py", startup)
    home = workdir / "home"
    home.mkdir(exist_ok=True)
    dead = f"http://127.0.0.1:{DEAD_PORT}"
    env = {
        "PATH": f"{overlay.root / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(COLAB_ENV),
        "IPYTHONDIR": str(ipython),
        # Shared by every run, like the font cache baked into Colab's image (built once, then reused).
        "MPLCONFIGDIR": str(colab_python().parents[1] / "mplconfig"),
        "PIP_NO_INDEX": "1",
        "PIP_INDEX_URL": f"{dead}/simple",
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_RETRIES": "0",
        "PIP_TIMEOUT": "5",
        "COLAB_CHECK_NETLOG": str(workdir / "network.jsonl"),
        "COLAB_CHECK_DEAD_PORT": str(DEAD_PORT),
        "GIT_TERMINAL_PROMPT": "0",
        "no_proxy": "",
        "NO_PROXY": "",
    }
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env[name] = dead
    if "LABS_SEED" in os.environ:
        env["LABS_SEED"] = os.environ["LABS_SEED"]
    return env


@dataclass
class Change:
    """One widget control set to one value (or one button clicked), and what happened."""

    control: str
    value: str
    figures: int
    error: str | None


@dataclass
class RunReport:
    cells_run: int = 0
    problems: list[str] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    network: list[dict] = field(default_factory=list)
    packages_before: dict[str, str] = field(default_factory=dict)
    packages_after: dict[str, str] = field(default_factory=dict)
    facts: dict = field(default_factory=dict)
    seconds: float = 0.0
    cell_seconds: dict[int, float] = field(default_factory=dict)  # code cell index -> wall time

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        slowest = sorted(self.cell_seconds.items(), key=lambda item: -item[1])[:3]
        lines = [f"{self.cells_run} cells run in {self.seconds:.0f} s (slowest: "
                 + ", ".join(f"cell {k} {t:.0f} s" for k, t in slowest)
                 + f"); {len(self.changes)} widget changes driven"]
        lines += [f"PROBLEM: {p}" for p in self.problems]
        return "\n".join(lines)


class Kernel:
    """A Colab-like kernel: execute code, collect what it sends back."""

    def __init__(self, workdir: Path, overlay: Overlay, env: dict[str, str], cwd: Path):
        spec_dir = workdir / "kernels" / "colab-check"
        spec_dir.mkdir(parents=True, exist_ok=True)
        (spec_dir / "kernel.json").write_text(json.dumps({
            "argv": [str(overlay.python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Colab check", "language": "python",
        }))
        self.km = KernelManager(kernel_name="colab-check",
                                kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(workdir / "kernels")]))
        self.log = open(workdir / "kernel.log", "wb")  # the kernel process's own stdout and stderr
        self.km.start_kernel(env=env, cwd=str(cwd), stdout=self.log, stderr=subprocess.STDOUT)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=180)

    def execute(self, code: str, timeout: float) -> dict:
        """Run ``code``; return its status, error, stdout/stderr text and the mime types it displayed."""
        seen = {"errors": [], "text": [], "displays": []}

        def hook(msg):
            kind, content = msg["msg_type"], msg["content"]
            if kind == "error":
                seen["errors"].append(ANSI.sub("", "\n".join(content.get("traceback", [])))
                                      or f"{content.get('ename')}: {content.get('evalue')}")
            elif kind == "stream":
                seen["text"].append(content.get("text", ""))
            elif kind in ("display_data", "update_display_data", "execute_result"):
                seen["displays"].append(sorted(content.get("data", {})))
                if kind == "execute_result":
                    seen["text"].append(content.get("data", {}).get("text/plain", ""))

        reply = self.kc.execute_interactive(code, timeout=timeout, output_hook=hook, allow_stdin=False,
                                            stop_on_error=True)
        content = reply["content"]
        if content.get("status") == "error" and not seen["errors"]:
            seen["errors"].append(ANSI.sub("", "\n".join(content.get("traceback", [])))
                                  or f"{content.get('ename')}: {content.get('evalue')}")
        return {"status": content.get("status"), **seen, "stdout": "".join(seen["text"])}

    def close(self) -> None:
        try:
            self.kc.stop_channels()
        finally:
            self.km.shutdown_kernel(now=True)
            self.log.close()


FACTS = '''
import importlib.metadata as _m, json as _json, sys as _sys
try:
    import labs as _labs
    _labs_file = _labs.__file__
except ImportError:
    _labs_file = None
print(_json.dumps({"labs_file": _labs_file, "google_colab_imported": "google.colab" in _sys.modules,
                   "ipywidgets": _m.version("ipywidgets"),
                   "ipywidgets_module": __import__("ipywidgets").__version__}))
'''

# Kernel-side helpers to find and drive widget controls, on ipywidgets 7 and 8.
DRIVER = '''
def _colab_check_controls():
    import json
    import ipywidgets as w
    try:
        from ipywidgets.widgets.widget import _instances as instances  # ipywidgets 8
    except ImportError:
        instances = w.Widget.widgets  # ipywidgets 7
    numeric = (w.IntSlider, w.FloatSlider, w.FloatLogSlider, w.BoundedIntText, w.BoundedFloatText, w.Play)
    ranges = (w.IntRangeSlider, w.FloatRangeSlider)
    choices = (w.Dropdown, w.SelectionSlider, w.ToggleButtons, w.RadioButtons, w.Select)
    toggles = (w.Checkbox, w.ToggleButton)
    controls = []
    for widget in list(instances.values()):
        if getattr(widget, "disabled", False):
            continue
        name = f"{type(widget).__name__} {getattr(widget, 'description', '') or ''}".strip()
        if isinstance(widget, choices):
            values = [v for v in widget._options_values if v != widget.value]
        elif isinstance(widget, w.SelectionRangeSlider):
            values = [(widget._options_values[0], widget._options_values[-1])]
        elif isinstance(widget, ranges):
            values = [(widget.min, widget.max)]
        elif isinstance(widget, numeric):
            values = [v for v in (widget.min, widget.max) if v != widget.value]
        elif isinstance(widget, toggles):
            values = [not widget.value]
        elif isinstance(widget, w.Button):
            controls.append((name, widget, None))
            continue
        else:
            continue
        controls.append((name, widget, [v for v in values if v != widget.value] + [widget.value]))
    _colab_check_controls.found = controls
    print(json.dumps([[name, None if values is None else len(values)] for name, _, values in controls]))


def _colab_check_change(i, j):
    name, widget, values = _colab_check_controls.found[i]
    if values is None:
        widget.click()
    else:
        widget.value = values[j]
'''


def drive_widgets(kernel: Kernel, report: RunReport, timeout: float) -> None:
    """Change every control the notebook made to each of its other values and back; click every button."""
    setup = kernel.execute(DRIVER + "\n_colab_check_controls()", timeout)
    if setup["errors"]:
        report.problems.append("could not list the widget controls:\n" + "\n".join(setup["errors"]))
        return
    controls = json.loads(setup["stdout"].strip().splitlines()[-1])
    for i, (name, n_values) in enumerate(controls):
        for j in range(n_values or 1):
            result = kernel.execute(f"_colab_check_change({i}, {j})", timeout)
            figures = sum(1 for mimes in result["displays"] if {"image/png", "image/svg+xml"} & set(mimes))
            error = "\n".join(result["errors"]) or None
            shown = "click" if n_values is None else f"value {j + 1} of {n_values}"
            report.changes.append(Change(name, shown, figures, error))
            if error:
                report.problems.append(f"widget {name!r} ({shown}): the callback raised:\n{error[-3000:]}")
            elif n_values is not None and figures == 0:
                report.problems.append(f"widget {name!r} ({shown}): changing it redrew no figure")


PASTED = re.compile(r'<span class="pasted-text">([^<]*)</span>')


def static_problems(notebook, page_html: str | None = None) -> list[str]:
    """What is wrong with a notebook before it runs: raw MyST in its markdown, a first cell that
    is not the offline set-up, glued values of the HTML page (``page_html``) missing from its markdown."""
    problems = []
    markdown = [(k, c.source) for k, c in enumerate(notebook.cells) if c.cell_type == "markdown"]
    for k, text in markdown:
        problems += [f"markdown cell {k} keeps raw MyST: {raw}" for raw in raw_myst(text)]
    first = notebook.cells[0] if notebook.cells else None
    if first is None or first.cell_type != "code" or "colab-setup" not in first.metadata.get("tags", []):
        problems.append("the first cell is not the set-up cell that installs the embedded labs")
    elif '"--no-deps", "--no-index"' not in first.source or "git clone" in first.source:
        problems.append("the set-up cell does not install labs offline from the notebook itself")
    if page_html is not None:
        text = "\n".join(source for _, source in markdown)
        values = [html.unescape(v) for v in PASTED.findall(page_html)]
        missing = sorted({v for v in values if v not in text})
        if missing:
            problems.append(f"glued values on the page but not in the notebook's markdown: {missing}")
    return problems


def run_notebook(notebook, workdir: Path, *, cell_timeout: float = 900, widgets: bool = True) -> RunReport:
    """Run ``notebook`` (a NotebookNode or a path) top to bottom in a fresh Colab-like kernel."""
    if not isinstance(notebook, nbformat.NotebookNode):
        notebook = nbformat.read(str(notebook), as_version=4)
    workdir = Path(workdir).resolve()
    if workdir == ROOT or ROOT in workdir.parents:
        raise ValueError(f"run_notebook: workdir must be outside the repository {ROOT}, got {workdir}")
    start = time.perf_counter()
    report = RunReport()
    overlay = Overlay.create(workdir / "venv")
    env = kernel_environment(workdir, overlay)
    cwd = workdir / "content"  # Colab's working directory is /content
    cwd.mkdir(exist_ok=True)
    report.packages_before = overlay.packages(env)
    kernel = Kernel(workdir, overlay, env, cwd)
    try:
        for index, cell in enumerate(notebook.cells):
            if cell.cell_type != "code":
                continue
            started = time.perf_counter()
            try:
                result = kernel.execute(cell.source, cell_timeout)
            except (TimeoutError, RuntimeError) as error:  # a cell past its time, or a dead kernel
                report.problems.append(f"cell {index} did not finish ({type(error).__name__}: {error}):\n"
                                       f"{cell.source[:800]}")
                break
            report.cells_run += 1
            report.cell_seconds[index] = time.perf_counter() - started
            if result["errors"]:
                report.problems.append(
                    f"cell {index} raised:\n{cell.source[:800]}\n---\n" + "\n".join(result["errors"])[-4000:])
                break
        if report.ok:
            facts = kernel.execute(FACTS, 120)
            report.facts = json.loads(facts["stdout"].strip().splitlines()[-1]) if not facts["errors"] else {}
        if report.ok and widgets:
            drive_widgets(kernel, report, cell_timeout)
    finally:
        kernel.close()
    report.packages_after = overlay.packages(env)
    log = Path(env["COLAB_CHECK_NETLOG"])
    report.network = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    if report.network:
        report.problems.append("the notebook tried to reach the network: "
                               + "; ".join(f"{n['what']} {n['target']} from {' '.join(n['argv'])}" for n in report.network[:5]))
    changed = {name: (report.packages_before.get(name), version) for name, version in report.packages_after.items()
               if report.packages_before.get(name) != version and name != "labs"}
    changed |= {name: (version, None) for name, version in report.packages_before.items()
                if name not in report.packages_after}
    if changed:
        report.problems.append("packages changed: " + ", ".join(f"{n} {a} -> {b}" for n, (a, b) in sorted(changed.items())))
    report.seconds = time.perf_counter() - start
    return report
