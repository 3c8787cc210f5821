"""How far routing is behind: the events stored but not yet delivered to Temporal.

Computed from the events table, so every API process reports the same figures
whichever router (worker or `journeys router`) does the routing. The queries read
only the unrouted rows and recently routed ones through the `(routed_at, id)` index.
The one exception is the full count of routed events (about 0.3 s per million events
on PostgreSQL, 0.05 s on SQLite), which callers take seldom and extend with the
cheap count of what was routed since (`RoutedCount`).

Dead letters (`dead_letters.py`) are not backlog: routers skip them, and an old one
must not read as routing lag. They are counted apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, case, func
from sqlmodel import col, select

from .db import session_scope
from .dead_letters import count_dead, not_dead
from .tables import Event, utcnow

DRAIN_WINDOW = 60.0  # seconds over which the drain rate is averaged


@dataclass(frozen=True)
class RoutedCount:
    """`total` events were routed before `at` (a full count, taken seldom)."""

    at: datetime
    total: int


@dataclass(frozen=True)
class RoutingBacklog:
    backlog: int  # events stored and not yet routed
    leased: int  # of those, claimed by a live router right now
    lag_seconds: float  # age of the oldest unrouted event (0 when none)
    routed_recent: int  # events routed in the last `window` seconds
    window: float = DRAIN_WINDOW
    routed_total: int | None = None  # events routed so far by every router, when asked for
    dead_letters: int = 0  # events given up on, waiting for an operator (not in `backlog`)

    @property
    def drain_rate(self) -> float:
        """Events routed per second, averaged over the last `window` seconds."""
        return self.routed_recent / self.window


def count_routed(engine: Engine) -> RoutedCount:
    """Every routed event, counted: O(table), so keep the result and pass it as `since`."""
    now = utcnow()
    with session_scope(engine) as session:
        total = session.exec(select(func.count()).where(col(Event.routed_at) < now)).one()
    return RoutedCount(now, int(total))


def routing_backlog(
    engine: Engine, window: float = DRAIN_WINDOW, since: RoutedCount | None = None
) -> RoutingBacklog:
    """The backlog now; with `since`, also the routed total (`since` plus what followed)."""
    now = utcnow()
    unrouted = col(Event.routed_at).is_(None) & not_dead()
    with session_scope(engine) as session:
        live = case((col(Event.lease_until) >= now, 1), else_=0)
        backlog, leased = session.exec(
            select(func.count(), func.coalesce(func.sum(live), 0)).where(unrouted)
        ).one()
        # Ordered as the index is: PostgreSQL would otherwise walk the primary key past
        # every routed row (0.5 s for a million) to find the first unrouted one.
        oldest = session.exec(
            select(Event.received_at)
            .where(unrouted)
            .order_by(col(Event.routed_at), col(Event.id))
            .limit(1)
        ).first()

        def routed_after(moment: datetime) -> int:
            return int(
                session.exec(select(func.count()).where(col(Event.routed_at) >= moment)).one()
            )

        recent = routed_after(now - timedelta(seconds=window))
        total = since.total + routed_after(since.at) if since is not None else None
        dead = count_dead(session)
    lag = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
    return RoutingBacklog(int(backlog), int(leased), lag, recent, window, total, dead)
