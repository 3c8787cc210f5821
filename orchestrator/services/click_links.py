"""Click tracking: the links of a rendered message go through our redirect, `/c/<token>`.

Called once per message by the send pipeline, right after rendering
(`SendActivities._render`). Every absolute http(s) link a recipient can follow is
rewritten to `<public url>/c/<token>`, where the token names the message and the link's
index (`MessageLinks.click_token`); the URLs themselves are kept on the message row,
`content["links"]`, in index order. `GET /c/<token>` (orchestrator/api/pages.py) records
the click and redirects there.

What is rewritten, per channel:

- email: the `href` of every `<a>` in the HTML (not images, not other tags), and the
  links in the text part;
- SMS: the links in the body;
- push: the `link` the notification opens, and links in its title and body (never the
  `image`, which the device fetches by itself).

Our own links (unsubscribe, preferences, view in browser, survey: anything under the
public API address) are left as they are, and so is anything that is not an absolute
http(s) URL (`mailto:`, `tel:`, an app's own scheme). The same URL twice in a message
is one link, with one index.

The journey decides (`tracking:` in its file, read from the version the run is on):
`clicks: false` sends links as rendered, and `utm: {source: ...}` adds `utm_source`,
`utm_medium` (the channel), `utm_campaign` (the journey id) and `utm_content` (the send
step's id) to every link it tracks, never replacing a parameter a link already has.
Hand-written Python journeys have no file: they get the defaults. JOURNEYS_CLICK_TRACKING
=false turns the redirect off everywhere (UTM parameters are still added).
"""

from __future__ import annotations

import html as htmllib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from pydantic import ValidationError
from sqlmodel import Session, select

from ..dsl.models import Tracking
from ..rendering.renderer import PUSH_MAX_BYTES, Rendered, push_payload
from ..rendering.safe_links import link_problem
from ..rendering.sms import MAX_SMS_CHARACTERS, sms_length
from ..settings import Settings
from ..store.tables import JourneyRun, JourneyVersion, Message
from .links import MAX_TRACKED_LINKS, TRACKED_LINKS, MessageLinks

log = logging.getLogger(__name__)

# An <a> start tag (attribute values may hold ">"), and one attribute in it.
_A_TAG = re.compile(r"<a(?=[\s/>])(?:[^>\"']|\"[^\"]*\"|'[^']*')*>", re.IGNORECASE)
_ATTRIBUTE = re.compile(r"([^\s\"'<>/=]+)(?:\s*=\s*(\"[^\"]*\"|'[^']*'|[^\s\"'=<>`]+))?")
# A link in text: from its scheme to the next space or character a URL never holds raw.
_TEXT_LINK = re.compile(r"(?<![\w@/.+-])https?://[^\s<>\"'`]+", re.IGNORECASE)
_CLOSING = {")": "(", "]": "[", "}": "{"}


@dataclass
class LinkRewriter:
    """Rewrites the http(s) links of one message's parts; `links` are the URLs the
    redirect leads to, in index order."""

    decorate: Callable[[str], str] = lambda url: url  # adds UTM parameters
    redirect: Callable[[int], str] | None = None  # link index -> our redirect; None: no clicks
    own: Callable[[str], bool] = lambda url: False  # our own links, left as they are
    trackable: Callable[[str], bool] = lambda url: True  # hosts our redirect may lead to
    links: list[str] = field(default_factory=list)
    _indexes: dict[str, int] = field(default_factory=dict)

    def parts(self, channel: str, parts: dict[str, Any]) -> dict[str, Any]:
        """The parts with their links rewritten (parts that hold none are kept as they are)."""
        out = dict(parts)
        texts = {"email": ("text",), "sms": ("body",), "push": ("title", "body")}.get(channel, ())
        if channel == "email" and isinstance(out.get("html"), str):
            out["html"] = self.html(out["html"])
        for part in texts:
            if isinstance(out.get(part), str):
                out[part] = self.text(out[part])
        if channel == "push" and isinstance(out.get("link"), str) and out["link"]:
            out["link"] = self.link(out["link"]) or out["link"]
        return out

    def link(self, found: str) -> str | None:
        """What replaces a link as the message has it, or None: leave it as it is."""
        target, _ = link_problem(found)
        if target is None or self.own(target):
            return None  # not an absolute http(s) URL, or one of our own links
        target = self.decorate(target)
        if self.redirect is None or not self.trackable(target):
            return target
        index = self._indexes.get(target)
        if index is None:
            if len(self.links) >= MAX_TRACKED_LINKS:
                return target  # a token names at most 256 links of a message
            index = self._indexes[target] = len(self.links)
            self.links.append(target)
        return self.redirect(index)

    def html(self, html: str) -> str:
        """The `href` of every `<a>` tag (the first one, as browsers read it)."""
        return _A_TAG.sub(lambda tag: self._a_tag(tag.group()), html)

    def text(self, text: str) -> str:
        return _TEXT_LINK.sub(self._text_link, text)

    def _a_tag(self, tag: str) -> str:
        for attribute in _ATTRIBUTE.finditer(tag, 2, len(tag) - 1):
            if attribute.group(1).lower() != "href":
                continue
            raw = attribute.group(2)
            if raw is None:
                return tag
            value = raw[1:-1] if raw[0] in "\"'" else raw
            replacement = self.link(htmllib.unescape(value))
            if replacement is None:
                return tag
            start, end = attribute.span(2)
            return f'{tag[:start]}"{htmllib.escape(replacement, quote=True)}"{tag[end:]}'
        return tag

    def _text_link(self, match: re.Match[str]) -> str:
        url = _without_trailing_punctuation(match.group())
        replacement = self.link(url)
        if replacement is None:
            return match.group()
        return replacement + match.group()[len(url) :]


