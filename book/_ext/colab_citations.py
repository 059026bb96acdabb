"""Citations in the Colab notebooks: "(Author et al., Year)" and a reference list, from ``references.bib``.

The HTML page uses sphinxcontrib-bibtex; a notebook front end has no such
thing, so the notebook generator writes each citation out as text, in the
author-year style the page uses, and replaces the ``{bibliography}`` directive
with the list of the works the chapter cites, formatted by pybtex (the library
sphinxcontrib-bibtex formats with).
"""

from __future__ import annotations

from pathlib import Path

from pybtex.database import BibliographyData, Person, parse_file
from pybtex.plugin import find_plugin
from pybtex.richtext import Text


def _plain(latex: str) -> str:
    """LaTeX from a .bib field as plain text: braces and accents resolved."""
    return Text.from_latex(latex).render_as("text")


def _surname(person: Person) -> str:
    return _plain(" ".join(person.prelast_names + person.last_names))


class Bibliography:
    """The entries of one or more .bib files, keyed as in the files."""

    def __init__(self, data: BibliographyData):
        self.data = data
        self._style = find_plugin("pybtex.style.formatting", "plain")()

    @classmethod
    def from_files(cls, paths) -> "Bibliography":
        merged = BibliographyData()
        for path in paths:
            for key, entry in parse_file(str(Path(path))).entries.items():
                merged.add_entry(key, entry)
        return cls(merged)

    def __contains__(self, key: str) -> bool:
        return key in self.data.entries

    def label(self, key: str) -> tuple[str, str] | None:
        """("Vaswani et al.", "2017") for ``key``; None when the key is not in the bibliography."""
        entry = self.data.entries.get(key)
        if entry is None:
            return None
        people = entry.persons.get("author") or entry.persons.get("editor") or []
        names = [_surname(p) for p in people]
        if not names:
            authors = _plain(entry.fields.get("organization", entry.fields.get("title", key)))
        elif len(names) == 1:
            authors = names[0]
        elif len(names) == 2:
            authors = f"{names[0]} and {names[1]}"
        else:
            authors = f"{names[0]} et al."
        return authors, _plain(entry.fields.get("year", "n.d."))

    def markdown_list(self, keys) -> str:
        """A markdown list of the works ``keys``, ordered by author and year, each led by its citation label."""
        keys = [k for k in dict.fromkeys(keys) if k in self.data.entries]
        keys.sort(key=lambda k: (self.label(k)[0].lower(), self.label(k)[1], k))
        formatted = {e.key: e for e in self._style.format_entries([self.data.entries[k] for k in keys])}
        items = []
        for key in keys:
            authors, year = self.label(key)
            text = " ".join(formatted[key].text.render_as("markdown").split())
            items.append(f"- **{authors} ({year}).** {text}")
        return "\n".join(items)
