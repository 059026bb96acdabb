"""MyST markdown to the plain markdown a notebook front end renders (Colab, Jupyter).

The book's pages are MyST: roles (``{glue:text}`key:.2f```, ``{cite}`key```),
directives (```` ```{literalinclude} ````, admonitions), targets ``(label)=``
and comments ``% ...``. Colab shows all of that as raw text. ``Converter``
rewrites one markdown cell the way the HTML page shows it:

* glue roles and directives become the values the book build computed (the
  build executed the page; myst-nb saved the glued outputs), formatted with
  myst-nb's own formatter, so the notebook reads exactly like the page;
* citations become "(Author et al., Year)", and ``{bibliography}`` the list of
  the works the chapter cites;
* figure, section, equation and document references become text ("Fig. 2",
  the section title, "(3)"); labelled equations keep their number as ``\\tag``;
* ``literalinclude`` becomes the included code, admonitions block quotes with
  a bold title, ``{math}`` display math; math stays ``$...$`` (Colab renders it).

Anything it does not know stays as it is, and ``raw_myst`` finds it: the book
build warns (and so fails under ``-W``) and the Colab check fails.
"""

from __future__ import annotations

import ast
import base64
import mimetypes
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

try:  # the same formatting as the {glue:text} role on the page
    from myst_nb.core.variables import format_plain_text
except ImportError:  # pragma: no cover - the book build always has myst-nb
    format_plain_text = None

ROLE = re.compile(r"\{(?P<name>[A-Za-z][\w:+.-]*)\}(?P<ticks>`+)(?P<body>.+?)(?P=ticks)")
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,}|:{3,})\s*(?P<info>.*?)\s*$")
DIRECTIVE_INFO = re.compile(r"^\{(?P<name>[A-Za-z][\w:+.-]*)\}\s*(?P<argument>.*)$")
TARGET = re.compile(r"^\s*\((?P<label>[^()\s]+)\)=\s*$")
COMMENT = re.compile(r"^\s*%")
DOLLAR_BLOCK = re.compile(r"^\s*\$\$")
EQUATION_LABEL = re.compile(r"^(?P<head>.*?\$\$)\s*\((?P<label>[^()\s]+)\)\s*$")
LOCAL_LINK = re.compile(r"\[(?P<text>[^\]]*)\]\((?P<target>#[^)\s]+|[^)\s:]+\.(?:md|ipynb)(?:#[^)\s]*)?)\)")
SUBSTITUTION = re.compile(r"\{\{[^{}]+\}\}")

ADMONITIONS = {
    "note": "Note", "tip": "Tip", "hint": "Hint", "important": "Important", "warning": "Warning",
    "caution": "Caution", "attention": "Attention", "danger": "Danger", "error": "Error",
    "seealso": "See also", "admonition": "", "dropdown": "", "margin": "", "sidebar": "", "topic": "",
    "epigraph": "", "pull-quote": "", "highlights": "",
}
CODE_ROLES = {"code", "kbd", "samp", "file", "command", "program", "envvar", "option", "token", "literal",
              "func", "class", "meth", "attr", "mod", "obj", "data", "exc", "any", "const", "var", "type"}


@dataclass(frozen=True)
class Ref:
    """What a label points to: its kind ("figure", "table", "equation", "section", "document"), number, title."""

    kind: str
    number: str | None = None
    title: str | None = None


