"""The Colab notebook generator (book/_ext): MyST to plain markdown, citations, the embedded wheel, the set-up cell.

These run in the book's own environment, without a kernel.
"""

import base64
import hashlib
import io
import json
import re
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import nbformat
import pytest
from myst_nb.core.variables import format_plain_text

from colab_citations import Bibliography
from colab_notebook import colab_notebook, install_cell, lower_bounds, raw_myst_in_notebook, third_party_imports
from labs_wheel import build_wheel, package_files, wheel_version
from myst_to_markdown import Context, Ref, convert_text, raw_myst

ROOT = Path(__file__).resolve().parents[2]
COMMIT = "0123456789abcdef0123456789abcdef01234567"
BIB = textwrap.dedent("""\
    @article{smith2020one,
      author = {Smith, Ann},
      title = {One author},
      journal = {Journal of Tests},
      year = {2020},
    }
    @inproceedings{doe2019two,
      author = {Doe, John and M{\\"u}ller, Eva},
      title = {Two authors},
      booktitle = {Proceedings of Tests},
      year = {2019},
    }
    @misc{lee2021many,
      author = {Lee, Kim and Park, Joon and Chen, Li},
      title = {Many authors},
      year = {2021},
    }
""")
HEADER = textwrap.dedent("""\
    ---
    jupytext:
      text_representation:
        extension: .md
        format_name: myst
        format_version: 0.13
    kernelspec:
      display_name: Python 3
      language: python
      name: python3
    ---
""")


@pytest.fixture(scope="module")
def bibliography(tmp_path_factory):
    path = tmp_path_factory.mktemp("bib") / "refs.bib"
    path.write_text(BIB)
    return Bibliography.from_files([path])


@pytest.fixture(scope="module")
def wheel():
    return build_wheel(ROOT, COMMIT)


def convert(text, tmp_path, **kwargs):
    ctx = Context(source=tmp_path / "page.md", **kwargs)
    return convert_text(ctx, textwrap.dedent(text)), ctx


# --- glue -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "plain, role, shown",
    [
        ("0.9987654", "{glue:text}`v:.2f`", "1.00"),
        ("64", "{glue:text}`v`", "64"),
        ("0.0012345", "{glue:text}`v:.1e`", "1.2e-03"),
        ("'50,000'", "{glue:text}`v`", "50,000"),
        ("12.5", "{glue:text}`v:.0f` steps", "12 steps"),
        ("0.25", "{glue:text}`v:.0%`", "25%"),
    ],
)
def test_glue_becomes_the_value_the_build_computed_formatted_as_myst_nb_does(tmp_path, plain, role, shown):
    out, ctx = convert(f"It is {role}.", tmp_path, glue={"v": {"text/plain": plain}})
    assert out == f"It is {shown}." and not ctx.warnings
    spec = role.split("`")[1].partition(":")[2] or "s"
    assert shown.startswith(format_plain_text(plain, spec))  # the page's own formatter agrees


def test_glue_from_another_page_and_markdown_glue(tmp_path):
    pages = {"other": {"w": {"text/plain": "3.14159"}}}
    out, ctx = convert("{glue:text}`other::w:.3f` and {glue:md}`m`", tmp_path,
                       glue={"m": {"text/markdown": "**bold**", "text/plain": "x"}}, glue_for=lambda doc: pages[doc])
    assert out == "3.142 and **bold**" and not ctx.warnings


def test_a_value_the_build_did_not_glue_is_left_raw_and_warned(tmp_path):
    out, ctx = convert("Value {glue:text}`missing:.2f`.", tmp_path)
    assert out == "Value {glue:text}`missing:.2f`."
    assert ctx.warnings and "missing" in ctx.warnings[0]
    assert raw_myst(out) == ["{glue:text}`missing:.2f`"]


def test_a_value_that_cannot_take_the_format_is_warned(tmp_path):
    out, ctx = convert("{glue:text}`v:.2f`", tmp_path, glue={"v": {"text/plain": "'not a number'"}})
    assert raw_myst(out) and "cannot format" in ctx.warnings[0]


# --- citations ---------------------------------------------------------------------------------


