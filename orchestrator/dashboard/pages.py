"""The dashboard's pages, under `/dashboard/`: what the CLI and the API say, on screen.

- `/dashboard/`: every journey with its headline numbers for a period and a sparkline;
- `/dashboard/journeys/{id}`: the diagram with live counts, funnel, steps, messages,
  A/B splits with their verdicts, versions with what changed, the last simulation;
- `/dashboard/messages` (searchable log) and `/dashboard/messages/{id}` (timeline, content);
- `/dashboard/contacts/{id}`: profile, consent, suppressions, points, coupons, runs and
  the story of `journeys explain`; export and erasure (with confirmation);
- `/dashboard/health`: the checks of `/health`, provider errors, deferred sends;
- `/dashboard/login`, `/dashboard/logout`; `/dashboard/simulations/{id}`: a simulation's
  HTML report.

Every number comes from the reporting model (`orchestrator.analytics`) that `journeys
stats`, `journeys explain` and `/v1/...` read: never a query of this module's own.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from markupsafe import Markup
from sqlmodel import col, select

from ..analytics.daily import entries_by_day, latest_entry_day
from ..analytics.diagram import journey_svg
from ..analytics.message_log import (
    CHANNELS,
    STATUSES,
    MessageQuery,
    message_detail,
    search_messages,
)
from ..analytics.profile import contact_profile, find_contact
from ..analytics.send_health import SendHealth, send_health
from ..analytics.stats import (
    JourneyHeadline,
    JourneyStats,
    UnknownJourney,
    headlines,
    journey_stats,
    money_text,
)
from ..analytics.story import DEFAULT_EVENTS, contact_story
from ..api.body import read_body
from ..api.context import api_context
from ..api.devices import check_contact_id
from ..api.errors import ApiError
from ..api.health import health_checks
from ..api.pages import VIEW_HEADERS
from ..deployment.history import VersionSummary, version_history
from ..dsl import models as m
from ..services.privacy import (
    ErasureIncomplete,
    StoreBusy,
    TemporalUnavailable,
    erase_contact,
    export_contact,
)
from ..simulation.saved import latest_simulation, simulation_page, with_back_link
from ..store.db import session_scope
from ..store.tables import JourneyVersion, utcnow
from . import i18n
from .charts import Bar, funnel, sparkline
from .sessions import (
    COOKIE,
    LOGIN_COOKIE,
    PATH,
    DashboardSession,
    admin_key,
    cookie_options,
    new_session,
    same_origin,
)
from .web import HEADERS, LoginRequired, config, guard, render

router = APIRouter(prefix=PATH, include_in_schema=False)
log = logging.getLogger(__name__)
PERIODS = {"7": 7, "30": 30, "90": 90}
DEFAULT_PERIOD = "30"
SPARK_DAYS = 30  # the sparkline's days when the period is "all time"
SPARK_MAX_DAYS = 92  # a longer period draws its last 92 days: a page is never days-sized
# A contact's page shows the newest of its story and runs; `?all=1` shows everything.
STORY_LINES, RUN_ROWS = 250, 50
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2100, 12, 31)
# Each message's counts, with the rate `journeys stats` shows beside it.
MESSAGE_METRICS = (
    ("sent", None),
    ("delivered", "delivery"),
    ("opened", "open"),
    ("clicked", "click"),
    ("bounced", "bounce"),
    ("unsubscribed", "unsubscribe"),
)
FORM_LIMIT = 8 * 1024
STATIC = {"dashboard.css": "text/css", "dashboard.js": "text/javascript"}


class PageProblem(Exception):
    """A request the page cannot answer: shown as a page with `status`, saying what to do."""

    def __init__(self, status: int, title: str, text: str) -> None:
        self.status, self.title, self.text = status, title, text


@dataclass(frozen=True)
class Period:
    choice: str  # "7", "30", "90", "all" or "custom"
    first: date | None
    last: date | None  # None: all time, also runs stamped after today (a simulation's)

    @property
    def params(self) -> str:
        if self.choice == "custom":
            return urlencode({"since": self.first or "", "until": self.last or ""})
        return urlencode({"days": self.choice})

    @property
    def query(self) -> str:
        return "" if self.choice == DEFAULT_PERIOD else "?" + self.params


def _period(request: Request) -> Period:
    q = request.query_params
    today = utcnow().date()
    if "since" in q or "until" in q:
        first = _day(q.get("since"), "since")
        last = _day(q.get("until"), "until") or today
        if first and first > last:
            raise PageProblem(400, "Bad period", f"since {first} is after until {last}")
        return Period("custom", first, last)
    choice = q.get("days", DEFAULT_PERIOD)
    if choice == "all":
        return Period("all", None, None)
    if choice not in PERIODS:
        raise PageProblem(400, "Bad period", f"days must be 7, 30, 90 or all, not {choice!r}")
    return Period(choice, today - timedelta(days=PERIODS[choice] - 1), today)


def _day(text: str | None, name: str) -> date | None:
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
        if not FIRST_DAY <= day <= LAST_DAY:
            raise ValueError(text)
        return day
    except ValueError:
        raise PageProblem(
            400,
            "Bad date",
            f"{name} must be a day as YYYY-MM-DD between {FIRST_DAY} and {LAST_DAY}, "
            f"not {text[:40]!r}",
        ) from None


async def _page(request: Request, build: Any) -> Response:
    """Runs `build(session)` behind the guard; problems become pages, not tracebacks."""
    session: DashboardSession | None = None
    try:
        session = await guard(request)
        return await build(session)
    except LoginRequired as exc:
        return exc.response
    except (PageProblem, ApiError) as exc:
        tr = i18n.translator(i18n.language(request))
        if isinstance(exc, ApiError):
            status, title, text = exc.status, "Not possible", str(exc)
        else:
            status, title, text = exc.status, exc.title, exc.text
        return render(request, "problem.html", session, status, title=tr(title), text=text)


async def _read(request: Request, fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(session, *args)` in a store session, in a thread (a busy database is a 503)."""
    ctx = api_context(request)

    def run() -> Any:
        with session_scope(ctx.engine) as s:
            return fn(s, *args)

    return await ctx.db(run)


