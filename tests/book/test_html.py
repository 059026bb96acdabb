"""Checks of the built HTML that need no browser: Colab links, notebooks, links, outputs."""

import json
import re
from html.parser import HTMLParser
from urllib.parse import unquote, urlparse

import pytest

from book_pages import CHAPTERS, HTML, PAGES

from labs.provenance import head_commit


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name in ("href", "src"):
            if attrs.get(name):
                self.links.append(attrs[name])


def page(name: str) -> str:
    return (HTML / f"{name}.html").read_text()


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_colab_button_opens_the_generated_notebook(html_dir, chapter):
    links = re.findall(r'href="(https://colab\.research\.google\.com/[^"]+)"', page(chapter))
    assert links, f"{chapter}: no Colab button"
    commit = head_commit()
    for link in links:
        assert link.endswith(".ipynb"), link
        path = link.split("/blob/", 1)[1].split("/", 1)[1]  # drop the branch
        notebook = json.loads((html_dir / path).read_text())
        setup = "".join(notebook["cells"][0]["source"])
        assert "google.colab" in setup and f'"{commit}"' in setup, "first cell must install labs at the book's commit"


@pytest.mark.parametrize("name", PAGES)
def test_every_local_link_resolves(html_dir, name):
    parser = Links()
    parser.feed(page(name))
    here = (html_dir / name).parent
    for link in parser.links:
        parsed = urlparse(link)
        if parsed.scheme or link.startswith(("#", "//", "mailto:")) or not parsed.path:
            continue
        target = (here / unquote(parsed.path)).resolve()
        assert target.exists(), f"{name}: broken local link {link}"


@pytest.mark.parametrize("name", PAGES)
def test_no_traceback_in_outputs(html_dir, name):
    text = page(name)
    for marker in ("Traceback (most recent call last)", "Error</span>:", 'class="output traceback'):
        assert marker not in text, f"{name}: found {marker!r}"


BARE_VALUE = re.compile(r"(?:[-+]?(?:\d[\d_,]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|True|False|None|nan|inf)")


def bare_value_outputs(html: str) -> list[str]:
    """The plain-text cell results that are one bare value (a number, a bool): what a cell ending in an
    expression that returns one prints, e.g. a helper that returned what it recorded."""
    blocks = re.findall(r'<div class="output text_plain[^"]*"><div class="highlight"><pre><span></span>(.*?)</pre>',
                        html, re.S)
    return [text.strip() for text in blocks if BARE_VALUE.fullmatch(re.sub(r"<[^>]+>", "", text).strip())]


def test_bare_value_outputs_are_found():
    output = '<div class="output text_plain highlight-myst-ansi notranslate"><div class="highlight"><pre><span></span>{}</pre>'
    assert bare_value_outputs(output.format("1.2079441541679836\n")) == ["1.2079441541679836"]
    assert bare_value_outputs(output.format("True\n") + output.format("3145728")) == ["True", "3145728"]
    assert bare_value_outputs(output.format("claim: a beats b\nverdict: HOLDS")) == []


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_no_bare_value_printed_by_a_cell(html_dir, chapter):
    assert bare_value_outputs(page(chapter)) == [], f"{chapter}: a cell prints a bare value"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_no_hand_typed_glue_left_unresolved(html_dir, chapter):
    # An unknown glue key renders as nothing plus a warning (which -W turns into an error);
    # a literal role left in the page means the role was not parsed at all.
    assert "{glue:" not in page(chapter)


def test_widgets_are_prerendered_not_loaded_from_a_cdn(html_dir):
    text = page("book/attention_scaling")
    assert 'class="labs-explorer"' in text
    assert "application/vnd.jupyter.widget-view+json" not in text