@dataclass
class Context:
    """What the conversion of one chapter needs from the book build.

    ``glue`` maps each glued name to its mime bundle (``{"text/plain": ...}``), as
    myst-nb saved it; ``glue_for(doc)`` gives another page's. ``labels`` maps each
    label on this page to its ``Ref`` (``scan_labels``); ``resolve`` finds labels
    and document titles elsewhere in the book. ``source`` is the chapter's path
    (``literalinclude`` paths are relative to it).
    """

    source: Path
    glue: dict[str, dict] = field(default_factory=dict)
    bibliography: object | None = None  # a bibliography.Bibliography
    labels: dict[str, Ref] = field(default_factory=dict)
    resolve: Callable[[str], Ref | None] = lambda label: None
    glue_for: Callable[[str], dict] = lambda doc: {}
    numfig_format: dict[str, str] = field(
        default_factory=lambda: {"figure": "Fig. %s", "table": "Table %s", "code-block": "Listing %s", "section": "Section %s"}
    )
    cited: list[str] = field(default_factory=list)  # keys in order of first citation
    warnings: list[str] = field(default_factory=list)
    attachments: dict[str, dict] = field(default_factory=dict)  # of the cell being converted
    keyprefix: str = ""

    def warn(self, message: str) -> None:
        self.warnings.append(f"{self.source.name}: {message}")

    def lookup(self, label: str) -> Ref | None:
        return self.labels.get(label) or self.resolve(label)


# --- glue ------------------------------------------------------------------------------------


def _format(text: str, spec: str) -> str:
    if format_plain_text is not None:
        return format_plain_text(text, spec)
    try:  # pragma: no cover
        value = ast.literal_eval(text)
    except (SyntaxError, ValueError):
        value = text
    return str(value) if spec == "" else format(value, spec)


def glue_data(ctx: Context, key: str) -> dict | None:
    doc, _, name = key.rpartition("::")
    data = ctx.glue_for(doc) if doc else ctx.glue
    if name not in data:
        ctx.warn(f"no glued value {key!r} (was the page executed?)")
        return None
    return data[name]


def glue_text(ctx: Context, content: str) -> str | None:
    """``{glue:text}`key:spec```, parsed and formatted exactly as myst-nb's role does."""
    key, spec = content.rsplit(":", 1) if ":" in content else (content, "s")
    if key.endswith(":"):  # ``doc::key`` with no format: the split took the ``::`` apart
        key, spec = content, "s"
    data = glue_data(ctx, key.strip())
    if data is None:
        return None
    if "text/plain" not in data:
        ctx.warn(f"glued value {key!r} has no text/plain")
        return None
    try:
        return _format(data["text/plain"], spec.strip())
    except (TypeError, ValueError) as exc:
        ctx.warn(f"cannot format glued value {key!r} with {spec!r}: {exc}")
        return None


def glue_any(ctx: Context, key: str, *, block: bool) -> str | None:
    data = glue_data(ctx, key)
    if data is None:
        return None
    for mime in ("image/png", "image/jpeg", "image/svg+xml"):
        if mime in data and block:
            return attach(ctx, f"{key}.{mime.split('/')[1].split('+')[0]}", mime, data[mime], alt=key)
    if "text/markdown" in data:
        return data["text/markdown"].strip()
    if "text/latex" in data and block:
        return "$$\n" + data["text/latex"].strip().strip("$") + "\n$$"
    if "text/plain" in data:
        return _format(data["text/plain"], "")
    ctx.warn(f"glued value {key!r} has nothing a notebook can show")
    return None


def attach(ctx: Context, name: str, mime: str, payload, *, alt: str) -> str:
    """Add an attachment to the cell being converted and return the markdown image that shows it."""
    name = re.sub(r"[^\w.-]", "_", name)
    if isinstance(payload, bytes):
        payload = base64.b64encode(payload).decode("ascii")
    ctx.attachments[name] = {mime: payload}
    return f"![{alt}](attachment:{name})"


# --- citations and references ------------------------------------------------------------


def cite(ctx: Context, variant: str, body: str) -> str | None:
    keys = [k.strip() for k in body.split(",") if k.strip()]
    if ctx.bibliography is None:
        ctx.warn("a citation, but no bibliography was given")
        return None
    labels = []
    for key in keys:
        bare = key[len(ctx.keyprefix):] if ctx.keyprefix and key.startswith(ctx.keyprefix) else key
        label = ctx.bibliography.label(bare)
        if label is None:
            ctx.warn(f"unknown citation key {key!r}")
            return None
        if bare not in ctx.cited:
            ctx.cited.append(bare)
        labels.append(label)
    if variant in ("t", "ts"):
        return "; ".join(f"{authors} ({year})" for authors, year in labels)
    if variant == "author":
        return "; ".join(authors for authors, _ in labels)
    if variant == "year":
        return "; ".join(year for _, year in labels)
    joined = "; ".join(f"{authors}, {year}" for authors, year in labels)
    return joined if variant in ("alp", "label", "als") else f"({joined})"