# --- journeys ---------------------------------------------------------------------


@router.get("")
async def root() -> RedirectResponse:
    return RedirectResponse(PATH + "/", status_code=308)


@router.get("/")
async def journeys_page(request: Request) -> Response:
    async def build(session: DashboardSession) -> Response:
        period = _period(request)
        ctx = api_context(request)

        def read() -> tuple[list[Any], dict[str, list[int]], date, date, int]:
            with session_scope(ctx.engine) as s:
                newest = latest_entry_day(s)
                # All time ends its sparkline on the newest entry (a simulation's is ahead).
                last = period.last or newest or utcnow().date()
                first = max(
                    period.first or last - timedelta(days=SPARK_DAYS - 1),
                    last - timedelta(days=SPARK_MAX_DAYS - 1),
                )
                found = headlines(s, period.first, period.last)
                ever = 0
                if period.first is not None and not any(h.entered for h in found):
                    ever = sum(h.entered for h in headlines(s))
                return found, entries_by_day(s, first, last), first, last, ever

        found, daily, spark_first, spark_last, ever = await ctx.db(read)
        tr = i18n.translator(i18n.language(request))
        days = (spark_last - spark_first).days + 1
        rows = [
            {
                "headline": h,
                "revenue": _revenue(h, i18n.language(request)) if h.revenue is not None else "—",
                "spark": sparkline(
                    daily.get(h.journey_id, [0] * days),
                    f"{tr('Entries per day')}: "
                    + ", ".join(str(v) for v in daily.get(h.journey_id, [0] * days)),
                ),
            }
            for h in found
        ]
        return render(
            request, "journeys.html", session, rows=rows, period=period, entered_ever=ever
        )

    return await _page(request, build)


