"""Provider pauses shared by every worker process.

A provider's rate limit counts the account's requests, not one process's: when it
answers 429 with a time to wait, every worker must wait, not only the one that was told.
The pause is one row per provider holding the latest "not before" any worker heard.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import case
from sqlmodel import Session, col, select

from .db import dialect_insert
from .tables import ProviderPause, utcnow


def pause_provider(session: Session, provider: str, seconds: float, reason: str) -> None:
    """Hold `provider` for `seconds` from now, unless it is held longer already."""
    until = utcnow() + timedelta(seconds=seconds)
    insert = dialect_insert(session)(ProviderPause).values(
        provider=provider, until=until, reason=reason[:255]
    )
    table = ProviderPause.__table__  # type: ignore[attr-defined]
    later = insert.excluded.until > table.c.until
    session.execute(
        insert.on_conflict_do_update(
            index_elements=[table.c.provider],
            set_={
                "until": case((later, insert.excluded.until), else_=table.c.until),
                "reason": case((later, insert.excluded.reason), else_=table.c.reason),
            },
        )
    )


def provider_pauses(session: Session) -> dict[str, datetime]:
    """Providers held now, and until when."""
    rows = session.exec(select(ProviderPause).where(col(ProviderPause.until) > utcnow()))
    return {row.provider: row.until for row in rows}