def _explicit(body: str) -> tuple[str | None, str]:
    match = re.fullmatch(r"\s*(?P<text>.*?)\s*<(?P<target>[^<>]+)>\s*", body, re.S)
    return (match["text"], match["target"].strip()) if match else (None, body.strip())


def reference(ctx: Context, role: str, body: str) -> str | None:
    text, target = _explicit(body)
    if role == "doc":
        ref = ctx.resolve("doc:" + target.removesuffix(".md").removesuffix(".ipynb"))
        return text or (ref.title if ref and ref.title else None) or _missing(ctx, role, target)
    label = target.lstrip("#")
    ref = ctx.lookup(label)
    if ref is None:
        return text or _missing(ctx, role, label)
    if role == "eq":
        return f"({ref.number})" if ref.number else _missing(ctx, role, label)
    if role == "numref" or (role == "ref" and ref.kind in ("figure", "table", "code-block") and not text):
        template = text or ctx.numfig_format.get(ref.kind, "%s")
        if ref.number is None:
            return ref.title or _missing(ctx, role, label)
        return template.replace("{number}", ref.number).replace("{name}", ref.title or "").replace("%s", ref.number)
    return text or ref.title or _missing(ctx, role, label)


def _missing(ctx: Context, role: str, target: str) -> None:
    ctx.warn(f"cannot resolve {{{role}}}`{target}`")
    return None


# --- roles ---------------------------------------------------------------------------------


def render_role(ctx: Context, name: str, body: str) -> str | None:
    """The text a role shows on the page, or None (left raw, and warned) when unknown."""
    if name in ("glue:text",):
        return glue_text(ctx, body)
    if name in ("glue", "glue:", "glue:any", "glue:md"):
        return glue_any(ctx, body.strip(), block=False)
    if name == "cite" or name.startswith("cite:"):
        return cite(ctx, name.partition(":")[2] or "p", body)
    if name in ("ref", "numref", "eq", "doc"):
        return reference(ctx, name, body)
    if name == "math":
        return f"${body}$"
    if name in ("sub", "sup"):
        return f"<{name}>{body}</{name}>"
    if name in ("abbr", "term", "download", "index", "dfn", "guilabel", "menuselection", "emphasis", "strong"):
        text, target = _explicit(body)
        shown = text or target
        return f"*{shown}*" if name in ("emphasis", "dfn") else f"**{shown}**" if name == "strong" else shown
    if name.split(":")[-1] in CODE_ROLES:
        text, target = _explicit(body)
        return f"`{(text or target).lstrip('~!')}`"
    ctx.warn(f"unknown role {{{name}}}")
    return None


def shown_ref(ctx: Context, ref: Ref) -> str | None:
    """How a bare reference to ``ref`` reads: "Fig. 2" for numbered things, else its title."""
    if ref.number and ref.kind in ctx.numfig_format:
        return ctx.numfig_format[ref.kind] % ref.number
    if ref.number and ref.kind == "equation":
        return f"({ref.number})"
    return ref.title


def render_inline(ctx: Context, text: str) -> str:
    def substitute(match: re.Match) -> str:
        shown = render_role(ctx, match["name"], match["body"])
        return match[0] if shown is None else shown

    def link(match: re.Match) -> str:
        if match["text"]:
            return match["text"]
        doc, _, label = match["target"].partition("#")
        ref = ctx.lookup(label) if label else ctx.resolve("doc:" + doc.rsplit(".", 1)[0])
        shown = shown_ref(ctx, ref) if ref else None
        if shown is None:
            ctx.warn(f"cannot resolve the link {match['target']!r}")
            return match[0]
        return shown

    return LOCAL_LINK.sub(link, ROLE.sub(substitute, text))