@router.get("/journeys/{journey_id}")
async def journey_page(request: Request, journey_id: str) -> Response:
    async def build(session: DashboardSession) -> Response:
        period = _period(request)
        ctx = api_context(request)
        asked = request.query_params.get("version")
        if asked is not None and not (asked.isascii() and asked.isdigit() and len(asked) < 10):
            raise PageProblem(400, "Bad version", f"version must be a number, not {asked!r}")
        version = int(asked) if asked is not None else None

        def read() -> tuple[JourneyStats, list[JourneyVersion], list[VersionSummary]]:
            with session_scope(ctx.engine) as s:
                stats = journey_stats(s, journey_id, period.first, period.last, version)
                rows = s.exec(
                    select(JourneyVersion)
                    .where(JourneyVersion.journey_id == journey_id)
                    .order_by(col(JourneyVersion.version))
                ).all()
                return stats, list(rows), version_history(s, journey_id)

        try:
            stats, version_rows, history = await ctx.db(read)
        except UnknownJourney as exc:
            raise PageProblem(404, "No such journey", str(exc)) from None
        lang = i18n.language(request)
        tr = i18n.translator(lang)
        shown = next(
            (r for r in version_rows if r.version == (version or _current(version_rows))),
            version_rows[-1],
        )
        model = m.Journey.model_validate(shown.spec)
        simulation = latest_simulation(ctx.settings.data_dir, journey_id)
        return render(
            request,
            "journey.html",
            session,
            stats=stats,
            period=period,
            revenue=_revenue(stats, lang),
            diagram=Markup(journey_svg(model, stats)),
            funnel=funnel(_funnel(stats, tr, lang), tr("Funnel from entry to goal")),
            metrics=MESSAGE_METRICS,
            versions=history,
            simulation=simulation,
            verdict=lambda c: i18n.verdict(c, lang),
            pct_points=lambda v: i18n.points(v, lang),
        )

    return await _page(request, build)


def _revenue(stats: JourneyStats | JourneyHeadline, lang: str) -> str:
    """`revenue_text` in the page's number format: currencies are never added up."""
    return money_text(stats.revenue, stats.revenue_by_currency, lambda v: i18n.money(v, lang))


def _current(rows: list[Any]) -> int:
    active = [r.version for r in rows if r.active]
    return active[-1] if active else rows[-1].version


def _funnel(stats: JourneyStats, tr: Any, lang: str) -> list[Bar]:
    """Entered, then each message's sends in the journey's order, then the goal."""
    entered = stats.entered

    def note(count: int) -> str:
        return f"{i18n.percent(count / entered, lang)} {tr('of entered')}" if entered else ""

    bars = [Bar(tr("Entered"), entered)]
    for msg in stats.messages:
        bars.append(Bar(f"{msg.step_id}: {tr('sent')}", msg.sent, note(msg.sent)))
    if stats.goal:
        bars.append(
            Bar(f"{tr('Converted')} ({stats.goal})", stats.converted, note(stats.converted))
        )
    return bars


# --- messages ---------------------------------------------------------------------


