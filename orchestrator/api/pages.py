"""Pages a recipient opens from a message: the email in a browser (and, next to it,
unsubscribe and preferences). No login, no JavaScript; links carry signed tokens."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from markupsafe import escape
from sqlalchemy import Engine

from ..store.db import session_scope
from ..store.tables import Message
from .context import api_context

router = APIRouter(include_in_schema=False)

# A sent email shown in a browser: no scripts, not indexed, not cached by proxies.
VIEW_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src * data:; style-src 'unsafe-inline'",
    "X-Robots-Tag": "noindex",
    "Cache-Control": "private, no-store",
    "Referrer-Policy": "no-referrer",
}
NOT_FOUND_PAGE = "<!doctype html><p>This message is no longer available.</p>"


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
