"""A chapter as a self-contained notebook for Colab, or any Jupyter.

``colab_notebook`` turns a chapter's MyST source into an ``.ipynb``:

* its first cell installs the ``labs`` the book was built with from a wheel
  embedded in the cell (``--no-deps --no-index``: nothing is downloaded and
  none of the runtime's packages changes), and says plainly if the runtime
  lacks a package the chapter needs;
* its markdown reads like the HTML page (``myst_to_markdown``): glued numbers
  as the build computed them, citations and references as text, included code
  inline, figure captions under their figures;
* its code cells are the chapter's, unchanged; the ones the page hides are
  marked hidden for front ends that honour ``jupyter.source_hidden``.

The notebook carries no outputs: the reader runs it.
"""

from __future__ import annotations

import ast
import json
import re
import string
import sys
import textwrap
import tomllib
from pathlib import Path

import jupytext
import nbformat

from labs_wheel import Wheel
from myst_to_markdown import (
    Context, Ref, convert_text, figure_key, raw_myst, render_inline, scan_labels, split_options,
)

# Import names whose distribution has another name.
DISTRIBUTIONS = {"sklearn": "scikit-learn", "PIL": "pillow", "yaml": "PyYAML", "cv2": "opencv-python",
                 "skimage": "scikit-image", "IPython": "ipython"}
COLAB_ONLY = {"google"}  # google.colab: a chapter uses it only when it runs in Colab
HIDDEN_SOURCE = {"hide-input", "remove-input", "remove-cell", "hide-cell"}
HIDDEN_OUTPUT = {"hide-output", "remove-output"}

INSTALL_CELL = string.Template('''\
#@title Set-up: install `labs` (run this cell first)
# This notebook carries the `labs` package it was built with (book commit ${short}),
# embedded below as a wheel. This cell installs it with pip from the notebook alone:
# no download, no package index, no repository; every other package stays as it is
# (Colab's torch and ipywidgets are not upgraded or downgraded).
import base64, importlib, importlib.metadata, importlib.util, os, platform, subprocess, sys, tempfile

LABS_COMMIT = "${commit}"
LABS_VERSION = "${version}"
LABS_REQUIREMENTS = ${requirements}  # labs' dependencies and their lower bounds
CHAPTER_IMPORTS = ${imports}  # what this chapter imports besides those: module -> package


def _labs_version_tuple(text):
    parts = []
    for piece in text.split("+")[0].split("."):
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def _labs_missing():
    missing = []
    for name, lower in LABS_REQUIREMENTS.items():
        try:
            have = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(f"{name}>={lower} (not installed)")
            continue
        if _labs_version_tuple(have) < _labs_version_tuple(lower):
            missing.append(f"{name}>={lower} (found {have})")
    for module, package in CHAPTER_IMPORTS.items():
        if importlib.util.find_spec(module) is None:
            missing.append(f"{package} (not installed; this chapter imports {module})")
    return missing


def _labs_install(wheel_b64):
    try:
        dist = importlib.metadata.distribution("labs")
    except importlib.metadata.PackageNotFoundError:
        dist = None
    if dist is not None and dist.version == LABS_VERSION:
        return f"labs {LABS_VERSION} is already installed."
    spec = importlib.util.find_spec("labs")
    editable = dist is not None and '"editable": true' in (dist.read_text("direct_url.json") or "")
    if spec is not None and (dist is None or editable):
        where = os.path.dirname(spec.origin or "")
        return f"Using the labs checkout at {where}; the embedded labs {LABS_VERSION} is not installed."
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--disable-pip-version-check",
               "--quiet"] + (["--force-reinstall"] if dist is not None else [])
    with tempfile.TemporaryDirectory() as folder:
        wheel = os.path.join(folder, "${wheel}")
        with open(wheel, "wb") as file:
            file.write(base64.b64decode(wheel_b64))
        result = subprocess.run(command + [wheel], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"Installing the embedded labs wheel failed:\\n{result.stdout}{result.stderr}")
    importlib.invalidate_caches()
    note = " labs was already imported here: restart the runtime to use the new one." if "labs" in sys.modules else ""
    return f"Installed labs {LABS_VERSION} (book commit {LABS_COMMIT[:12]}) from this notebook.{note}"


def _labs_setup(wheel_b64):
    missing = _labs_missing()
    if missing:
        raise RuntimeError(
            "This chapter needs packages this runtime does not have: " + ", ".join(missing)
            + ". Colab's runtimes ship all of them; elsewhere, install them (for example"
            " `%pip install 'torch>=2.1'`) and run this cell again."
        )
    print(_labs_install(wheel_b64))
    import torch

    versions = f"Python {platform.python_version()}, torch {torch.__version__}"
    versions += f", ipywidgets {importlib.metadata.version('ipywidgets')}"
    print(versions + (f", GPU: {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"))
    if "google.colab" in sys.modules and not torch.cuda.is_available():
        print("Everything runs on the CPU. To run the Triton kernels, choose Runtime > Change runtime type > T4 GPU.")


_LABS_WHEEL_B64 = """
${data}
"""
_labs_setup(_LABS_WHEEL_B64)
del _LABS_WHEEL_B64
''')


