"""Pages a recipient opens from a message: the email in a browser, unsubscribe and
preferences. No login, no JavaScript; links carry signed tokens (`orchestrator.services.links`).

- `GET /m/{token}`: the email as it was sent.
- `GET /u/{token}`: says what unsubscribing does, with a button; a GET never changes
  anything, because mail scanners and link previews fetch every link in a message.
- `POST /u/{token}`: RFC 8058 one-click (`List-Unsubscribe=One-Click`, sent by the
  mailbox provider) or our own button: opts the contact out of marketing on the
  message's channel. Idempotent, 200, no login.
- `GET|POST /preferences/{token}`: marketing and service messages per channel.
- `GET /s/{token}?score=N`: a survey score link (NPS, 0-10) asks to confirm with one
  button; `POST /s/{token}` (that button, `score=N`) stores `Survey Answered` for the
  message's contact. The first answer counts; later clicks are thanked and change
  nothing. A GET stores nothing for the same reason as `/u`: mail scanners and link
  previews open every one of the eleven links before the recipient sees the email.
  Only a message that asks (its content carries this survey link) takes an answer:
  the token of any other message gets a 404 page saying it asks no question.
- `GET /c/{token}`: a tracked link (`orchestrator.services.click_links`): records the
  click (`Email Link Clicked`, `SMS Link Clicked`, `Push Link Clicked`) and redirects
  to the link's URL, kept on the message row. `HEAD` (link checkers) and browser
  prefetches are redirected too and record nothing.

A token that is not ours, or whose message or contact is gone, gets the same 404
page whatever the reason, so a guess learns nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit, urlunsplit

import idna
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup, escape
from sqlalchemy import Engine

from ..feedback.recording import asks_question, follow_click, record_survey_answer, survey_answer
from ..store.consent import ChannelConsent, effective_consent, set_consent
from ..store.db import session_scope
from ..store.identity import load_contact
from ..store.tables import Message, utcnow
from .body import read_body
from .context import ApiContext, api_context
from .errors import ApiError

router = APIRouter(include_in_schema=False)

# A sent email shown in a browser: no scripts, not indexed, not cached by proxies.
VIEW_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src * data:; style-src 'unsafe-inline'",
    "X-Robots-Tag": "noindex",
    "Cache-Control": "private, no-store",
    "Referrer-Policy": "no-referrer",
}
# Our own pages: the same, stricter still (no images; forms post only to us; not framed,
# so another site cannot trick a click on the unsubscribe button).
PAGE_HEADERS = {
    **VIEW_HEADERS,
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
}
NOT_FOUND_PAGE = "<!doctype html><p>This message is no longer available.</p>"
FORM_LIMIT = 4 * 1024  # the preference form is a few hundred bytes
CHANNEL_NAMES = {"email": "Email", "sms": "Text messages (SMS)", "push": "Push notifications"}
MARKETING_NAMES = {
    "email": "marketing email",
    "sms": "marketing text messages",
    "push": "marketing push notifications",
}
STYLE = (
    "body{font:16px/1.5 system-ui,sans-serif;margin:0;padding:1rem;color:#222}"
    "main{max-width:32rem;margin:2rem auto}fieldset{margin:0 0 1rem;border:1px solid #ccc}"
    "label{display:block;padding:.25rem 0}button{font:inherit;padding:.5rem 1rem}"
)


@dataclass(frozen=True)
class Recipient:
    """Who a message link is for, as far as the page needs to know."""

    message_id: str
    contact_id: str
    channel: str
    choices: list[ChannelConsent]


# --- view in browser ----------------------------------------------------------------


@router.get("/m/{token}", response_class=HTMLResponse)
async def view_in_browser(request: Request, token: str) -> HTMLResponse:
    """The email as it was sent, for recipients whose mail client shows it badly."""
    ctx = api_context(request)
    message_id = ctx.links.message_id(token) if ctx.links is not None else None
    html = await ctx.db(_sent_html, ctx.engine, message_id) if message_id else None
    if html is None:
        return HTMLResponse(NOT_FOUND_PAGE, status_code=404, headers=VIEW_HEADERS)
    return HTMLResponse(html, headers=VIEW_HEADERS)


def _sent_html(engine: Engine, message_id: str) -> str | None:
    with session_scope(engine) as session:
        row = session.get(Message, message_id)
        if row is None or row.channel != "email" or row.status in ("pending", "failed"):
            return None
        content = row.content or {}
        if content.get("html"):
            return str(content["html"])
        if content.get("text"):
            return f"<!doctype html><pre>{escape(content['text'])}</pre>"
        return None


# --- unsubscribe --------------------------------------------------------------------


@router.get("/u/{token}", response_class=HTMLResponse)
async def unsubscribe_page(request: Request, token: str) -> HTMLResponse:
    """What unsubscribing does, and the button that does it (a GET changes nothing)."""
    ctx = api_context(request)
    recipient = await _recipient(ctx, token)
    if recipient is None:
        return _not_found()
    what = MARKETING_NAMES.get(recipient.channel, "marketing messages")
    preferences = _preferences_link(ctx, recipient)
    if not _choice(recipient).marketing:
        return _page(
            "Unsubscribed",
            Markup("<h1>You are not subscribed</h1><p>You do not get {} from us.</p>{}").format(
                what, preferences
            ),
        )
    body = Markup(
        "<h1>Unsubscribe</h1>"
        "<p>You will no longer get {what} from us. Messages about your orders and your "
        "account still arrive.</p>"
        '<form method="post"><button type="submit">Unsubscribe from {what}</button></form>'
        "{preferences}"
    ).format(what=what, preferences=preferences)
    return _page("Unsubscribe", body)


@router.post("/u/{token}", response_class=HTMLResponse)
async def unsubscribe(request: Request, token: str) -> HTMLResponse:
    """RFC 8058 one-click, or the page's button: opt out of marketing on this channel.

    The body (`List-Unsubscribe=One-Click`, or empty) is not needed: the signed token
    says everything, and a mailbox provider must get a 200 for a repeated request too.
    """
    ctx = api_context(request)
    recipient = await _recipient(ctx, token)
    if recipient is None:
        return _not_found()
    await ctx.db(_unsubscribe, ctx.engine, recipient)
    what = MARKETING_NAMES.get(recipient.channel, "marketing messages")
    body = Markup(
        "<h1>You are unsubscribed</h1><p>You will no longer get {}. It can take a moment "
        "for messages already on their way.</p>{}"
    ).format(what, _preferences_link(ctx, recipient))
    return _page("Unsubscribed", body)


def _unsubscribe(engine: Engine, recipient: Recipient) -> None:
    with session_scope(engine) as session:
        set_consent(session, recipient.contact_id, recipient.channel, marketing=False)
        message = session.get(Message, recipient.message_id)
        if message is not None and not any(
            e.get("check") == "unsubscribe" for e in message.timeline or []
        ):  # which message made them leave: kept on the message, once
            entry = {"status": message.status, "at": utcnow().isoformat()}
            message.timeline = [
                *message.timeline,
                {**entry, "check": "unsubscribe", "result": "marketing opt-out"},
            ]


# --- preferences --------------------------------------------------------------------


@router.get("/preferences/{token}", response_class=HTMLResponse)
async def preferences_page(request: Request, token: str) -> HTMLResponse:
    """The contact's choices per channel, as a plain form."""
    ctx = api_context(request)
    recipient = await _recipient(ctx, token)
    if recipient is None:
        return _not_found()
    return _page("Your preferences", _preferences_form(recipient.choices))