@router.get("/messages")
async def messages_page(request: Request) -> Response:
    async def build(session: DashboardSession) -> Response:
        ctx = api_context(request)
        q = request.query_params
        channel, status = q.get("channel") or None, q.get("status") or None
        if channel is not None and channel not in CHANNELS:
            raise PageProblem(400, "Bad filter", f"channel must be one of {', '.join(CHANNELS)}")
        if status is not None and status not in STATUSES:
            raise PageProblem(400, "Bad filter", f"status must be one of {', '.join(STATUSES)}")
        since, until = _day(q.get("since"), "since"), _day(q.get("until"), "until")
        contact = (q.get("contact") or "").strip() or None
        if contact is not None:
            check_contact_id(contact)
        query = MessageQuery(
            journey=q.get("journey") or None,
            step=q.get("step") or None,
            channel=channel,
            status=status,
            contact=contact,
            since=since,
            until=until,
            before=_cursor(q.get("before")),
        )

        def read() -> tuple[Any, list[str]]:
            with session_scope(ctx.engine) as s:
                page = search_messages(s, query)
                names = list(
                    s.exec(
                        select(JourneyVersion.journey_id)
                        .distinct()
                        .order_by(col(JourneyVersion.journey_id))
                    )
                )
                return page, names

        page, names = await ctx.db(read)
        next_url = None
        if page.next_before is not None:
            at, last_id = page.next_before
            kept = {k: v for k, v in q.items() if k not in ("before", "lang") and v}
            next_url = "?" + urlencode({**kept, "before": f"{at.isoformat()}|{last_id}"})
        shown = {
            "journey": query.journey,
            "step": query.step,
            "channel": channel,
            "status": status,
            "contact": contact,
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
        }
        return render(
            request,
            "messages.html",
            session,
            page=page,
            q=shown,
            journeys=names,
            channels=CHANNELS,
            statuses=STATUSES,
            next_url=next_url,
        )

    return await _page(request, build)


def _cursor(text: str | None) -> tuple[datetime, str] | None:
    if not text:
        return None
    at, _, last_id = text.partition("|")
    try:
        moment = datetime.fromisoformat(at)
        moment = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
        if not FIRST_DAY <= moment.date() <= LAST_DAY:
            raise ValueError(at)
    except (ValueError, OverflowError):
        raise PageProblem(400, "Bad page", "the page link is damaged: start again") from None
    return moment, last_id[:36]


@router.get("/messages/{message_id}")
async def message_page(request: Request, message_id: str) -> Response:
    async def build(session: DashboardSession) -> Response:
        detail = await _read(request, message_detail, message_id[:36])
        if detail is None:
            raise PageProblem(404, "No such message", f"no message {message_id[:36]!r}")
        return render(request, "message.html", session, detail=detail)

    return await _page(request, build)


@router.get("/messages/{message_id}/content")
async def message_content(request: Request, message_id: str) -> Response:
    """The email's HTML alone, for the sandboxed frame of the message page: no scripts, no
    remote images (loading them would count as an open and tell the sender's servers)."""

    async def build(session: DashboardSession) -> Response:
        detail = await _read(request, message_detail, message_id[:36])
        if detail is None or not isinstance(detail.content.get("html"), str):
            raise PageProblem(404, "No such message", "this message has no HTML part")
        headers = {
            **VIEW_HEADERS,
            "Content-Security-Policy": (
                "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                "frame-ancestors 'self'; sandbox; form-action 'none'; base-uri 'none'"
            ),
            "X-Frame-Options": "SAMEORIGIN",
        }
        return HTMLResponse(detail.content["html"], headers=headers)

    return await _page(request, build)


# --- contacts ---------------------------------------------------------------------


@router.get("/contacts")
async def open_contact(request: Request) -> Response:
    async def build(session: DashboardSession) -> Response:
        asked = (request.query_params.get("id") or "").strip()
        if not asked:
            raise PageProblem(400, "No contact id", "type a contact id, alias or email to open it")
        check_contact_id(asked)
        found = await _read(request, find_contact, asked)
        if found is None:
            raise PageProblem(
                404, "No such contact", f"no contact with the id, alias or email {asked!r}"
            )
        return RedirectResponse(f"{PATH}/contacts/{_quote(found)}", status_code=303)

    return await _page(request, build)


@router.get("/export")
async def export_page(request: Request) -> Response:
    """`?contact=ID`: everything stored about the contact, as `GET /v1/contacts/ID`."""

    async def build(session: DashboardSession) -> Response:
        ctx = api_context(request)
        contact_id = _contact_id(request.query_params.get("contact"))
        found = await ctx.db(export_contact, ctx.engine, contact_id)
        if found is None:
            raise PageProblem(404, "No such contact", f"no contact {contact_id!r} (or erased)")
        name = "".join(
            c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in contact_id
        )
        return JSONResponse(
            {"success": True, **found},
            headers={
                **HEADERS,
                "Content-Disposition": f'attachment; filename="contact-{name[:60]}.json"',
            },
        )

    return await _page(request, build)


