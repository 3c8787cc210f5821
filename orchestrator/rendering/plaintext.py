"""The plain-text part of an email, generated from its HTML when the author wrote none.

Mail clients that cannot or will not show HTML, and spam filters scoring a message, read
the text/plain alternative. It should read the way the HTML looks in a browser: hidden
preheaders and `<style>` gone, one paragraph per line, links still usable as addresses.
Only the standard library's tolerant `HTMLParser` is used; email HTML is often sloppy,
so nothing here may raise.
"""

from __future__ import annotations

import html as htmllib
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import unquote

# Content never shown in the body.
_HIDDEN_TAGS = frozenset({"head", "style", "script", "title", "template"})
# Tags allowed inside <head>; any other start tag implies the body began (as in browsers).
_HEAD_TAGS = frozenset({"base", "link", "meta", "noscript", "script", "style", "template", "title"})
# Elements without content or end tag.
_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param"}
    | {"source", "track", "wbr"}
)
# Block elements and the newlines around them: 2 leaves a blank line, 1 starts a new line.
_BLOCK_GAP = {
    **dict.fromkeys(("p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre"), 2),
    **dict.fromkeys(
        (
            "div", "tr", "li", "ul", "ol", "dl", "dt", "dd", "table", "caption", "section",
            "header", "footer", "article", "aside", "nav", "main", "address", "center",
            "figure", "figcaption", "form", "fieldset",
        ),
        1,
    ),
}  # fmt: skip
_CELL_SEPARATOR = "  "
_MAX_INDENT = 4  # nested lists indent two spaces per level, up to this many levels
# What a browser collapses; a non-breaking space is treated the same (it becomes a plain space).
_WHITESPACE = re.compile(r"[ \t\n\r\f\xa0]+")
_DISPLAY_NONE = re.compile(r"(?<![\w-])display\s*:\s*none(?![\w-])", re.IGNORECASE)
_TAG = re.compile(r"<[^>]*>")
_INVISIBLE_BLOCK = re.compile(r"<(head|style|script|title)\b.*?</\1\s*>", re.I | re.S)
_BLANK_LINES = re.compile(r"\n{3,}")


def html_to_text(html: str) -> str:
    """Readable plain text for the HTML body of an email; never raises on a str."""
    converter = _Converter()
    try:
        converter.feed(html)
        converter.close()
        return converter.text()
    except Exception:  # a parser bug on odd input must not stop a send
        return _strip_tags(html)


@dataclass
class _Element:
    """An open element and what closing it must undo or emit."""

    tag: str
    hides: bool = False  # this element started a hidden region
    gap: int = 0  # newlines requested before and after
    href: str | None = None  # for a link: its target and where its text starts
    link_start: int = 0
    row: bool = False
    is_list: bool = False
    pre: bool = False


