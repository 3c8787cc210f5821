"""Where a message's words live on disk, per channel and per locale.

    templates/
      _brand.yaml                  sender name, postal address… (`brand.*` in every template)
      _layouts/email.html          shared layouts, `{% extends "_layouts/email.html" %}`
      _partials/footer.html        shared pieces, `{% include "_partials/footer.html" %}`
      _partials/ru/footer.html     …and their translations, picked by the message's locale
      cart_reminder/               one folder per message
        email.subject  email.preheader  email.html  email.text
        push.title  push.body  push.image  push.link
        sms.body
        sample.yaml                sample data `journeys validate` renders with
        ru/  sr-Latn/  ar/         translations: the same file names, per locale

The files directly in the message folder are the default locale's version.
Folders starting with `_` are shared and never messages.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from jinja2 import BaseLoader, Environment, FileSystemLoader, TemplateNotFound

from ..services.spelling import closest_name
from . import locales

PARTS = {
    "email": ("subject", "preheader", "html", "text"),
    "push": ("title", "body", "image", "link"),
    "sms": ("body",),
}
# Each group needs one of its parts for the channel to be complete.
REQUIRED: dict[str, tuple[tuple[str, ...], ...]] = {
    "email": (("subject",), ("html", "text")),
    "push": (("title",), ("body",)),
    "sms": (("body",),),
}
CHANNELS = tuple(PARTS)
PART_FILES = tuple(f"{channel}.{part}" for channel, parts in PARTS.items() for part in parts)
# What a part is often called elsewhere: `email.body` is email.html or email.text.
PART_SYNONYMS = {
    "email.body": ("email.html", "email.text"),
    "email.txt": ("email.text",),
    "email.htm": ("email.html",),
    "email.title": ("email.subject",),
    "email.preview": ("email.preheader",),
    "push.url": ("push.link",),
    "push.deeplink": ("push.link",),
    "push.text": ("push.body",),
    "push.message": ("push.body",),
    "push.subject": ("push.title",),
    "sms.text": ("sms.body",),
    "sms.message": ("sms.body",),
    "sample.yml": ("sample.yaml",),
}
SAMPLE_FILE = "sample.yaml"
BRAND_FILE = "_brand.yaml"


class Listing(NamedTuple):
    files: frozenset[str]
    folders: tuple[str, ...]  # sorted


_listings: dict[str, tuple[tuple[int, ...], float, Listing]] = {}
_RACY_NS = 2_000_000_000  # a folder changed this recently may change again unseen
_MAX_AGE = 30.0  # seconds a listing is trusted at most (clocks of network file systems)


def listing(folder: Path) -> Listing:
    """The files and sub-folders of `folder`, read again only when it has changed.

    Every send looks up its message's versions and parts: one `stat` of each folder
    instead of one per part. A listing is kept while the folder is the same one (device
    and inode: a release swapped in under the same path is another folder) with the
    same modification and change times (ctime cannot be set back by `touch` or `tar`),
    for 30 s at most. A folder changed within two seconds of now is read every time:
    file systems keep those times coarsely, so a file added in the same tick would go
    unseen (git treats such files as "racily clean" the same way). What cannot be
    stat'ed counts as absent, as `Path.is_file()` has it.
    """
    key = str(folder)
    try:
        st = os.stat(key)
    except OSError:
        return Listing(frozenset(), ())
    stamp = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
    cached = _listings.get(key)
    now = time.monotonic()
    if cached is not None and cached[0] == stamp and now - cached[1] < _MAX_AGE:
        return cached[2]
    files, folders = [], []
    try:
        with os.scandir(key) as entries:
            for entry in entries:
                try:
                    if entry.is_dir():
                        folders.append(entry.name)
                    elif entry.is_file():
                        files.append(entry.name)
                except OSError:  # a symlink loop, a name that cannot be stat'ed
                    continue
    except OSError:  # not listable (only x permission): the parts can still be opened
        known = (*PART_FILES, SAMPLE_FILE)
        return Listing(frozenset(n for n in known if (folder / n).is_file()), ())
    found = Listing(frozenset(files), tuple(sorted(folders)))
    if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > _RACY_NS:
        if len(_listings) > 4096:
            _listings.clear()
        _listings[key] = (stamp, now, found)
    return found


@dataclass(frozen=True)
class Variant:
    """One language version of a message: its folder and its locale (None = the default)."""

    message: str
    locale: str | None
    folder: Path
    templates_dir: Path

    def has(self, channel: str, part: str) -> bool:
        return f"{channel}.{part}" in listing(self.folder).files

    def missing(self, channel: str) -> list[str]:
        return [
            " or ".join(f"{channel}.{p}" for p in group)
            for group in REQUIRED[channel]
            if not any(self.has(channel, p) for p in group)
        ]

    def complete(self, channel: str) -> bool:
        return not self.missing(channel)

    def template_name(self, channel: str, part: str) -> str:
        """The Jinja name of a part: its path relative to the templates folder."""
        return (self.folder / f"{channel}.{part}").relative_to(self.templates_dir).as_posix()


class Message:
    """A message folder and its translations."""

    def __init__(self, templates_dir: Path, name: str) -> None:
        self.name = name
        self.templates_dir = templates_dir
        self.folder = templates_dir / name

    def exists(self) -> bool:
        return not self.name.startswith("_") and self.folder.is_dir()

    def missing(self) -> str:
        """Why a message that does not exist is not found, and the one probably meant."""
        text = f"no folder {self.folder}/"
        guess = self.meant()
        return f"{text}; did you mean {guess!r}?" if guess else text

    def meant(self) -> str | None:
        """The message a name that does not exist probably meant, if any."""
        return closest_name(
            self.name,
            message_names(self.templates_dir),
            key=lambda n: n.casefold().replace("-", "_"),
        )

    def variants(self) -> list[Variant]:
        """The default version first, then each translation folder named by a locale."""
        found = [Variant(self.name, None, self.folder, self.templates_dir)]
        for name in listing(self.folder).folders:
            tag = locales.canonical(name)
            if tag is not None:
                found.append(Variant(self.name, tag, self.folder / name, self.templates_dir))
        return found

    def stray_folders(self) -> list[Path]:
        """Sub-folders that are not locale tags: most likely a typo in a language name."""
        return sorted(
            p for p in self.folder.iterdir() if p.is_dir() and locales.canonical(p.name) is None
        )

    def stray_files(self) -> list[Path]:
        """Files of the message's versions that are no part (`email.preheder`, `push.url`):
        never rendered, so most likely a misspelt part. Hidden files are left alone."""
        names = set(PART_FILES)
        found = []
        for variant in self.variants():
            allowed = names | ({SAMPLE_FILE} if variant.locale is None else set())
            found += [
                p
                for p in variant.folder.iterdir()
                if p.is_file() and p.name not in allowed and not p.name.startswith(".")
            ]
        return sorted(found)

    def channels(self) -> list[str]:
        """Channels any version of the message is complete for."""
        return [c for c in CHANNELS if any(v.complete(c) for v in self.variants())]

    def choose(self, chain: list[str], channel: str) -> Variant | None:
        """The first version along the locale chain that is complete for `channel`.

        The default version closes every chain, so a Russian contact gets the
        Russian push if there is one and the default push otherwise, never a
        Russian subject over a default body.
        """
        by_locale = {v.locale: v for v in self.variants()}
        for tag in chain:
            variant = by_locale.get(tag)
            if variant is not None and variant.complete(channel):
                return variant
        root = by_locale[None]
        return root if root.complete(channel) else None


def part_meant(name: str) -> tuple[str, ...]:
    """The part (or sample file) a stray file name probably meant, if any."""
    key = name.casefold()
    if key in PART_SYNONYMS:
        return PART_SYNONYMS[key]
    meant = closest_name(key, [*PART_FILES, SAMPLE_FILE])  # `Email.Subject`: the case
    return (meant,) if meant else ()


def message_names(templates_dir: Path) -> list[str]:
    """The messages of a templates folder: its sub-folders not starting with `_`."""
    if not templates_dir.is_dir():
        return []
    return sorted(p.name for p in templates_dir.iterdir() if p.is_dir() and p.name[0] != "_")


class LocalizedLoader(BaseLoader):
    """Loads `_partials/footer.html` as `_partials/ru/footer.html` for a Russian message.

    One loader (and one environment) per locale chain; message parts are asked
    for by their exact path, so only shared layouts and partials fall back.
    """

    def __init__(self, templates_dir: Path, chain: tuple[str, ...]) -> None:
        self.files = FileSystemLoader(str(templates_dir))
        self.chain = chain

    def get_source(self, environment: Environment, template: str) -> tuple[str, str | None, object]:
        folder, _, name = template.rpartition("/")
        if folder.startswith("_"):
            for tag in self.chain:
                for spelled in dict.fromkeys((tag, tag.replace("_", "-"))):
                    try:
                        return self.files.get_source(environment, f"{folder}/{spelled}/{name}")
                    except TemplateNotFound:
                        continue
        return self.files.get_source(environment, template)