@router.post("/erase")
async def erase_page(request: Request) -> Response:
    """A form with `contact` and `confirm` (the same id, typed): as `DELETE /v1/contacts/ID`."""

    async def build(session: DashboardSession) -> Response:
        ctx = api_context(request)
        form = await _form(request, session)
        tr = i18n.translator(i18n.language(request))
        contact_id = _contact_id(form.get("contact"))
        if (form.get("confirm") or "").strip() != contact_id:
            return await _contact(
                request,
                session,
                contact_id,
                notice=tr("Not erased: the id typed does not match this contact's id."),
                status=400,
            )
        try:
            result = await erase_contact(ctx.engine, ctx.client, contact_id, ctx.python_journeys)
        except (TemporalUnavailable, StoreBusy, ErasureIncomplete) as exc:
            raise PageProblem(503, "Not erased yet", str(exc)) from None
        stopped = result.as_dict().get("runs_stopped", 0)
        text = f"{tr('Erased')} {contact_id} ({tr('journeys stopped')}: {stopped})."
        return render(request, "problem.html", session, 200, title=tr("Erased"), text=text, ok=True)

    return await _page(request, build)


def _contact_id(given: str | None) -> str:
    if not given:
        raise PageProblem(400, "No contact id", "say which contact: ?contact=ID")
    check_contact_id(given)
    return given


@router.get("/contacts/{contact_id:path}")
async def contact_page(request: Request, contact_id: str) -> Response:
    async def build(session: DashboardSession) -> Response:
        return await _contact(request, session, contact_id)

    return await _page(request, build)


async def _contact(
    request: Request,
    session: DashboardSession,
    contact_id: str,
    notice: str | None = None,
    status: int = 200,
) -> Response:
    ctx = api_context(request)
    check_contact_id(contact_id)
    explicit = ctx.settings.marketing_consent == "explicit"
    everything = request.query_params.get("all") == "1"

    def read() -> tuple[Any, Any]:
        with session_scope(ctx.engine) as s:
            profile = contact_profile(s, contact_id, explicit)
            if profile is None:
                return None, None
            newest = None if everything else STORY_LINES
            return profile, contact_story(s, contact_id, None, DEFAULT_EVENTS, newest)

    profile, story = await ctx.db(read)
    if profile is None:
        raise PageProblem(404, "No such contact", f"no contact {contact_id!r} (or it was erased)")
    moments = story.moments
    runs = profile.runs if everything else profile.runs[:RUN_ROWS]
    return render(
        request,
        "contact.html",
        session,
        status,
        p=profile,
        story=story,
        moments=moments,
        runs=runs,
        cut=story.cut or len(runs) < len(profile.runs),
        notice=notice,
    )


# --- health -----------------------------------------------------------------------


@router.get("/health")
async def health_page(request: Request) -> Response:
    async def build(session: DashboardSession) -> Response:
        ctx = api_context(request)
        healthy, checks = await health_checks(request)
        sends = None
        if checks["database"] == "ok":
            sends = await _read(request, send_health)
        return render(
            request,
            "health.html",
            session,
            200 if healthy else 503,
            healthy=healthy and sends is not None,
            checks=checks,
            sends=sends or SendHealth(provider_errors=0),  # the database did not answer
            now=utcnow(),
            database_kind=ctx.engine.dialect.name,
            temporal_address=ctx.settings.temporal_address or "",
        )

    return await _page(request, build)


# --- simulations ------------------------------------------------------------------


