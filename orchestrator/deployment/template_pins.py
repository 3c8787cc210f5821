"""Which template files a journey version pins: its messages and every shared file they use.

A version renders with the files it was deployed with, so a deploy reads them now:
every file of each message the journey sends (all translations, not `sample.yaml`,
which only previews read), the brand file, and the shared layouts and partials those
files include, import or extend, directly or through each other, with every
translation of each (`_partials/ru/footer.html` is what a Russian contact gets). A
template that names what it includes with a variable (`{% include partial_name %}`)
cannot be followed: then every shared file is pinned, which is always enough.

Editing a file that no message of the journey uses makes no new version of it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from pathlib import Path

from jinja2 import Environment, TemplateSyntaxError, nodes

from ..rendering.catalog import BRAND_FILE, SAMPLE_FILE
from ..store.template_blobs import manifest_hash

_REFERENCES = (nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)
_PARSER = Environment()


def pinned_files(templates_dir: Path, messages: Iterable[str]) -> dict[str, bytes]:
    """{path relative to `templates_dir`: content} of what these messages render with."""
    found: dict[str, bytes] = {}

    def add(path: Path) -> bool:
        key = path.relative_to(templates_dir).as_posix()
        if key in found:
            return False
        found[key] = path.read_bytes()
        return True

    brand = templates_dir / BRAND_FILE
    if brand.is_file():
        add(brand)
    queue: list[Path] = []
    for name in sorted(set(messages)):
        folder = templates_dir / name
        if not folder.is_dir() or name.startswith("_"):
            continue  # validation reports it; nothing to pin
        for path in _files(folder):
            if path.name != SAMPLE_FILE and add(path):
                queue.append(path)
    while queue:
        names, dynamic = _references(queue.pop())
        if dynamic:
            for path in _shared_files(templates_dir):
                if add(path):
                    queue.append(path)
            continue
        for name in names:
            for path in _resolutions(templates_dir, name):
                if add(path):
                    queue.append(path)
    return dict(sorted(found.items()))


def manifest(files: dict[str, bytes]) -> dict[str, str]:
    """{path: sha256 of its content}: what a version stores."""
    return {path: content_hash(data) for path, data in sorted(files.items())}


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def version_hash(spec_hash: str, pins: dict[str, str]) -> str:
    """What tells versions apart: the spec's hash, and the pinned files' when there are any
    (a template edit alone is a new version)."""
    if not pins:
        return spec_hash
    return hashlib.sha256(f"{spec_hash}:{manifest_hash(pins)}".encode()).hexdigest()


def _files(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not any(part.startswith(".") for part in path.parts[-2:]):
            yield path


def _shared_files(templates_dir: Path) -> Iterator[Path]:
    for folder in sorted(templates_dir.iterdir()):
        if folder.is_dir() and folder.name.startswith("_"):
            yield from _files(folder)


def _resolutions(templates_dir: Path, name: str) -> list[Path]:
    """The files a reference may load: itself, and for a shared file its translations."""
    if name.startswith("/") or ".." in name.split("/"):
        return []
    found = [templates_dir / name]
    folder, _, base = name.rpartition("/")
    if folder.startswith("_") and (templates_dir / folder).is_dir():
        found += sorted(p / base for p in (templates_dir / folder).iterdir() if p.is_dir())
    return [p for p in found if p.is_file()]


def _references(path: Path) -> tuple[list[str], bool]:
    """Names a template includes, imports or extends; True when one is not a constant."""
    try:
        tree = _PARSER.parse(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, TemplateSyntaxError):
        return [], False  # not a template (an image?) or broken: validation reports it
    names: list[str] = []
    dynamic = False
    for node in tree.find_all(_REFERENCES):
        target = node.template
        values = target.items if isinstance(target, nodes.List | nodes.Tuple) else [target]
        for value in values:
            if isinstance(value, nodes.Const) and isinstance(value.value, str):
                names.append(value.value)
            else:
                dynamic = True
    return names, dynamic


def pin_changes(old: dict[str, str], new: dict[str, str]) -> list[tuple[str, str]]:
    """(path, "edited" | "added" | "removed") for each file two versions pin differently."""
    found = []
    for path in sorted(set(old) | set(new)):
        if path not in new:
            found.append((path, "removed"))
        elif path not in old:
            found.append((path, "added"))
        elif old[path] != new[path]:
            found.append((path, "edited"))
    return found


def describe_pin_changes(
    old: dict[str, str], new: dict[str, str], messages: Iterable[str]
) -> list[tuple[str | None, str]]:
    """(message, text) for each pinned file that changed: the message its folder names,
    or None for a shared file (a layout, a partial, the brand)."""
    names = set(messages)
    found: list[tuple[str | None, str]] = []
    for path, how in pin_changes(old, new):
        folder = path.split("/", 1)[0]
        message = folder if folder in names else None
        owner = f"message {message}" if message else "shared"
        found.append((message, f"template file {path} {how} ({owner})"))
    return found