def lower_bounds(pyproject: Path) -> dict[str, str]:
    """``{"torch": "2.1", ...}``: each dependency of the package and its lower bound."""
    bounds = {}
    for requirement in tomllib.loads(Path(pyproject).read_text(encoding="utf-8"))["project"]["dependencies"]:
        match = re.match(r"^\s*([A-Za-z0-9_.-]+)\s*>=\s*([\w.]+)", requirement)
        if not match:
            raise ValueError(f"lower_bounds: {requirement!r} in {pyproject} is not of the form 'name>=version'")
        bounds[match[1]] = match[2]
    return bounds


def third_party_imports(sources: list[str], exclude: set[str]) -> dict[str, str]:
    """Top-level modules the code imports that are neither the standard library nor in ``exclude``."""
    found: dict[str, str] = {}
    for source in sources:
        code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
        try:
            tree = ast.parse(code)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                package = DISTRIBUTIONS.get(top, top)
                if (top in sys.stdlib_module_names or top in COLAB_ONLY or top == "__future__"
                        or top in exclude or package in exclude):
                    continue
                found.setdefault(top, package)
    return dict(sorted(found.items()))


def install_cell(wheel: Wheel, requirements: dict[str, str], imports: dict[str, str]) -> nbformat.NotebookNode:
    """The first cell: install the embedded ``labs`` wheel without touching the runtime's packages."""
    data = "\n".join(textwrap.wrap(wheel.base64, 100))
    source = INSTALL_CELL.substitute(
        short=wheel.commit[:12] or "unknown", commit=wheel.commit, version=wheel.version, wheel=wheel.filename,
        requirements=json.dumps(requirements), imports=json.dumps(imports), data=data,
    )
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata.update({"cellView": "form", "tags": ["colab-setup"], "jupyter": {"source_hidden": True}})
    return cell


def _cell_source(cell) -> str:
    return cell.source if isinstance(cell.source, str) else "".join(cell.source)


def bibliography_keyprefix(cells) -> str:
    for cell in cells:
        if cell.cell_type != "markdown":
            continue
        lines = _cell_source(cell).splitlines()
        for k, line in enumerate(lines):
            if re.match(r"^\s*(`{3,}|:{3,})\s*\{bibliography\}", line):
                options, _ = split_options(lines[k + 1:])
                return options.get("keyprefix", "")
    return ""


def colab_notebook(source: Path, *, wheel: Wheel, requirements: dict[str, str], ctx: Context | None = None):
    """The chapter at ``source`` (MyST markdown) as a self-contained notebook.

    ``ctx`` carries what the build knows (glued values, bibliography, labels in
    other pages); conversion problems are collected in ``ctx.warnings``.
    """
    source = Path(source)
    notebook = jupytext.read(source)
    ctx = ctx or Context(source=source)
    ctx.source = source
    ctx.labels = scan_labels(notebook.cells)  # this page's; other pages' come through ctx.resolve
    ctx.keyprefix = bibliography_keyprefix(notebook.cells)

    cells = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "markdown":
            ctx.attachments = {}
            text = convert_text(ctx, _cell_source(cell)).strip("\n")
            if not text.strip():
                continue
            new = nbformat.v4.new_markdown_cell(text)
            if ctx.attachments:
                new.attachments = ctx.attachments
            cells.append(new)
            continue
        if cell.cell_type != "code":
            continue
        metadata = dict(cell.metadata)
        figure = (metadata.pop("mystnb", None) or {}).get("figure") or {}
        tags = set(metadata.get("tags", []))
        if tags & HIDDEN_SOURCE:
            metadata["jupyter"] = {**metadata.get("jupyter", {}), "source_hidden": True}
        if tags & HIDDEN_OUTPUT:
            metadata["jupyter"] = {**metadata.get("jupyter", {}), "outputs_hidden": True}
        cells.append(nbformat.v4.new_code_cell(_cell_source(cell), metadata=metadata))
        if figure.get("caption") is not None:
            ref = ctx.labels.get(figure_key(index)) or Ref("figure")
            caption = render_inline(ctx, " ".join(figure["caption"].split()))
            number = f"{ctx.numfig_format['figure'] % ref.number}. " if ref.number else ""
            cells.append(nbformat.v4.new_markdown_cell(f"*{number}{caption}*"))

    code = [_cell_source(c) for c in cells if c.cell_type == "code"]
    imports = third_party_imports(code, exclude=set(requirements) | {"labs"})
    out = nbformat.v4.new_notebook()
    out.cells = [install_cell(wheel, requirements, imports)] + cells
    out.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        "accelerator": "GPU",
        "colab": {"provenance": [], "toc_visible": True, "gpuType": "T4"},
        "labs": {"commit": wheel.commit, "version": wheel.version, "source": source.name},
    }
    nbformat.validate(out)
    return out


def raw_myst_in_notebook(notebook) -> list[tuple[int, str]]:
    """(cell index, the raw MyST) for every bit of MyST syntax left in the notebook's markdown."""
    return [(k, found) for k, cell in enumerate(notebook.cells) if cell.cell_type == "markdown"
            for found in raw_myst(_cell_source(cell))]
