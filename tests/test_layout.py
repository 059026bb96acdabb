"""The repository keeps the shape the book's tooling depends on."""

import re
import subprocess
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_no_notebook_is_committed_under_book():
    tracked = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "book"], capture_output=True, text=True, check=True
    ).stdout.split()
    on_disk = [str(p.relative_to(ROOT)) for p in (ROOT / "book").rglob("*.ipynb")]
    assert not [p for p in tracked if p.endswith(".ipynb")] and not on_disk


def test_requirements_pin_every_package_exactly():
    lines = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    pins = dict(line.split("==") for line in lines if line and not line.startswith("#"))
    assert all(re.fullmatch(r"[\w.+-]+", v) for v in pins.values()), "every line must be name==version"
    names = {name.lower() for name in pins}
    toolchain = {"jupyter-book", "myst-nb", "jupytext", "nbval", "pytest", "pytest-xdist", "ipywidgets",
                 "sympy", "numpy", "matplotlib", "torch", "triton", "sphinxcontrib-bibtex", "selenium"}
    assert toolchain <= names, f"missing pins: {toolchain - names}"
    assert pins["torch"] == "2.13.0"
    assert pins["jupyter-book"].startswith("1.")


def test_labs_declares_lower_bounds_only():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        assert ">=" in requirement and "==" not in requirement and "<" not in requirement.replace(">=", "")


def test_every_chapter_is_in_the_toc_and_executes_in_the_build():
    """The build reads every chapter's outputs from the cache that `make book` refills first."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["execute"]["execute_notebooks"] == "cache"
    makefile = (ROOT / "Makefile").read_text()
    assert f"execute_chapters.py {config['execute']['cache']} $(CHAPTERS)" in makefile
    assert "shutil.rmtree(args.cache" in (ROOT / "book" / "_ext" / "execute_chapters.py").read_text()
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    listed = {toc["root"]} | {entry["file"] for entry in toc["chapters"]}
    sources = {str(p.relative_to(ROOT).with_suffix("")) for p in (ROOT / "book").glob("*.md")}
    assert listed == sources


def test_every_chapter_follows_the_anatomy():
    """Seeded first; references at the end, then the provenance footer as the last cell."""
    import jupytext

    for path in (ROOT / "book").glob("*.md"):
        notebook = jupytext.read(path)
        if "kernelspec" not in notebook.metadata:
            continue
        text = path.read_text()
        assert "```{bibliography}" in text, f"{path.name}: no references"
        code = [cell.source for cell in notebook.cells if cell.cell_type == "code"]
        assert "labs.seed(" in code[0], f"{path.name}: the first code cell must seed"
        assert code[-1].strip() == "labs.provenance()", f"{path.name}: must end with the provenance footer"


def test_figure_names_and_targets_are_unique_across_chapters():
    # Sphinx labels are global to the book: two chapters naming a figure "fig-digits" is a -W failure.
    seen: dict[str, str] = {}
    for page in sorted((ROOT / "book").glob("*.md")):
        text = page.read_text().split("\n---\n", 1)[-1]  # skip the jupytext header (kernelspec name: python3)
        labels = re.findall(r"^\s+name: ([\w-]+)$", text, flags=re.M) + re.findall(r"^\(([\w-]+)\)=$", text, flags=re.M)
        for label in labels:
            assert label not in seen, f"label {label!r} is used by {seen[label]} and {page.name}"
            seen[label] = page.name


def _chapter_code():
    """(chapter file name, code cell source) for every executed chapter."""
    import jupytext

    for path in sorted((ROOT / "book").glob("*.md")):
        notebook = jupytext.read(path)
        if "kernelspec" in notebook.metadata:
            yield from ((path.name, cell.source) for cell in notebook.cells if cell.cell_type == "code")


# One way to do each thing (issue 12): what a chapter's code may not do by hand, and what to use instead.
FORBIDDEN_IN_CHAPTERS = {
    r"^\s*assert\s": "a bare assert prints nothing useful: use labs.derive / labs.claims checks",
    r"set_num_threads": "the thread count is scoped: use `with labs.threads(n):`",
    r"cuda\.is_available|device\s*=\s*[\"']cuda|torch\.device\(\s*[\"']cuda|\.cuda\(": (
        "ask labs.device() where to run (LABS_DEVICE must reach every cell)"
    ),
    r"manual_seed|np\.random\.seed|default_rng": "derive random streams from the book seed: labs.generator(stream)",
    r"perf_counter|time\.time\(": "time with labs.bench.median_ms, the book's one timer",
    r"labs\.seed\(\s*\d": "labs.seed() takes the book seed from LABS_SEED; do not fix it in a chapter",
}


def test_chapters_use_the_shared_mechanisms():
    found = []
    for name, source in _chapter_code():
        for pattern, why in FORBIDDEN_IN_CHAPTERS.items():
            for line in source.splitlines():
                if re.search(pattern, line, flags=re.M):
                    found.append(f"{name}: {line.strip()!r}: {why}")
    assert not found, "\n".join(found)
