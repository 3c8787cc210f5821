"""The simulation benchmark's baseline: the shape of `abandoned_cart` in bare Temporal.

Wait 24 h, "send" (an activity writing one row to a SQLite table), wait up to 48 h
for a signal, then "send" again; a `bought` signal at any point ends the run (as
`exit_on: [Order Completed]` does). In its own importable module (not `__main__`) so
the workflow sandbox can load it.
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import timedelta
from pathlib import Path

from temporalio import activity, workflow

TABLE = "sends"


@workflow.defn(name="BareCartWorkflow")
class BareCartWorkflow:
    def __init__(self) -> None:
        self.bought = False

    @workflow.signal
    def bought_signal(self) -> None:
        self.bought = True

    async def _wait(self, hours: int) -> bool:
        """True when the shopper bought within `hours`."""
        try:
            await workflow.wait_condition(lambda: self.bought, timeout=timedelta(hours=hours))
        except TimeoutError:
            return False
        return True

    @workflow.run
    async def run(self, contact: str) -> str:
        if await self._wait(24):
            return "bought"
        await workflow.execute_activity(
            "bare_send", args=[contact, "reminder"], start_to_close_timeout=timedelta(seconds=30)
        )
        if await self._wait(48):
            return "bought"
        await workflow.execute_activity(
            "bare_send",
            args=[contact, "reminder_push"],
            start_to_close_timeout=timedelta(seconds=30),
        )
        return "sent"


class BareSends:
    """The stand-in for a send: one committed INSERT, one connection per thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        with sqlite3.connect(path) as db:
            db.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (contact TEXT, step TEXT, at TEXT)")

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, check_same_thread=False)
            db.execute("PRAGMA synchronous=OFF")  # as the simulator's store
            self._local.db = db
        return db

    @activity.defn(name="bare_send")
    def send(self, contact: str, step: str) -> None:
        db = self._db()
        at = activity.info().current_attempt_scheduled_time.isoformat()
        db.execute(f"INSERT INTO {TABLE} VALUES (?, ?, ?)", (contact, step, at))
        db.commit()

    def count(self) -> int:
        with sqlite3.connect(self.path) as db:
            return int(db.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0])