@router.get("/simulations/{simulation_id}")
async def simulation_report(request: Request, simulation_id: str) -> Response:
    async def build(session: DashboardSession) -> Response:
        html = simulation_page(api_context(request).settings.data_dir, simulation_id)
        if html is None:
            raise PageProblem(404, "No such simulation", f"no simulation {simulation_id[:60]!r}")
        tr = i18n.translator(i18n.language(request))
        html = with_back_link(html, PATH + "/", tr("Journeys dashboard"))
        headers = {
            **HEADERS,
            "Content-Security-Policy": (
                "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                "frame-ancestors 'none'; base-uri 'none'"
            ),
        }
        return HTMLResponse(html, headers=headers)

    return await _page(request, build)


# --- login ------------------------------------------------------------------------


@router.get("/login")
async def login_page(request: Request) -> Response:
    return _login_form(request, None, 200)


@router.post("/login")
async def login(request: Request) -> Response:
    conf, ctx = config(request), api_context(request)
    form = _parse(await read_body(request, FORM_LIMIT))
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    tr = i18n.translator(i18n.language(request))
    token = form.get("csrf", "")
    if not nonce or not _same(token, conf.signer.login_token(nonce)):
        return _login_form(
            request, tr("The form expired: log in again (cookies must be allowed)."), 400
        )
    if not same_origin(request):
        return _login_form(request, tr("The form came from another site."), 403)
    found = await ctx.db(admin_key, ctx.engine, form.get("key", "").strip())
    if found is None:
        # Who tried, never what: the text may be a real key pasted into the wrong place.
        log.warning(
            "dashboard: a login with a key that is not a live admin key, from %s",
            request.client.host if request.client else "?",
        )
        return _login_form(request, tr("That is not a live admin key."), 401)
    session = new_session(*found)
    response = RedirectResponse(_safe_next(form.get("next")), status_code=303)
    options = cookie_options(request, ctx.settings.resolved_public_url)
    response.set_cookie(
        COOKIE, conf.signer.dump(session), max_age=session.expires - int(time.time()), **options
    )
    response.delete_cookie(LOGIN_COOKIE, path=PATH)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    async def build(session: DashboardSession) -> Response:
        await _form(request, session)
        response = RedirectResponse(PATH + "/login", status_code=303)
        response.delete_cookie(COOKIE, path=PATH)
        return response

    return await _page(request, build)


def _login_form(request: Request, error: str | None, status: int) -> Response:
    conf = config(request)
    nonce = secrets.token_urlsafe(16)
    response = render(
        request,
        "login.html",
        None,
        status,
        error=error,
        next=_safe_next(request.query_params.get("next")),
        login_csrf=conf.signer.login_token(nonce),
    )
    ctx = api_context(request)
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        max_age=3600,
        **cookie_options(request, ctx.settings.resolved_public_url),
    )
    return response


def _safe_next(target: str | None) -> str:
    """Only a dashboard path: a login link must not send anyone to another site."""
    if target and target.startswith(PATH + "/") and "//" not in target and "\\" not in target:
        return target
    return PATH + "/"


async def _form(request: Request, session: DashboardSession) -> dict[str, str]:
    """A posted form of ours: its CSRF token must be the session's, from our own origin."""
    form = _parse(await read_body(request, FORM_LIMIT))
    if not _same(form.get("csrf", ""), session.csrf) or not same_origin(request):
        raise PageProblem(
            403, "Form refused", "the form is stale or came from another site: reload the page"
        )
    return form


def _same(given: str, expected: str) -> bool:
    """A constant-time comparison that also takes text that is not ASCII (never equal)."""
    return secrets.compare_digest(given.encode(), expected.encode())


def _parse(body: bytes) -> dict[str, str]:
    try:
        fields = parse_qs(body.decode(), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {k: v[0] for k, v in fields.items() if v}


def _quote(text: str) -> str:
    return quote(text, safe="")


def static_file(name: str) -> bytes:
    return (resources.files("orchestrator.dashboard") / "static" / name).read_bytes()


@router.get("/static/{name}")
async def static(name: str) -> Response:
    if name not in STATIC:
        return Response(status_code=404)
    return Response(
        static_file(name),
        media_type=STATIC[name],
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )
