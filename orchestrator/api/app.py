"""The HTTP API: one FastAPI app assembled from a router per concern.

- `events`: Segment-compatible ingestion (identify, track, page, screen, group, alias, batch);
- `devices`: push tokens of a contact;
- `contacts`: export and erasure (admin key);
- `reports`: journey stats and contact timelines (admin key);
- `catalog`: product events with no contact (price dropped), for audience journeys;
- `messages`: transactional messages and the status of any message (server key);
- `commerce`: coupon checks and redemption, loyalty points (write key);
- `webhooks`: provider feedback (SendGrid, Twilio);
- `pages`: what recipients open from a message (view in browser, unsubscribe, preferences);
- `health`: `/health` and `/metrics` (also the journey numbers, from the counters);
- the operator dashboard under `/dashboard/` (`orchestrator.dashboard`): admin login.

A call is acknowledged only after it is committed; routing to Temporal happens
afterwards, from the events table (see `processes/router.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fastapi import FastAPI
from sqlalchemy import Engine
from temporalio.client import Client

from ..dashboard.pages import router as dashboard_router
from ..dashboard.web import configure as configure_dashboard
from ..observability.http import RequestMetrics, fastapi_options
from ..services.links import MessageLinks
from ..settings import Settings
from . import (
    catalog,
    commerce,
    contacts,
    devices,
    events,
    health,
    messages,
    pages,
    reports,
    webhooks,
)
from .context import ApiContext
from .errors import ApiError, api_error_response


def create_app(
    engine: Engine,
    write_keys: list[str],
    client: Client | None = None,
    on_stored: Callable[[], None] | None = None,
    links: MessageLinks | None = None,
    settings: Settings | None = None,
    python_journeys: Sequence[str] = (),
    dashboard_dev: bool = False,
) -> FastAPI:
    """`write_keys` are accepted besides the hashed keys in the store.

    `on_stored` is called after each new commit (the router's wake-up); `links`
    verifies the signed tokens in message links; `python_journeys` are the ids of the
    hand-written journeys, whose runs an erasure stops too. `dashboard_dev` (`journeys
    dev` only) opens the dashboard without a login to browsers on this machine.
    """
    app = FastAPI(
        title="journeys", version="0.1.0", docs_url="/docs", redoc_url=None, **fastapi_options()
    )
    app.state.ctx = ApiContext(
        engine,
        list(write_keys),
        client,
        on_stored,
        links,
        settings or Settings(),
        list(python_journeys),
    )
    app.add_exception_handler(ApiError, api_error_response)
    app.add_middleware(RequestMetrics)  # counts, times and traces every request
    # `reports` before `contacts`: /v1/contacts/{id}/timeline is not a contact id.
    modules = (events, catalog, devices, reports, contacts, messages, commerce, webhooks, pages)
    for module in (*modules, health):
        app.include_router(module.router)
    configure_dashboard(app, app.state.ctx, dashboard_dev)
    app.include_router(dashboard_router)
    return app
