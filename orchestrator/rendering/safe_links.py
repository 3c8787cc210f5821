"""Links from data: only absolute http(s) URLs reach a message.

Templates put event and contact data into `href`, `src` and push links: a product's
`url` and `image_url`, the cart's recovery link, recommendations, a webhook's answer.
Escaping does not make `javascript:alert(1)` or `data:text/html,…` safe in an
`href`, so every link-named value (`url`, `image`, `link`, `href`, `src`, `…_url`,
`…Url`, `…_link`, `…_image`, `icon`, `avatar`, `logo`, `thumbnail`, … and their
plurals) in the data a message is rendered from is checked once, here, before any
template sees it: an absolute `http`/`https` URL stays (trimmed), anything else
becomes an empty string, and the drop is reported with its reason (the send records
and logs it, `journeys preview` prints it). Templates then fall back as they do for a
missing link (`item.url or cart.url`), and one without a fallback prints nothing.

What templates get from the operator (`brand`) and from us (`message`: signed
unsubscribe and view links) is not data and is not checked.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

TRUSTED = ("brand", "message")
MAX_LINK = 2048
_LINK_NAME = re.compile(
    r"(url|uri|link|href|src|image|img|icon|avatar|picture|photo|logo|thumbnail)s?$"
)
# What browsers strip from both ends of a URL before reading it (WHATWG: C0 control or
# space), and what they drop from inside it (tab, CR, LF): "java\tscript:" is javascript:.
_ENDS = "".join(chr(c) for c in range(0x21))
_ASCII_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # what Cc/Cf/Zl/Zp hold within ASCII
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


@dataclass(frozen=True)
class DroppedLink:
    """A link-named value that did not reach the message, and why."""

    path: str  # where in the template context: event.products.0.url
    value: str  # what it was (cut to 200 characters)
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@lru_cache(maxsize=4096)
def link_problem(value: str) -> tuple[str | None, str | None]:
    """(the link to use, None) for an absolute http(s) URL, else (None, why not).

    Cached: every render checks every link of its context, and a shop's links repeat
    (product pages, the unsubscribe and preferences URLs of the same contact)."""
    link = value.strip(_ENDS)
    if not link:
        return None, "it is empty"
    if len(link) > MAX_LINK:
        return None, f"it is longer than {MAX_LINK} characters"
    if _ASCII_CONTROL.search(link) if link.isascii() else _invisible(link):
        return None, "it contains a line break, or a control or invisible character"
    if "\\" in link:
        return None, "it contains a backslash, which browsers read as /"
    if link.startswith("//"):
        return None, "it has no scheme (//host...): only absolute http and https links"
    scheme = _SCHEME.match(link)
    if scheme is None:
        return None, "it is not an absolute URL: only absolute http and https links"
    if scheme.group(1).lower() not in ("http", "https"):
        return None, f"{scheme.group(1).lower()}: links are not allowed, only http and https"
    link = link.replace(" ", "%20")  # what a browser would send
    try:
        parts = urlsplit(link)
        host = parts.hostname
    except ValueError as exc:  # an invalid port, a broken IPv6 address
        return None, f"it is not a valid URL ({exc})"
    if not host:
        return None, "it has no host name"
    if "@" in parts.netloc:
        return None, "it has a user name before the host (user@host), a phishing trick"
    return link, None


def _invisible(text: str) -> bool:
    return any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in text)


def without_unsafe_links(context: Mapping[str, Any]) -> tuple[dict[str, Any], list[DroppedLink]]:
    """The context with every link-named value that is not an absolute http(s) URL
    emptied, and the list of what was dropped (filled in as lazy parts are read)."""
    dropped: list[DroppedLink] = []
    cleaned = {
        key: value if key in TRUSTED else _clean(value, key, False, dropped)
        for key, value in context.items()
    }
    return cleaned, dropped


# Values that hold no link inside: copied as they are, without a call per value (a
# context has a few hundred of them and every render cleans it).
_PLAIN = frozenset({str, int, float, bool, type(None)})


def _clean(value: Any, path: str, is_link: bool, dropped: list[DroppedLink]) -> Any:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            link = _is_link_name(k)
            out[k] = (
                v if not link and type(v) in _PLAIN else _clean(v, f"{path}.{k}", link, dropped)
            )
        return out
    if isinstance(value, list | tuple):
        if is_link:
            return [_clean(v, f"{path}.{i}", True, dropped) for i, v in enumerate(value)]
        return [
            v if type(v) in _PLAIN else _clean(v, f"{path}.{i}", False, dropped)
            for i, v in enumerate(value)
        ]
    if isinstance(value, Mapping):  # computed on first use (recommendations): keep it so
        return _Cleaned(value, path, dropped)
    if not is_link or value is None:
        return value
    if not isinstance(value, str):
        dropped.append(DroppedLink(path, repr(value)[:200], "it is not text"))
        return ""
    link, problem = link_problem(value)
    if problem is not None:
        dropped.append(DroppedLink(path, value[:200], problem))
    return link or ""


@lru_cache(maxsize=4096)
def _is_link_name(key: Any) -> bool:
    return isinstance(key, str) and bool(_LINK_NAME.search(key.lower()))


class _Cleaned(Mapping[str, Any]):
    """A lazy mapping whose values are cleaned when a template first reads them."""

    def __init__(self, inner: Mapping[str, Any], path: str, dropped: list[DroppedLink]) -> None:
        self._inner, self._path, self._dropped = inner, path, dropped
        self._seen: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        if key not in self._seen:
            where = f"{self._path}.{key}"
            self._seen[key] = _clean(self._inner[key], where, _is_link_name(key), self._dropped)
        return self._seen[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._inner)

    def __len__(self) -> int:
        return len(self._inner)