def host_allowed(url: str, domains: list[str]) -> bool:
    """Whether our redirect may lead to `url`: its host is one of `domains` or under one
    (any host when `domains` is empty)."""
    if not domains:
        return True
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    return any(
        host == d or host.endswith("." + d) for d in (d.strip(".").lower() for d in domains) if d
    )


def _without_trailing_punctuation(url: str) -> str:
    """A link in prose without the sentence's punctuation after it: `(see https://x/a).`"""
    while url:
        last = url[-1]
        if last in ".,;:!?*" or (last in _CLOSING and url.count(_CLOSING[last]) < url.count(last)):
            url = url[:-1]
            continue
        break
    return url


def with_utm(url: str, parameters: dict[str, str]) -> str:
    """`url` with the UTM `parameters` it does not have yet appended to its query; the
    rest (other parameters and their order, the fragment) is kept exactly."""
    if not parameters:
        return url
    rest, hash_mark, fragment = url.partition("#")
    base, _, query = rest.partition("?")
    present = {name for name, _ in parse_qsl(query, keep_blank_values=True)}
    added = "&".join(
        f"{name}={quote(value, safe='')}"
        for name, value in parameters.items()
        if name not in present
    )
    if not added:
        return url
    joined = f"{query}&{added}" if query and not query.endswith("&") else query + added
    return f"{base}?{joined}{hash_mark}{fragment}"


def utm_parameters(
    tracking: Tracking, channel: str, journey_id: str, step_id: str
) -> dict[str, str]:
    if tracking.utm is None:
        return {}
    return {
        "utm_source": tracking.utm.source,
        "utm_medium": channel,
        "utm_campaign": journey_id,
        "utm_content": step_id,
    }


def journey_tracking(session: Session, run: JourneyRun | None) -> Tracking:
    """The `tracking:` of the journey version the run is on; the defaults for a
    hand-written journey (version 0, no file) or a run the store does not have."""
    if run is None or run.version < 1:
        return Tracking()
    spec = session.exec(
        select(JourneyVersion.spec).where(
            JourneyVersion.journey_id == run.journey_id, JourneyVersion.version == run.version
        )
    ).first()
    raw = spec.get("tracking") if isinstance(spec, dict) else None
    if not raw:
        return Tracking()
    try:
        return Tracking.model_validate(raw)
    except ValidationError as exc:  # a spec is validated when deployed: not expected
        log.warning("journey %s v%s: tracking ignored: %s", run.journey_id, run.version, exc)
        return Tracking()


def track_clicks(
    session: Session,
    rendered: Rendered,
    message: Message,
    run: JourneyRun | None,
    links: MessageLinks,
    settings: Settings,
) -> Rendered:
    """The rendered message with its links rewritten for click tracking and UTM, and
    the URLs its redirect tokens name in `parts["links"]`.

    A rewrite that would take an SMS over its segment limit, or a push over FCM's size,
    is not made: that message goes out with its links as rendered (and a warning).
    A transactional message of the API (no journey) keeps its links as the shop's back
    end wrote them: a password-reset token must not pass through a redirect or be stored.
    """
    if not message.journey_id:
        return rendered
    tracking = journey_tracking(session, run)
    channel = rendered.channel
    clicks = (
        bool(settings.click_tracking) and tracking.clicks and channel in ("email", "sms", "push")
    )
    utm = utm_parameters(tracking, channel, message.journey_id, message.step_id)
    if not clicks and not utm:
        return rendered
    rewriter = LinkRewriter(
        decorate=lambda url: with_utm(url, utm),
        redirect=(lambda index: links.click_url(message.id, index)) if clicks else None,
        own=links.points_here,
        trackable=lambda url: host_allowed(url, settings.click_tracking_domains),
    )
    parts = rewriter.parts(channel, rendered.parts)
    if rewriter.links:
        parts[TRACKED_LINKS] = list(rewriter.links)
    if channel == "sms":
        length = sms_length(parts["body"])
        limit = settings.sms_max_segments
        if len(parts["body"]) > MAX_SMS_CHARACTERS or length.segments > limit:
            log.warning(
                "message %s: links sent as rendered: with them rewritten the SMS would be %s "
                "(the limit is %d segments)",
                message.id,
                length.describe(),
                limit,
            )
            return rendered
        return replace(rendered, parts=parts, sms=length)
    if channel == "push":
        size = len(push_payload(parts, message.id))
        if size > PUSH_MAX_BYTES:
            log.warning(
                "message %s: links sent as rendered: with them rewritten the push payload "
                "would be %d bytes (FCM accepts %d)",
                message.id,
                size,
                PUSH_MAX_BYTES,
            )
            return rendered
        return replace(rendered, parts=parts, push_bytes=size)
    return replace(rendered, parts=parts)