# --- directives ----------------------------------------------------------------------------


def split_options(body: list[str]) -> tuple[dict[str, str], list[str]]:
    """A directive's ``:key: value`` (or ``---`` YAML) options, and the lines after them."""
    options: dict[str, str] = {}
    lines = list(body)
    if lines and lines[0].strip() == "---":
        end = next((i for i, line in enumerate(lines[1:], 1) if line.strip() == "---"), None)
        if end is not None:
            import yaml

            loaded = yaml.safe_load("\n".join(lines[1:end])) or {}
            options = {str(k): "" if v is None else str(v) for k, v in loaded.items()}
            lines = lines[end + 1:]
    else:
        while lines and (match := re.match(r"^\s*:(?P<key>[\w-]+):\s*(?P<value>.*)$", lines[0])):
            options[match["key"]] = match["value"].strip()
            lines.pop(0)
    while lines and not lines[0].strip():
        lines.pop(0)
    return options, lines


def python_object(source: str, dotted: str) -> str | None:
    """The source of the top-level function or class ``dotted`` (``Class.method`` too), with decorators."""
    tree = ast.parse(source)
    lines = source.splitlines()
    nodes = tree.body
    found = None
    for part in dotted.split("."):
        found = next((n for n in nodes if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                      and n.name == part), None)
        if found is None:
            return None
        nodes = found.body
    start = min([found.lineno] + [d.lineno for d in found.decorator_list]) - 1
    return textwrap.dedent("\n".join(lines[start:found.end_lineno]))


def literalinclude(ctx: Context, argument: str, options: dict[str, str]) -> str | None:
    path = (ctx.source.parent / argument.strip()).resolve()
    if not path.is_file():
        ctx.warn(f"literalinclude: no file {argument!r}")
        return None
    code = path.read_text(encoding="utf-8")
    if "pyobject" in options:
        code = python_object(code, options["pyobject"])
        if code is None:
            ctx.warn(f"literalinclude: no {options['pyobject']!r} in {argument}")
            return None
    if "start-after" in options:
        code = code.split(options["start-after"], 1)[-1].split("\n", 1)[-1]
    if "end-before" in options:
        code = code.split(options["end-before"], 1)[0].rsplit("\n", 1)[0]
    if "lines" in options:  # "3", "3-5", "7-": 1-based and inclusive, as in Sphinx
        all_lines, chosen = code.splitlines(), []
        for span in options["lines"].split(","):
            first, dash, last = span.strip().partition("-")
            start = int(first or 1) - 1
            stop = int(last) if last else (len(all_lines) if dash else start + 1)
            chosen += all_lines[start:stop]
        code = "\n".join(chosen)
    if "dedent" in options:
        code = textwrap.dedent(code)
    language = options.get("language", "python" if path.suffix == ".py" else "")
    shown = options.get("caption") or str(Path(argument.strip()).as_posix()).lstrip("./")
    while shown.startswith("../"):
        shown = shown[3:]
    name = f", `{options['pyobject']}`" if "pyobject" in options else ""
    return f"From `{shown}`{name}:\n\n```{language}\n{code.rstrip()}\n```"


def quote(text: str) -> str:
    return "\n".join(f"> {line}" if line.strip() else ">" for line in text.splitlines())