@router.post("/preferences/{token}", response_class=HTMLResponse)
async def save_preferences(request: Request, token: str) -> HTMLResponse:
    """Save the form: every box not ticked is a no (browsers do not send unticked boxes)."""
    ctx = api_context(request)
    recipient = await _recipient(ctx, token)
    if recipient is None:
        return _not_found()
    fields = await _form(request)
    if isinstance(fields, HTMLResponse):
        return fields
    if fields.get("form") != ["preferences"]:
        # Not our form (a bare POST would otherwise read as "untick everything").
        note = "Nothing was saved: please use the form below."
        return _page("Not saved", _notice(note) + _preferences_form(recipient.choices), 400)
    wanted = {
        c.channel: (f"{c.channel}_marketing" in fields, f"{c.channel}_transactional" in fields)
        for c in recipient.choices
    }
    choices = await ctx.db(_save, ctx.engine, ctx, recipient, wanted)
    saved = _notice("Your preferences are saved.")
    return _page("Your preferences", saved + _preferences_form(choices))


def _save(
    engine: Engine, ctx: ApiContext, recipient: Recipient, wanted: dict[str, tuple[bool, bool]]
) -> list[ChannelConsent]:
    """Write only what the person changed: an untouched box keeps its record as it was."""
    explicit = ctx.settings.marketing_consent == "explicit"
    with session_scope(engine) as session:
        for choice in recipient.choices:
            marketing, transactional = wanted[choice.channel]
            if (marketing, transactional) == (choice.marketing, choice.transactional):
                continue
            set_consent(
                session,
                recipient.contact_id,
                choice.channel,
                marketing=marketing if marketing != choice.marketing else None,
                transactional=transactional if transactional != choice.transactional else None,
            )
        contact = load_contact(session, recipient.contact_id)
        return effective_consent(contact.consent if contact else {}, explicit)


