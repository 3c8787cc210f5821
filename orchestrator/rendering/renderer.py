"""Turn a message template into what a provider receives, for one contact and channel.

Rendering runs in activities (and `journeys preview` / `validate`), never in
workflow code. A template that cannot produce a correct message (an undefined
variable, a CR/LF in a subject, an SMS over its segment limit, a push over
4 KB, a template over its time or size budget) raises `RenderError`, which
the send activity records as a permanent failure instead of sending blanks.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from types import TracebackType
from typing import Any

import css_inline
import yaml
from jinja2 import TemplateError, TemplateNotFound, TemplateSyntaxError

from ..services.zones import zone_named
from . import locales
from .catalog import BRAND_FILE, PARTS, LocalizedLoader, Message, Variant
from .expressions import MissingValue, missing_value
from .formatting import filters as format_filters
from .plaintext import html_to_text
from .safe_links import DroppedLink, without_unsafe_links
from .sandbox import Limits, LoudUndefined, SafeEnvironment, UndefinedUse, budget, iter_limited
from .sms import MAX_SMS_CHARACTERS, SmsLength, sms_length

PUSH_MAX_BYTES = 4096  # FCM's limit on a message payload
MAX_HEADER_CHARS = 998  # RFC 5322 line length, the most a subject can be
ONE_LINE_PARTS = {("email", "subject"), ("email", "preheader"), ("push", "title")}
URL_PARTS = {("push", "image"), ("push", "link")}
_BODY_TAG = re.compile(r"<body\b[^>]*>", re.IGNORECASE)
_INLINER = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)


class RenderError(ValueError):
    """A template that cannot produce a message; `file:line` says where when known.

    `what` is the problem alone (`undefined variable: event.properties.price`), what a
    failed send records; `reason` adds the `hint` for the template's author. `missing`
    is set for an undefined variable: the expression as written, and where.
    """

    def __init__(
        self,
        message: str,
        file: str | None = None,
        line: int | None = None,
        hint: str | None = None,
        missing: MissingValue | None = None,
    ) -> None:
        reason = f"{message} ({hint})" if hint else message
        super().__init__(f"{file}:{line}: {reason}" if file and line else reason)
        self.reason, self.file, self.line = reason, file, line
        self.what = message
        self.missing = missing


@dataclass(frozen=True)
class Rendered:
    template: str
    channel: str
    locale: str  # the version that was used: "ru", or the default locale
    parts: dict[str, str]
    sms: SmsLength | None = None
    push_bytes: int | None = None
    files: dict[str, str] = field(default_factory=dict)  # part -> template file
    # Links from data that were not absolute http(s) URLs, emptied before rendering.
    dropped_links: tuple[DroppedLink, ...] = ()


class Renderer:
    def __init__(
        self,
        templates_dir: Path,
        default_locale: str = "en",
        default_currency: str = "USD",
        default_timezone: str = "UTC",
        sms_max_segments: int = 3,
        limits: Limits | None = None,
    ) -> None:
        self.templates_dir = templates_dir
        self.default_locale = locales.canonical(default_locale) or "en"
        self.default_currency = default_currency
        self.default_timezone = default_timezone
        self.sms_max_segments = sms_max_segments
        self.limits = limits or Limits()
        # One environment per locale chain, for the renderer's life: per renderer, as
        # each pinned set of a journey version is one (a shared cache evicted them all).
        self._environment = lru_cache(maxsize=32)(self._new_environment)

    @classmethod
    def from_settings(cls, settings: Any) -> Renderer:
        return cls(
            settings.templates_dir,
            default_locale=settings.default_locale,
            default_currency=settings.default_currency,
            default_timezone=settings.default_timezone,
            sms_max_segments=settings.sms_max_segments,
        )

    def over(self, templates_dir: Path) -> Renderer:
        """The same renderer reading another templates folder (a version's pinned files)."""
        return Renderer(
            templates_dir,
            default_locale=self.default_locale,
            default_currency=self.default_currency,
            default_timezone=self.default_timezone,
            sms_max_segments=self.sms_max_segments,
            limits=self.limits,
        )

    def message(self, template: str) -> Message:
        return Message(self.templates_dir, template)

    def has_channel(self, template: str, channel: str) -> bool:
        message = self.message(template)
        return message.exists() and channel in message.channels()

    def render(
        self, template: str, channel: str, context: dict[str, Any], locale: str | None = None
    ) -> Rendered:
        """Render every part of `template` for `channel` in the contact's best locale."""
        message = self.message(template)
        if not message.exists():
            raise RenderError(f"template {template!r} not found: {message.missing()}")
        contact = context.get("contact") or {}
        requested = locale or contact.get("locale")
        variant = message.choose(locales.chain(requested, self.default_locale), channel)
        if variant is None:
            raise RenderError(f"template {template!r} has no complete {channel} version")
        return self.render_variant(variant, channel, context, requested)

    def render_variant(
        self,
        variant: Variant,
        channel: str,
        context: dict[str, Any],
        requested: str | None,
        only: str | None = None,
    ) -> Rendered:
        """Render `variant` for `channel` (`only`: that one part, for checks of a part)."""
        tag = variant.locale or self.default_locale
        env = self._environment(tuple(locales.chain(tag, self.default_locale)))
        context, dropped = without_unsafe_links(context)  # data's links: http(s) only
        context = {**context, "brand": self.brand(), "message": self._message_vars(context, tag)}
        if requested is not None:
            context["message"]["requested_locale"] = requested
        parts: dict[str, str] = {}
        files: dict[str, str] = {}
        for part in PARTS[channel]:
            if not variant.has(channel, part) or only not in (None, part):
                continue
            name = variant.template_name(channel, part)
            files[part] = str(self.templates_dir / name)
            parts[part] = self._render_part(env, name, context)
        rendered = self._finish(variant, channel, tag, parts, files, context["message"])
        return replace(rendered, dropped_links=tuple(dropped)) if dropped else rendered

    def brand(self) -> dict[str, Any]:
        path = self.templates_dir / BRAND_FILE
        return _brand(str(path), path.stat().st_mtime_ns) if path.is_file() else {}

    def _message_vars(self, context: dict[str, Any], tag: str) -> dict[str, Any]:
        contact = context.get("contact") or {}
        event = context.get("event") or {}
        cart = context.get("cart") or {}
        given = dict(context.get("message") or {})
        # Numbers and dates follow the contact's own locale (sr_Latn_RS) when it
        # speaks the language of the version being sent, else that version's.
        own = locales.parse(contact.get("locale"))
        formatting = str(own) if own is not None and own.language == tag.split("_")[0] else tag
        traits = contact.get("traits") or {}
        currency = (
            given.get("currency")
            or (event.get("properties") or {}).get("currency")
            or cart.get("currency")
            or traits.get("currency")
            or self.default_currency
        )
        return {
            **given,
            "locale": formatting,
            "lang": locales.language(tag),
            "dir": locales.direction(tag),
            "currency": str(currency).upper(),
            # A zone the storefront misspelt ("Moscow") is no zone: the default, not a
            # failed send.
            "timezone": next(
                (
                    name
                    for name in (given.get("timezone"), contact.get("timezone"))
                    if zone_named(name) is not None
                ),
                self.default_timezone,
            ),
        }

    def _new_environment(self, chain: tuple[str, ...]) -> SafeEnvironment:
        env = SafeEnvironment(
            loader=LocalizedLoader(self.templates_dir, chain),
            autoescape=lambda name: bool(name) and name.endswith((".html", ".htm")),
            undefined=LoudUndefined,
            keep_trailing_newline=False,
        )
        env.add_filters(format_filters())
        return env

    def _render_part(self, env: SafeEnvironment, name: str, context: dict[str, Any]) -> str:
        try:
            with budget(self.limits):
                return iter_limited(env.get_template(name).generate(context), self.limits, name)
        except TemplateNotFound as exc:
            raise RenderError(f"template {exc.name!r} not found (included from {name})") from exc
        except TemplateSyntaxError as exc:
            where = exc.filename or str(self.templates_dir / name)
            raise RenderError(f"template syntax error: {exc.message}", where, exc.lineno) from exc
        except UndefinedUse as exc:
            # Where the expression was written, which may be the message's own line that
            # passed the value to a partial, not the partial's line that used it.
            found = missing_value(env, exc.undefined, context, str(exc))
            file, line = self._where(exc.__traceback__, name)
            if found.file is not None and found.file.startswith(str(self.templates_dir)):
                file, line = found.file, found.line
            raise RenderError(found.what(), file, line, found.hint(), found) from exc
        except (
            TemplateError,
            ValueError,
            TypeError,
            ArithmeticError,
            RecursionError,
            MemoryError,
        ) as exc:
            file, line = self._where(exc.__traceback__, name)
            what, hint = _describe(exc)
            raise RenderError(what, file, line, hint) from exc

    def _where(self, tb: TracebackType | None, name: str) -> tuple[str, int | None]:
        """The innermost template line in a traceback (Jinja rewrites frames to template lines)."""
        file, line = str(self.templates_dir / name), None
        root = str(self.templates_dir)
        while tb is not None:
            filename = tb.tb_frame.f_code.co_filename
            if filename.startswith(root) and not filename.endswith(".py"):
                file, line = filename, tb.tb_lineno
            tb = tb.tb_next
        return file, line

    def _finish(
        self,
        variant: Variant,
        channel: str,
        tag: str,
        parts: dict[str, str],
        files: dict[str, str],
        message: dict[str, Any],
    ) -> Rendered:
        for part in list(parts):
            text = parts[part] if part == "html" else parts[part].strip()
            parts[part] = text
            where = files[part]
            if (channel, part) in ONE_LINE_PARTS:
                if "\r" in text or "\n" in text:
                    raise RenderError(f"{channel}.{part} must be one line (CR/LF refused)", where)
                if len(text) > MAX_HEADER_CHARS:
                    raise RenderError(f"{channel}.{part} is over {MAX_HEADER_CHARS} characters")
            if (channel, part) in URL_PARTS and text and (" " in text or ":" not in text):
                raise RenderError(f"{channel}.{part} must be a URL, got {text[:80]!r}", where)
        for part in ("subject", "title", "body"):
            if part in parts and not parts[part]:
                raise RenderError(f"{channel}.{part} renders empty", files[part])
        sms = push_bytes = None
        if channel == "email":
            parts = self._email(parts)
        elif channel == "sms":
            sms = sms_length(parts["body"])
            if len(parts["body"]) > MAX_SMS_CHARACTERS or sms.segments > self.sms_max_segments:
                raise RenderError(
                    f"sms.body is {sms.describe()}; the limit is {self.sms_max_segments} "
                    "segments (JOURNEYS_SMS_MAX_SEGMENTS)",
                    files["body"],
                )
        elif channel == "push":
            push_bytes = len(push_payload(parts, str(message.get("id", ""))))
            if push_bytes > PUSH_MAX_BYTES:
                raise RenderError(
                    f"push payload is {push_bytes} bytes; FCM accepts {PUSH_MAX_BYTES}",
                    files.get("body"),
                )
        return Rendered(variant.message, channel, tag, parts, sms, push_bytes, files)

    def _email(self, parts: dict[str, str]) -> dict[str, str]:
        html = parts.get("html")
        if html is not None:
            if parts.get("preheader"):
                html = _with_preheader(html, parts["preheader"])
            try:
                html = _INLINER.inline(html)
            except ValueError as exc:
                raise RenderError(f"email.html: cannot inline its CSS: {exc}") from exc
            parts["html"] = html
            if "text" not in parts:
                parts["text"] = html_to_text(html)
        return parts


# What the firebase adapter adds besides the rendered parts: journey and step ids in
# `data`, the analytics label and platform keys (ids are at most 63 + 200 characters).
PUSH_ENVELOPE_BYTES = 400


def push_payload(parts: dict[str, str], message_id: str) -> bytes:
    """The FCM message body our push carries (without the device token), as the
    firebase adapter builds it: the image is repeated for APNs and the link for web
    push, and PUSH_ENVELOPE_BYTES stand for the ids and labels added at send time."""
    notification = {k: parts[k] for k in ("title", "body", "image") if parts.get(k)}
    data = {"msg_id": message_id, **({"link": parts["link"]} if parts.get("link") else {})}
    body: dict[str, object] = {"notification": notification, "data": data}
    if parts.get("image"):
        body["apns"] = {"fcm_options": {"image": parts["image"]}}
    if parts.get("link"):
        body["webpush"] = {"fcm_options": {"link": parts["link"]}}
    body["envelope"] = "x" * PUSH_ENVELOPE_BYTES
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _with_preheader(html: str, preheader: str) -> str:
    """The inbox preview line: a hidden block right after <body>, as mail clients expect."""
    from markupsafe import escape

    block = (
        '<div style="display:none;max-height:0;overflow:hidden;mso-hide:all" aria-hidden="true">'
        f"{escape(preheader)}</div>"
    )
    match = _BODY_TAG.search(html)
    return html[: match.end()] + block + html[match.end() :] if match else block + html


def _describe(exc: BaseException) -> tuple[str, str | None]:
    """What went wrong, and a hint for the template's author (or None)."""
    if isinstance(exc, RecursionError):
        return "a macro calls itself too deeply (recursion limit reached)", None
    if isinstance(exc, MemoryError):
        return "the template ran out of memory", None
    name = type(exc).__name__
    if name == "UndefinedError":  # raised by Python code, not a template's own lookup
        return f"undefined variable: {exc}", None
    return str(exc), None


@lru_cache(maxsize=256)  # one per pinned set in use, and the templates folder's
def _brand(path: str, mtime: int) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise RenderError(f"{path}: cannot read the brand file: {exc}") from exc
    if not isinstance(data, dict):
        raise RenderError(f"{path}: expected a mapping of names to values (name: My Shop)")
    return data