def test_citations_read_author_year(tmp_path, bibliography):
    text = "As shown {cite}`smith2020one`, {cite}`doe2019two,lee2021many`; {cite:t}`smith2020one` says so."
    out, ctx = convert(text, tmp_path, bibliography=bibliography)
    assert out == ("As shown (Smith, 2020), (Doe and Müller, 2019; Lee et al., 2021); "
                   "Smith (2020) says so.")
    assert ctx.cited == ["smith2020one", "doe2019two", "lee2021many"] and not ctx.warnings


def test_bibliography_lists_the_cited_works_only(tmp_path, bibliography):
    text = "See {cite}`smith2020one` and {cite}`lee2021many`.\n\n```{bibliography}\n:filter: docname in docnames\n```\n"
    out, ctx = convert(text, tmp_path, bibliography=bibliography)
    items = [line for line in out.splitlines() if line.startswith("- ")]
    assert len(items) == 2 and items[0].startswith("- **Lee et al. (2021).**") and "One author" in items[1]
    assert "Two authors" not in out and not raw_myst(out)


def test_key_prefix_and_unknown_keys(tmp_path, bibliography):
    source = tmp_path / "page.md"
    source.write_text(HEADER + "Cited {cite}`pre-smith2020one`, {cite}`nobody1999`.\n\n"
                      "```{bibliography}\n:keyprefix: pre-\n```\n")
    ctx = Context(source=source, bibliography=bibliography)
    nb = colab_notebook(source, wheel=build_wheel(ROOT, COMMIT), requirements={}, ctx=ctx)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "(Smith, 2020)" in text and "{cite}`nobody1999`" in text
    assert any("nobody1999" in w for w in ctx.warnings)


# --- directives, references, comments -------------------------------------------------------------


def test_literalinclude_inlines_the_code(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text(textwrap.dedent('''\
        import math

        # start
        @staticmethod
        def first(x):
            """Doc."""
            return math.sqrt(x)
        # end


        class Box:
            def area(self):
                return 1
    '''))
    text = ("```{literalinclude} pkg/mod.py\n:pyobject: first\n```\n\n"
            "```{literalinclude} pkg/mod.py\n:pyobject: Box.area\n```\n\n"
            "```{literalinclude} pkg/mod.py\n:start-after: '# start'\n:end-before: '# end'\n```\n")
    text = text.replace("'# start'", "# start").replace("'# end'", "# end")
    out, ctx = convert(text, tmp_path)
    assert not ctx.warnings and not raw_myst(out)
    blocks = re.findall(r"```python\n(.*?)\n```", out, re.S)
    assert blocks[0].startswith("@staticmethod\ndef first(x):") and blocks[0].endswith("return math.sqrt(x)")
    assert blocks[1] == "def area(self):\n    return 1"
    assert blocks[2].startswith("@staticmethod") and "# end" not in blocks[2] and "# start" not in blocks[2]
    assert "From `pkg/mod.py`, `first`:" in out


def test_literalinclude_of_a_missing_object_is_warned(tmp_path):
    (tmp_path / "m.py").write_text("x = 1\n")
    out, ctx = convert("```{literalinclude} m.py\n:pyobject: nothing\n```", tmp_path)
    assert "nothing" in ctx.warnings[0] and raw_myst(out)


def test_admonitions_become_titled_block_quotes(tmp_path):
    text = """\
    ```{note}
    Read {glue:text}`v:.1f` twice.
    ```

    :::{admonition} A custom title
    :class: tip
    Body line one.

    Body line two.
    :::
    """
    out, ctx = convert(text, tmp_path, glue={"v": {"text/plain": "2.25"}})
    assert "> **Note.** Read 2.2 twice." in out
    assert "> **A custom title.** Body line one.\n>\n> Body line two." in out
    assert ":class:" not in out and not raw_myst(out) and not ctx.warnings


def test_targets_comments_and_references_become_text(tmp_path, wheel):
    source = tmp_path / "page.md"
    source.write_text(HEADER + textwrap.dedent("""\
        (sec-intro)=
        ## The setting

        % a comment the page does not show
        See {numref}`fig-b`, {ref}`sec-intro`, {ref}`the first <fig-a>`, equation {eq}`eq-one` and [](#fig-b).

        $$
        x = 1
        $$ (eq-one)

        ```{code-cell} ipython3
        ---
        mystnb:
          figure:
            caption: First figure.
            name: fig-a
        ---
        print(1)
        ```

        ```{code-cell} ipython3
        ---
        mystnb:
          figure:
            caption: |
              Second figure, {glue:text}`v:.1f`.
            name: fig-b
        ---
        print(2)
        ```
    """))
    ctx = Context(source=source, glue={"v": {"text/plain": "0.5"}})
    nb = colab_notebook(source, wheel=wheel, requirements={}, ctx=ctx)
    markdown = [c.source for c in nb.cells if c.cell_type == "markdown"]
    assert not ctx.warnings and not raw_myst_in_notebook(nb)
    assert "(sec-intro)=" not in markdown[0] and "a comment" not in markdown[0]
    assert "See Fig. 2, The setting, the first, equation (1) and Fig. 2." in markdown[0]
    assert "x = 1\n\\tag{1}\n$$" in markdown[0]
    assert markdown[1:] == ["*Fig. 1. First figure.*", "*Fig. 2. Second figure, 0.5.*"]
    kinds = [c.cell_type for c in nb.cells]
    assert kinds == ["code", "markdown", "code", "markdown", "code", "markdown"]  # each caption under its figure


def test_unknown_roles_and_directives_stay_raw_and_are_warned(tmp_path):
    out, ctx = convert("A {weird}`thing`.\n\n```{mystery} arg\nbody\n```\n", tmp_path)
    assert raw_myst(out) == ["{weird}`thing`", "```{mystery} arg"]
    assert len(ctx.warnings) == 2


# --- the raw-MyST check ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "markdown, found",
    [
        ("Plain text with $\\mathbb{E}[x]$ and `code` and $$\\frac{a}{b}$$.", []),
        ("```python\nx = '{cite}`inside a code block`'\n```", []),
        ("A value {glue:text}`x:.2f` here.", ["{glue:text}`x:.2f`"]),
        ("Cited {cite}`a,b`.", ["{cite}`a,b`"]),
        ("```{note}\nhi\n```", ["```{note}"]),
        (":::{warning}\nhi\n:::", [":::{warning}"]),
        ("(my-label)=\n# Title", ["(my-label)="]),
        ("% a comment", ["% a comment"]),
        ("Hello {{ name }}", ["{{ name }}"]),
    ],
)
def test_raw_myst_finds_what_a_notebook_would_show_raw(markdown, found):
    assert raw_myst(markdown) == found


# --- the wheel ----------------------------------------------------------------------------------


def test_wheel_is_deterministic_and_holds_every_module(wheel):
    assert build_wheel(ROOT, COMMIT).data == wheel.data
    assert wheel.filename == "labs-0.1.0+g0123456789ab-py3-none-any.whl" and wheel.version == "0.1.0+g0123456789ab"
    archive = zipfile.ZipFile(io.BytesIO(wheel.data))
    names = set(archive.namelist())
    expected = {p.relative_to(ROOT).as_posix() for p in package_files(ROOT)}
    assert expected and expected <= names and "labs/__init__.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    dist_info = "labs-0.1.0+g0123456789ab.dist-info"
    for line in archive.read(f"{dist_info}/RECORD").decode().splitlines():
        path, digest, size = line.split(",")
        if path.endswith("RECORD"):
            continue
        data = archive.read(path)
        assert digest == "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        assert int(size) == len(data)
    metadata = archive.read(f"{dist_info}/METADATA").decode()
    assert "Version: 0.1.0+g0123456789ab" in metadata and "Requires-Dist: ipywidgets>=7.7" in metadata


def test_wheel_installs_with_pip_offline(wheel, tmp_path):
    path = tmp_path / wheel.filename
    path.write_bytes(wheel.data)
    target = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--disable-pip-version-check",
         "--quiet", "--target", str(target), str(path)], capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    assert (target / "labs" / "widgets.py").read_bytes() == (ROOT / "labs" / "widgets.py").read_bytes()
    assert (target / "labs-0.1.0+g0123456789ab.dist-info" / "METADATA").exists()


@pytest.mark.parametrize("commit, error", [("xyz", "commit must be 7-40 lowercase hex"), (None, "commit must be")])
def test_wheel_version_rejects_a_bad_commit(commit, error):
    with pytest.raises(ValueError, match=error):
        wheel_version("0.1.0", commit)


def test_wheel_version_marks_dirty_and_unknown_builds():
    assert wheel_version("0.1.0", "abcdef1234567890", dirty=True) == "0.1.0+gabcdef123456.dirty"
    assert wheel_version("0.1.0", "") == "0.1.0+unknown"