def _preferences_form(choices: list[ChannelConsent]) -> Markup:
    fieldsets = Markup("").join(
        Markup("<fieldset><legend>{name}</legend>{marketing}{service}</fieldset>").format(
            name=CHANNEL_NAMES.get(c.channel, c.channel),
            marketing=_checkbox(c.channel, "marketing", "Offers and news", c.marketing),
            service=_checkbox(
                c.channel,
                "transactional",
                "Service messages (orders, account); without them you get none on this channel",
                c.transactional,
            ),
        )
        for c in choices
    )
    return Markup(
        "<h1>Your preferences</h1><p>Choose what we may send you, per channel.</p>"
        '<form method="post"><input type="hidden" name="form" value="preferences">'
        '{}<button type="submit">Save</button></form>'
    ).format(fieldsets)


def _checkbox(channel: str, kind: str, label: str, checked: bool) -> Markup:
    name = f"{channel}_{kind}"
    return Markup(
        '<label for="{name}"><input type="checkbox" id="{name}" name="{name}" value="yes"{on}> '
        "{label}</label>"
    ).format(name=name, label=label, on=Markup(" checked") if checked else "")


# --- survey answers -------------------------------------------------------------------

SCORES = range(11)  # NPS: 0 (not at all likely) to 10 (extremely likely)
SCORE_PATTERN = re.compile(r"\d{1,2}")


@dataclass(frozen=True)
class Survey:
    """The message a survey link came in, and the answer already given to it (if any)."""

    message_id: str
    link: str  # the message's own survey link, `/s/<token>`
    answered: int | None
    asks: bool = True  # False: the message asks no question (an order thank-you)


@router.get("/s/{token}", response_class=HTMLResponse)
async def survey_page(request: Request, token: str) -> HTMLResponse:
    """Confirm the score the link names, with one button (a GET stores nothing)."""
    ctx = api_context(request)
    survey = await _survey(ctx, token)
    if survey is None:
        return _not_found()
    if not survey.asks:
        return _no_question()
    if survey.answered is not None:
        return _answered(survey.answered, first=False)
    score, problem = _score(request.query_params.getlist("score"))
    if score is None:
        return _no_score(problem)
    body = Markup(
        "<h1>Your answer</h1><p>How likely are you to recommend us to a friend? "
        "You chose <strong>{score} out of 10</strong>.</p>"
        '<form method="post"><input type="hidden" name="score" value="{score}">'
        '<button type="submit">Submit score {score}</button></form>'
        "<p>Not what you meant? Choose another score:</p>{choices}"
    ).format(score=score, choices=_score_choices())
    return _page("Your answer", body)