class _Converter(HTMLParser):
    """Renders parser events into text, tracking the layout state a browser would."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._chunks: list[str] = []
        self._tail = ""  # last character emitted
        self._trailing_newlines = 0
        self._pending_newlines = 0
        self._pending_separator = False
        self._pending_prefix = ""
        self._open: list[_Element] = []
        self._open_tags: dict[str, int] = {}  # how many of each tag are open: no stack scans
        self._hidden = 0
        self._pre = 0
        self._lists = 0
        self._rows: list[int] = []  # cells seen so far in each open table row

    # -- parser events -------------------------------------------------------------------

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _HEAD_TAGS and self._open_tags.get("head"):
            self._close_through("head")
        if tag == "a" and self._open_tags.get("a"):
            self._close_through("a")  # links do not nest: a new one closes the open one
        attributes = {name: value or "" for name, value in attrs}
        hides = (
            tag in _HIDDEN_TAGS
            or "hidden" in attributes
            or bool(_DISPLAY_NONE.search(attributes.get("style", "")))
        )
        if tag in _VOID:
            if not (hides or self._hidden):
                self._void(tag, attributes)
            return
        element = _Element(tag)
        self._open.append(element)
        self._open_tags[tag] = self._open_tags.get(tag, 0) + 1
        if hides:
            element.hides = True
            self._hidden += 1
        if self._hidden:
            return
        self._start(element, attributes)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # XHTML-style `<div/>`: an empty element, not one left open to the end.
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "br":  # browsers read `</br>` as `<br>`
            if not self._hidden:
                self._void("br", {})
            return
        self._close_through(tag)

    def handle_data(self, data: str) -> None:
        if self._hidden:
            return
        if self._pre:
            self._flush()
            self._emit(data.replace("\r\n", "\n").replace("\r", "\n").replace("\xa0", " "))
        else:
            self._inline(data)

    def parse_marked_section(self, i: int, report: int = 1) -> int:
        # `<![foo[ ...` makes older parsers raise; HTML reads it as a bogus comment.
        try:
            return super().parse_marked_section(i, report)
        except AssertionError:
            return self.parse_bogus_comment(i)

    def close(self) -> None:
        # A tag or comment cut off by the end of input is dropped, as browsers do,
        # instead of being shown as text.
        if re.match(r"<[a-zA-Z/!?]", getattr(self, "rawdata", "")):
            self.rawdata = ""
        super().close()
        while self._open:
            self._pop()

    # -- layout --------------------------------------------------------------------------

    def _start(self, element: _Element, attributes: dict[str, str]) -> None:
        tag = element.tag
        element.gap = _BLOCK_GAP.get(tag, 0)
        self._request_newlines(element.gap)
        if tag == "li":
            self._pending_prefix = "  " * min(max(self._lists - 1, 0), _MAX_INDENT) + "- "
        elif tag in ("ul", "ol"):
            element.is_list = True
            self._lists += 1
        elif tag == "tr":
            element.row = True
            self._rows.append(0)
        elif tag in ("td", "th"):
            if not self._rows or self._rows[-1]:  # the first cell of a row needs no separator
                self._pending_separator = True
            if self._rows:
                self._rows[-1] += 1
        elif tag == "pre":
            element.pre = True
            self._pre += 1
        elif tag == "a":
            href = attributes.get("href", "").strip()
            if href and not href.startswith("#") and not href.lower().startswith("javascript:"):
                element.href = href
                element.link_start = len(self._chunks)

    def _close(self, element: _Element) -> None:
        if element.hides:
            self._hidden -= 1
            return
        if self._hidden:
            return
        if element.href is not None:
            self._finish_link(element)
        if element.is_list:
            self._lists -= 1
        if element.row and self._rows:
            self._rows.pop()
        if element.pre:
            self._pre -= 1
        self._request_newlines(element.gap)

    def _close_through(self, tag: str) -> None:
        """Close the innermost open `tag` and everything opened inside it (unclosed tags)."""
        if self._open_tags.get(tag):
            while self._pop().tag != tag:
                pass

    def _pop(self) -> _Element:
        element = self._open.pop()
        self._open_tags[element.tag] -= 1
        self._close(element)
        return element

    def _void(self, tag: str, attributes: dict[str, str]) -> None:
        if tag == "br":
            self._flush()
            self._emit("\n")
        elif tag == "hr":
            self._request_newlines(1)
            self._flush()
            self._emit("---")
            self._request_newlines(1)
        elif tag == "img":
            self._inline(attributes.get("alt", ""))

    def _finish_link(self, element: _Element) -> None:
        href = element.href or ""
        label = _WHITESPACE.sub(" ", "".join(self._chunks[element.link_start :])).strip()
        target = href
        if href.lower().startswith("mailto:"):
            target = unquote(href[len("mailto:") :].split("?", 1)[0]).strip()
            if not target:
                return
        if not label:
            self._inline(target)
        elif _bare(label) != _bare(target) and _bare(label) != _bare(href):
            suffix = f"({target})"
            if self._tail == " ":  # keep the space that followed the label after the address
                self._emit(f"{suffix} ")
            else:
                self._emit(suffix if self._tail == "\n" else f" {suffix}")

    # -- output --------------------------------------------------------------------------

    def _inline(self, data: str) -> None:
        text = _WHITESPACE.sub(" ", data)
        if not text.strip():
            if text and not self._pending_newlines and self._tail not in ("", " ", "\n"):
                self._emit(" ")
            return
        self._flush()
        if self._tail in ("", " ", "\n"):
            text = text.lstrip(" ")
        self._emit(text)

    def _request_newlines(self, count: int) -> None:
        self._pending_newlines = max(self._pending_newlines, count)

    def _flush(self) -> None:
        """Emit the line breaks, cell separator and list bullet owed before the next text."""
        if self._pending_newlines:
            if self._tail:
                self._emit("\n" * max(self._pending_newlines - self._trailing_newlines, 0))
            self._pending_newlines = 0
            self._pending_separator = False
        elif self._pending_separator:
            if self._tail not in ("", "\n"):
                self._emit(_CELL_SEPARATOR[1:] if self._tail == " " else _CELL_SEPARATOR)
            self._pending_separator = False
        if self._pending_prefix:
            self._emit(self._pending_prefix)
            self._pending_prefix = ""

    def _emit(self, text: str) -> None:
        if not text:
            return
        self._chunks.append(text)
        stripped = text.rstrip("\n")
        newlines = len(text) - len(stripped)
        self._trailing_newlines = newlines if stripped else self._trailing_newlines + newlines
        self._tail = text[-1]

    def text(self) -> str:
        """The collected text, tidied: no trailing spaces, at most one blank line in a row."""
        return _tidy("".join(self._chunks))


def _bare(url: str) -> str:
    """A URL or address reduced to what a reader compares: no scheme, `www.` or final `/`."""
    bare = url.strip().lower()
    bare = re.sub(r"^(?:https?://|mailto:)", "", bare)
    return bare.removeprefix("www.").rstrip("/")


def _tidy(text: str) -> str:
    lines = [line.rstrip() for line in text.replace("\xa0", " ").split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip("\n")


def _strip_tags(html: str) -> str:
    """Last resort when the parser fails: the visible words, without any layout."""
    text = _TAG.sub(" ", _INVISIBLE_BLOCK.sub(" ", html))
    return _WHITESPACE.sub(" ", htmllib.unescape(text)).strip()
