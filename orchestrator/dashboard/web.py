"""What every dashboard page shares: the Jinja environment, the language, the headers,
and the guard that sends a visitor without a session to the login page.

The pages are server-rendered HTML that works without JavaScript; `dashboard.js` only
adds conveniences (filters that apply on change). Every page answers with a strict
Content-Security-Policy: scripts, styles and images from the dashboard itself only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from ..api.context import ApiContext, api_context
from ..services.links import link_secret
from . import i18n
from .sessions import (
    COOKIE,
    DEV,
    DashboardSession,
    Signer,
    cookie_options,
    from_loopback,
    key_is_live,
    new_session,
)

HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "private, no-store",
    "X-Robots-Tag": "noindex",
}

ENV = Environment(
    loader=PackageLoader("orchestrator.dashboard", "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass
class DashboardConfig:
    """Set on the app by `create_app`: the cookie signer, and whether this is `journeys dev`
    (open to browsers on this machine without a login)."""

    signer: Signer
    dev: bool = False


def configure(app: Any, ctx: ApiContext, dev: bool) -> None:
    app.state.dashboard = DashboardConfig(Signer(link_secret(ctx.settings)), dev)


def config(request: Request) -> DashboardConfig:
    found: DashboardConfig = request.app.state.dashboard
    return found


class LoginRequired(Exception):
    """Raised by `guard`: answered with a redirect to the login page (see `pages`)."""

    def __init__(self, response: Response) -> None:
        self.response = response


async def guard(request: Request) -> DashboardSession:
    """The visitor's live session, or LoginRequired. In dev mode a browser on this machine
    gets a session without logging in."""
    conf, ctx = config(request), api_context(request)
    session = conf.signer.load(request.cookies.get(COOKIE))
    if session is not None and session.dev:
        if conf.dev and from_loopback(request):
            return session
        session = None
    elif session is not None and not await ctx.db(
        key_is_live, ctx.engine, session.key_id, session.key_print
    ):
        session = None
    if session is None and conf.dev and from_loopback(request):
        session = new_session(DEV)
        request.state.new_session = session
        return session
    if session is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        response = RedirectResponse(
            "/dashboard/login?" + urlencode({"next": target}), status_code=303
        )
        response.delete_cookie(COOKIE, path="/dashboard")
        raise LoginRequired(response)
    return session


def render(
    request: Request,
    template: str,
    session: DashboardSession | None,
    status: int = 200,
    **values: Any,
) -> HTMLResponse:
    lang = i18n.language(request)
    tr = i18n.translator(lang)
    html = ENV.get_template(template).render(
        _=tr,
        lang=lang,
        languages=i18n.LANGUAGES,
        session=session,
        csrf=session.csrf if session else "",
        path=request.url.path,
        query=dict(request.query_params),
        n=lambda v: i18n.number(v, lang),
        pct=lambda v: i18n.percent(v, lang),
        money=lambda v: i18n.money(v, lang),
        when=when,
        words=lambda text: i18n.words(text, lang),
        lang_url=lambda code: _with_lang(request, code),
        **values,
    )
    response = HTMLResponse(html, status_code=status, headers=HEADERS)
    fresh: DashboardSession | None = getattr(request.state, "new_session", None)
    if fresh is not None:
        conf, ctx = config(request), api_context(request)
        response.set_cookie(
            COOKIE,
            conf.signer.dump(fresh),
            max_age=fresh.expires - int(time.time()),
            **cookie_options(request, ctx.settings.resolved_public_url),
        )
    if "lang" in request.query_params and request.query_params["lang"] in i18n.LANGUAGES:
        response.set_cookie(
            i18n.COOKIE, lang, max_age=365 * 86400, samesite="lax", path="/dashboard"
        )
    return response


def _with_lang(request: Request, code: str) -> str:
    """This page in another language (the choice is kept in a cookie)."""
    kept = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
    return "?" + urlencode([*kept, ("lang", code)])


def when(moment: datetime | str | None) -> str:
    """A time as every page shows it: UTC, to the minute."""
    if moment is None or moment == "":
        return "—"
    if isinstance(moment, str):
        try:
            moment = datetime.fromisoformat(moment)
        except ValueError:
            return moment
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