@router.post("/s/{token}", response_class=HTMLResponse)
async def answer_survey(request: Request, token: str) -> HTMLResponse:
    """Store the score (form field `score`, else the link's `?score=`): the first one counts."""
    ctx = api_context(request)
    survey = await _survey(ctx, token)
    if survey is None:
        return _not_found()
    if not survey.asks:
        return _no_question()
    fields = await _form(request)
    if isinstance(fields, HTMLResponse):
        return fields
    score, problem = _score(fields.get("score") or request.query_params.getlist("score"))
    if score is None:
        if survey.answered is not None:
            return _answered(survey.answered, first=False)
        return _no_score(problem)
    outcome = await ctx.db(record_survey_answer, ctx.engine, survey.message_id, score, survey.link)
    if outcome is None:  # the contact was erased since the page was shown
        return _not_found()
    stored, counted = outcome
    if stored:
        ctx.stored()
    return _answered(counted, first=stored)


async def _form(request: Request) -> dict[str, list[str]] | HTMLResponse:
    """The posted form's fields, or the page that says why it could not be read."""
    try:
        raw = await read_body(request, FORM_LIMIT)
    except ApiError as exc:
        return _page("Not saved", _notice(exc.message), exc.status)
    return parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)


async def _survey(ctx: ApiContext, token: str) -> Survey | None:
    message_id = ctx.links.message_id(token) if ctx.links is not None else None
    if not message_id or ctx.links is None:
        return None
    # The link as the message was given it (whatever form this request's token took).
    link = "/s/" + ctx.links.token(message_id)
    found: Survey | None = await ctx.db(_load_survey, ctx.engine, message_id, link)
    return found


def _load_survey(engine: Engine, message_id: str, link: str) -> Survey | None:
    with session_scope(engine) as session:
        message = session.get(Message, message_id)
        if message is None or load_contact(session, message.contact_id) is None:
            return None
        if not asks_question(message, link):
            return Survey(message.id, link, None, asks=False)
        return Survey(message.id, link, survey_answer(session, message.id))


def _score(values: list[str]) -> tuple[int | None, str]:
    """The score a request names, or why it names none (for the 400 page)."""
    raw = values[0].strip() if values else ""
    if not raw:
        return None, "This link has no score. Please choose one:"
    if SCORE_PATTERN.fullmatch(raw) and int(raw) in SCORES:
        return int(raw), ""
    shown = raw if len(raw) <= 20 else raw[:20] + "…"
    return (
        None,
        f"“{shown}” is not a score: a score is a whole number from 0 to 10. Please choose one:",
    )


def _no_score(problem: str) -> HTMLResponse:
    """A 400 that says what was wrong and offers every score, so the answer still gets in."""
    heading = Markup("<h1>Choose a score</h1>")
    return _page("Choose a score", heading + _notice(problem) + _score_choices(), 400)


def _score_choices() -> Markup:
    buttons = Markup(" ").join(
        Markup('<button type="submit" name="score" value="{n}">{n}</button>').format(n=n)
        for n in SCORES
    )
    return Markup(
        '<form method="post"><p>{}</p><p class="small">0 = not at all likely, '
        "10 = extremely likely</p></form>"
    ).format(buttons)


def _answered(score: int, first: bool) -> HTMLResponse:
    if first:
        body = Markup(
            "<h1>Thank you!</h1><p>We got your answer: <strong>{} out of 10</strong>. "
            "It goes straight to our team and helps us get better.</p>"
        ).format(score)
    else:
        body = Markup(
            "<h1>You already answered, thank you</h1><p>We have your answer "
            "(<strong>{} out of 10</strong>); only the first answer counts.</p>"
        ).format(score)
    return _page("Thank you", body)


# --- tracked links --------------------------------------------------------------------

# The redirect: never cached (each click is one), and the recipient's address bar, which
# holds our token, is not sent to the site the link leads to.
REDIRECT_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
}
# Browsers say so when they fetch a page nobody asked to see yet.
PREFETCH_HEADERS = ("purpose", "sec-purpose", "x-purpose", "x-moz")
URL_CHARACTERS = "".join(chr(c) for c in range(0x21, 0x7F))  # printable ASCII, no space


@router.api_route("/c/{token}", methods=["GET", "HEAD"], response_class=HTMLResponse)
async def follow_link(request: Request, token: str) -> Response:
    """Record the click (a GET; a HEAD or a prefetch records nothing) and redirect."""
    ctx = api_context(request)
    target = ctx.links.click_target(token) if ctx.links is not None else None
    if target is None:
        return _not_found()
    message_id, index = target
    count = request.method == "GET" and not _prefetch(request)
    click = await ctx.db(follow_click, ctx.engine, message_id, index, count)
    location = _location(click.url) if click is not None else None
    if click is None or location is None:
        return _not_found()
    if click.stored:
        ctx.stored()
    return Response(status_code=302, headers={"Location": location, **REDIRECT_HEADERS})