def render_directive(ctx: Context, name: str, argument: str, body: list[str]) -> str | None:
    """The markdown for one directive, or None (kept raw, and warned) when unknown."""
    options, content = split_options(body)
    argument = argument.strip()

    def inner() -> str:
        return convert_text(ctx, "\n".join(content)).strip()

    if name in ADMONITIONS:
        title = render_inline(ctx, argument) or ADMONITIONS[name]
        text = inner()
        return quote(f"**{title}.** {text}" if title and text else f"**{title}.**" if title else text)
    if name == "literalinclude":
        return literalinclude(ctx, argument, options)
    if name in ("code-block", "code", "sourcecode"):
        return f"```{argument}\n" + "\n".join(content).rstrip() + "\n```"
    if name == "math":
        label = options.get("label") or options.get("name")
        ref = ctx.labels.get(label) if label else None
        tag = f"\n\\tag{{{ref.number}}}" if ref and ref.number else ""
        return "$$\n" + "\n".join(content).strip() + tag + "\n$$"
    if name in ("figure", "image"):
        return figure(ctx, argument, options, inner() if name == "figure" else "")
    if name == "bibliography":
        return references(ctx)
    if name in ("glue", "glue:", "glue:any", "glue:figure", "glue:md", "glue:math", "glue:text"):
        shown = glue_any(ctx, argument, block=True)
        caption = inner() if name == "glue:figure" else ""
        return f"{shown}\n\n*{caption}*" if shown is not None and caption else shown
    if name in ("tableofcontents", "toctree", "contents"):
        return ""
    if name == "rubric":
        return f"**{render_inline(ctx, argument)}**"
    if name == "raw":
        return "\n".join(content) if argument == "html" else ""
    if name in ("card", "grid", "grid-item", "grid-item-card", "tab-set", "tab-item", "container", "div", "only"):
        titled = argument and name in ("card", "tab-item", "grid-item-card")
        return (f"**{render_inline(ctx, argument)}**\n\n" if titled else "") + inner()
    ctx.warn(f"unknown directive {{{name}}}")
    return None


def figure(ctx: Context, target: str, options: dict[str, str], caption: str) -> str | None:
    alt = options.get("alt", caption or target)
    label = options.get("name")
    path = (ctx.source.parent / target).resolve()
    if re.match(r"^[a-z]+://", target):
        image = f"![{alt}]({target})"
    elif path.is_file():
        mime = mimetypes.guess_type(path.name)[0] or "image/png"
        image = attach(ctx, path.name, mime, path.read_bytes(), alt=alt)
    else:
        ctx.warn(f"figure: no image {target!r}")
        return None
    ref = ctx.labels.get(label) if label else None
    if caption:
        number = f"{ctx.numfig_format['figure'] % ref.number}. " if ref and ref.number else ""
        return f"{image}\n\n*{number}{caption}*"
    return image


def references(ctx: Context) -> str:
    if ctx.bibliography is None or not ctx.cited:
        return ""
    return ctx.bibliography.markdown_list(ctx.cited)


# --- blocks --------------------------------------------------------------------------------


def _closes(line: str, fence: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and set(stripped) == {fence[0]} and len(stripped) >= len(fence)


def convert_text(ctx: Context, text: str) -> str:
    """Convert MyST markdown (one cell, or a directive's body) to plain markdown."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if TARGET.match(line) or COMMENT.match(line):
            i += 1
            continue
        fence = FENCE.match(line)
        if fence and (fence["fence"][0] != ":" or fence["info"].startswith("{")):
            end = next((j for j in range(i + 1, len(lines)) if _closes(lines[j], fence["fence"])), len(lines))
            body = [b[len(fence["indent"]):] if b.startswith(fence["indent"]) else b for b in lines[i + 1:end]]
            directive = DIRECTIVE_INFO.match(fence["info"])
            if directive:
                shown = render_directive(ctx, directive["name"], directive["argument"], body)
                out.extend((lines[i:end + 1] if shown is None else shown.splitlines()))
            else:  # a plain code block: copied as it is
                out.extend(lines[i:end + 1])
            i = end + 1
            continue
        if DOLLAR_BLOCK.match(line):
            single = line.count("$$") >= 2
            end = i if single else next((j for j in range(i + 1, len(lines)) if "$$" in lines[j]), len(lines) - 1)
            block = lines[i:end + 1]
            labelled = EQUATION_LABEL.match(block[-1])
            if labelled:
                ref = ctx.labels.get(labelled["label"])
                tag = f"\\tag{{{ref.number}}}" if ref and ref.number else ""
                before = labelled["head"][:-2].rstrip()
                block[-1:] = [f"{before} {tag}$$"] if before else ([tag, "$$"] if tag else ["$$"])
            out.extend(block)
            i = end + 1
            continue
        if re.match(r"^\s*\\begin\{(align|equation|gather|multline|eqnarray)\*?\}", line):
            env = re.match(r"^\s*\\begin\{([a-z*]+)\}", line)[1]
            end = next((j for j in range(i, len(lines)) if f"\\end{{{env}}}" in lines[j]), len(lines) - 1)
            out.extend(["$$", *lines[i:end + 1], "$$"])
            i = end + 1
            continue
        out.append(render_inline(ctx, line))
        i += 1
    return "\n".join(out)


# --- labels ----------------------------------------------------------------------------------


def heading_title(line: str) -> str | None:
    match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
    return match[1] if match else None


def figure_key(index: int) -> str:
    """The key under which ``scan_labels`` files the figure of code cell ``index``."""
    return f"__figure_of_cell_{index}"


def scan_labels(cells: list[dict]) -> dict[str, Ref]:
    """Labels defined on one page, numbered as Sphinx numbers them: figures, tables, equations in page order."""
    labels: dict[str, Ref] = {}
    counts = {"figure": 0, "table": 0, "equation": 0, "code-block": 0}

    def number(kind: str) -> str:
        counts[kind] += 1
        return str(counts[kind])

    for index, cell in enumerate(cells):
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        if cell["cell_type"] == "code":
            fig = ((cell.get("metadata") or {}).get("mystnb") or {}).get("figure") or {}
            if fig.get("caption") is not None:
                ref = Ref("figure", number("figure"), " ".join(str(fig["caption"]).split()))
                labels[figure_key(index)] = ref
                if fig.get("name"):
                    labels[fig["name"]] = ref
            continue
        lines = source.splitlines()
        pending = None
        for k, line in enumerate(lines):
            if (target := TARGET.match(line)):
                pending = target["label"]
                continue
            if pending and (title := heading_title(line)):
                labels[pending] = Ref("section", None, title)
            if pending and not line.strip():
                continue
            pending = None
            fence = FENCE.match(line)
            directive = DIRECTIVE_INFO.match(fence["info"]) if fence else None
            if directive and directive["name"] in ("figure", "table", "list-table", "math", "code-block"):
                options, _ = split_options(lines[k + 1:])
                kind = {"list-table": "table", "math": "equation"}.get(directive["name"], directive["name"])
                name = options.get("name") or options.get("label")
                if kind == "equation" and not name:
                    continue
                if kind == "code-block" and "caption" not in options:
                    continue
                num = number(kind)
                if name:
                    labels[name] = Ref(kind, num, directive["argument"].strip() or None)
            if (eq := EQUATION_LABEL.match(line)) and "$$" in line:
                labels[eq["label"]] = Ref("equation", number("equation"))
    return labels


# --- the check -------------------------------------------------------------------------------


def raw_myst(markdown: str) -> list[str]:
    """MyST syntax left in ``markdown`` that a plain notebook front end would show raw.

    Roles, directive fences (backtick and colon), targets ``(label)=``, comments
    ``% ...``, substitutions ``{{ x }}``. Plain code blocks are skipped.
    """
    found = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if DOLLAR_BLOCK.match(line) and line.count("$$") < 2:  # display math: LaTeX, not MyST
            i = next((j for j in range(i + 1, len(lines)) if "$$" in lines[j]), len(lines)) + 1
            continue
        fence = FENCE.match(line)
        if fence:
            if DIRECTIVE_INFO.match(fence["info"]):
                found.append(line.strip())
            elif fence["fence"][0] == ":" and fence["info"]:
                found.append(line.strip())
            end = next((j for j in range(i + 1, len(lines)) if _closes(lines[j], fence["fence"])), len(lines))
            i = end + 1
            continue
        if TARGET.match(line) or COMMENT.match(line):
            found.append(line.strip())
        found += [m[0] for m in ROLE.finditer(line)]
        found += SUBSTITUTION.findall(line)
        i += 1
    return found
