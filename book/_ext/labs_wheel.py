"""A wheel of the ``labs`` package, built in memory for the Colab notebooks.

Each chapter's notebook carries the ``labs`` it was built with, so that it runs
with no repository URL and no network (``colab_notebook.install_cell``). The
wheel is written here with ``zipfile`` rather than by a build backend: the
package is pure Python, so a wheel is a zip of its ``.py`` files plus a
``.dist-info`` folder, and writing it directly needs no build isolation, no
network and no temporary copy of the checkout. The same files go in as
``setuptools`` would package (``labs*`` packages, Python files only).

The version carries the commit as a local label, ``0.1.0+g<12 hex>`` (with
``.dirty`` when the checkout has uncommitted changes), so ``pip list`` in Colab
says which build a notebook installed. The zip is deterministic: the same
checkout gives the same bytes.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed, so the wheel does not depend on file times


@dataclass(frozen=True)
class Wheel:
    """A built wheel: its file name, version, the commit it was built from, and its bytes."""

    filename: str
    version: str
    commit: str
    data: bytes

    @property
    def base64(self) -> str:
        return base64.b64encode(self.data).decode("ascii")


def wheel_version(base_version: str, commit: str, *, dirty: bool = False) -> str:
    """``base_version`` with the commit as a PEP 440 local label: ``0.1.0+g0123abcd4567``.

    An empty ``commit`` (a build outside a git checkout) gives ``0.1.0+unknown``.
    """
    if commit == "":
        return f"{base_version}+unknown"
    if not isinstance(commit, str) or not re.fullmatch(r"[0-9a-f]{7,40}", commit or ""):
        raise ValueError(f"wheel_version: commit must be 7-40 lowercase hex digits, got {commit!r}")
    return f"{base_version}+g{commit[:12]}" + (".dirty" if dirty else "")


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")
    return f"sha256={digest}"


def _metadata(project: dict, version: str, root: Path) -> str:
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {project['name']}",
        f"Version: {version}",
        f"Summary: {project.get('description', '')}",
    ]
    if "requires-python" in project:
        lines.append(f"Requires-Python: {project['requires-python']}")
    lines += [f"Requires-Dist: {requirement}" for requirement in project.get("dependencies", [])]
    for extra, requirements in project.get("optional-dependencies", {}).items():
        lines.append(f"Provides-Extra: {extra}")
        lines += [f'Requires-Dist: {requirement} ; extra == "{extra}"' for requirement in requirements]
    readme = project.get("readme")
    if isinstance(readme, str) and (root / readme).is_file():
        lines.append("Description-Content-Type: text/markdown")
        return "\n".join(lines) + "\n\n" + (root / readme).read_text(encoding="utf-8")
    return "\n".join(lines) + "\n"


def package_files(root: Path, package: str = "labs") -> list[Path]:
    """The Python files of ``package`` under ``root`` (no caches), sorted."""
    base = root / package
    if not (base / "__init__.py").is_file():
        raise FileNotFoundError(f"package_files: no package {package!r} under {root} (no {package}/__init__.py)")
    return sorted(p for p in base.rglob("*.py") if "__pycache__" not in p.parts)


def build_wheel(root: Path, commit: str, *, dirty: bool = False) -> Wheel:
    """Build the ``labs`` wheel from the checkout at ``root``, stamped with ``commit`` ("" if unknown)."""
    root = Path(root)
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    name = project["name"]
    version = wheel_version(project["version"], commit, dirty=dirty)
    dist_info = f"{name}-{version}.dist-info"
    files: list[tuple[str, bytes]] = [
        (p.relative_to(root).as_posix(), p.read_bytes()) for p in package_files(root, name)
    ]
    files += [
        (f"{dist_info}/METADATA", _metadata(project, version, root).encode("utf-8")),
        (f"{dist_info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: labs-book\nRoot-Is-Purelib: true\nTag: py3-none-any\n"),
        (f"{dist_info}/top_level.txt", f"{name}\n".encode()),
    ]
    record = "".join(f"{path},{_record_hash(data)},{len(data)}\n" for path, data in files)
    record += f"{dist_info}/RECORD,,\n"
    files.append((f"{dist_info}/RECORD", record.encode("utf-8")))

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in files:
            info = zipfile.ZipInfo(path, date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return Wheel(f"{name}-{version}-py3-none-any.whl", version, commit, buffer.getvalue())