# --- the set-up cell ------------------------------------------------------------------------------


def test_lower_bounds_come_from_pyproject_and_admit_colab():
    bounds = lower_bounds(ROOT / "pyproject.toml")
    assert set(bounds) >= {"torch", "numpy", "ipywidgets", "matplotlib", "sympy", "tqdm"}
    colab = {"ipywidgets": (7, 7, 1), "torch": (2, 11, 0)}
    for name, version in colab.items():
        assert tuple(int(x) for x in bounds[name].split(".")) <= version, f"{name}>={bounds[name]} excludes Colab's"


def test_lower_bounds_reject_a_requirement_without_one(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\ndependencies = ["torch"]\n')
    with pytest.raises(ValueError, match="'torch'.*not of the form 'name>=version'"):
        lower_bounds(tmp_path / "pyproject.toml")


def test_third_party_imports_skip_the_standard_library_and_labs():
    code = ["import math, os\nimport numpy as np\nfrom sklearn.datasets import load_digits\n%matplotlib inline",
            "from labs.rope import x\nfrom . import y\nimport scipy.integrate\nfrom __future__ import annotations"]
    assert third_party_imports(code, exclude={"numpy", "labs"}) == {"scipy": "scipy", "sklearn": "scikit-learn"}


def test_install_cell_carries_the_wheel_and_installs_offline(wheel):
    cell = install_cell(wheel, {"torch": "2.1"}, {"scipy": "scipy"})
    source = cell.source
    compile(source, "<setup>", "exec")
    assert f'LABS_COMMIT = "{COMMIT}"' in source and '"google.colab" in sys.modules' in source
    assert '"--no-deps", "--no-index"' in source
    assert "git clone" not in source and "http" not in source.replace("https://", "")
    data = re.search(r'_LABS_WHEEL_B64 = """\n(.*?)\n"""', source, re.S)[1]
    assert base64.b64decode(data) == wheel.data
    assert cell.metadata["cellView"] == "form" and cell.metadata["jupyter"]["source_hidden"]


def chapter_title(target: str) -> Ref | None:
    """A {doc} link's title as the book build resolves it: the first heading of book/<name>.md."""
    page = ROOT / "book" / f"{target.removeprefix('doc:')}.md"
    if not target.startswith("doc:") or not page.exists():
        return None
    return Ref("document", title=re.search(r"^# (.+)$", page.read_text(), re.M)[1])


def test_chapter_becomes_a_self_contained_notebook(wheel):
    chapter = ROOT / "book" / "attention_scaling.md"
    text = chapter.read_text()
    keys = {m.split(":")[0] for m in re.findall(r"\{glue:text\}`([^`]+)`", text)}
    ctx = Context(source=chapter, glue={k: {"text/plain": "1.5"} for k in keys},
                  bibliography=Bibliography.from_files([ROOT / "book" / "references.bib"]), resolve=chapter_title)
    nb = colab_notebook(chapter, wheel=wheel, requirements=lower_bounds(ROOT / "pyproject.toml"), ctx=ctx)
    nbformat.validate(nb)
    assert not ctx.warnings and not raw_myst_in_notebook(nb)
    assert nb.cells[0].metadata["tags"] == ["colab-setup"]
    assert nb.metadata["accelerator"] == "GPU" and nb.metadata["labs"]["commit"] == COMMIT
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    import jupytext

    source_code = [c.source for c in jupytext.read(chapter).cells if c.cell_type == "code"]
    assert [c.source for c in nb.cells[1:] if c.cell_type == "code"] == source_code  # the code, unchanged
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "def scaled_softmax(" in markdown  # literalinclude, inlined
    assert "Rotary position embedding" in markdown  # a {doc} link, by the title of the page it names
    assert "(Vaswani et al., 2017)" in markdown and "Attention is all you need" in markdown
    json.dumps(nb)  # serialisable as it is


def test_literalinclude_lines_are_one_based_and_inclusive(tmp_path):
    (tmp_path / "f.txt").write_text("a\nb\nc\nd\ne\n")
    out, ctx = convert("```{literalinclude} f.txt\n:lines: 2, 4-\n```", tmp_path)
    assert "```\nb\nd\ne\n```" in out and not ctx.warnings


def test_display_math_is_not_mistaken_for_myst():
    assert raw_myst("$$\n% a LaTeX comment\n(a)=b\n$$\n") == []