def _prefetch(request: Request) -> bool:
    said = " ".join(request.headers.get(name, "") for name in PREFETCH_HEADERS).lower()
    return "prefetch" in said or "preview" in said


_DNS_NAME = re.compile(
    r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\.?"
)


def _location(url: str) -> str | None:
    """`url` as a Location header carries it: ASCII, the host in IDNA (`xn--`), other
    characters percent-encoded as UTF-8 (what a browser sends for the link)."""
    if url.isascii():
        return url
    parts = urlsplit(url)
    netloc = parts.netloc
    if not netloc.isascii():
        # UTS 46 non-transitional, as browsers map hosts: Python's own "idna" codec is
        # IDNA 2003, which turns faß.de into fass.de (another domain). A host that does not
        # map, or maps to anything but a DNS name (a full-width backslash becomes `\`,
        # which a browser reads as the end of the host), is not redirected to.
        try:
            host = idna.encode(parts.hostname or "", uts46=True, transitional=False).decode()
        except (idna.IDNAError, UnicodeError, ValueError):
            return None
        if not _DNS_NAME.fullmatch(host):
            return None
        netloc = host if parts.port is None else f"{host}:{parts.port}"

    def encoded(text: str) -> str:
        return quote(text, safe=URL_CHARACTERS)

    return urlunsplit(
        (parts.scheme, netloc, encoded(parts.path), encoded(parts.query), encoded(parts.fragment))
    )


# --- shared ---------------------------------------------------------------------------


async def _recipient(ctx: ApiContext, token: str) -> Recipient | None:
    message_id = ctx.links.message_id(token) if ctx.links is not None else None
    if not message_id:
        return None
    explicit = ctx.settings.marketing_consent == "explicit"
    found: Recipient | None = await ctx.db(_load_recipient, ctx.engine, message_id, explicit)
    return found


def _load_recipient(engine: Engine, message_id: str, explicit: bool) -> Recipient | None:
    with session_scope(engine) as session:
        message = session.get(Message, message_id)
        if message is None:
            return None
        contact = load_contact(session, message.contact_id)
        if contact is None:  # erased, or never stored
            return None
        choices = effective_consent(contact.consent or {}, explicit)
        return Recipient(message.id, contact.id, message.channel, choices)


def _choice(recipient: Recipient) -> ChannelConsent:
    return next(
        (c for c in recipient.choices if c.channel == recipient.channel),
        ChannelConsent(recipient.channel, marketing=False, transactional=False),
    )


def _preferences_link(ctx: ApiContext, recipient: Recipient) -> Markup:
    assert ctx.links is not None  # a recipient was found through a verified token
    url = ctx.links.for_message(recipient.message_id)["preferences_url"]
    return Markup('<p><a href="{}">Choose what we may send you</a></p>').format(url)


def _notice(text: str) -> Markup:
    return Markup('<p role="status"><strong>{}</strong></p>').format(text)


def _page(title: str, body: Any, status: int = 200) -> HTMLResponse:
    html = Markup(
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex"><title>{title}</title>'
        "<style>{style}</style></head><body><main>{body}</main></body></html>"
    ).format(title=title, style=Markup(STYLE), body=body)
    return HTMLResponse(str(html), status_code=status, headers=PAGE_HEADERS)


def _no_question() -> HTMLResponse:
    """A real message's token, but the message asks nothing: a 404 that says so."""
    body = Markup(
        "<h1>Nothing to answer</h1><p>This message asks no question, so this link takes "
        "no answer. If you meant to rate us, please use the link in our survey email.</p>"
    )
    return _page("Nothing to answer", body, 404)


def _not_found() -> HTMLResponse:
    body = Markup("<h1>Link not valid</h1><p>This link is not valid or no longer in use.</p>")
    return _page("Link not valid", body, 404)
