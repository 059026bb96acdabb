"""The pages of the built book, read from _toc.yml."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
HTML = ROOT / "_build" / "html"
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
PAGES = [TOC["root"]] + [entry["file"] for entry in TOC["chapters"]]
CHAPTERS = [entry["file"] for entry in TOC["chapters"]]
