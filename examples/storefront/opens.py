"""Shoppers opening their emails: `Email Opened` for messages the console channel printed.

`journeys dev` sends through the console channel, which prints each message as

    --- email to shopper-1-004@example.com (message 6f1c...)

so the simulator reads that output (saved with `journeys dev | tee dev.log`), keeps
the emails to its own shoppers, and opens a share of them: the same ones for the
same seed. The router records the open on the message and wakes the run waiting for it.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EMAIL_LINE = re.compile(r"^--- email to (?P<to>\S+) \(message (?P<id>[^\s)]+)\)", re.M)
OUR_SHOPPER = re.compile(r"^(?P<user>shopper-\d+-\d+)@example\.com$")


@dataclass(frozen=True)
class SentEmail:
    message_id: str
    to: str

    @property
    def user_id(self) -> str | None:
        """The simulated shopper it went to (their email is `<userId>@example.com`)."""
        match = OUR_SHOPPER.match(self.to)
        return match.group("user") if match else None


def sent_emails(text: str) -> list[SentEmail]:
    return [SentEmail(m.group("id"), m.group("to")) for m in EMAIL_LINE.finditer(text)]


def opens(message_id: str, seed: int, rate: float) -> bool:
    """Whether the shopper opens this message: decided by (seed, message), not by order."""
    return random.Random(f"{seed}:{message_id}").random() < rate


def open_emails(
    client: Any,
    log: Path,
    seed: int,
    rate: float,
    follow: float = 0.0,
    echo: Callable[[str], None] | None = None,
    choose: Callable[[SentEmail], bool] | None = None,
) -> list[SentEmail]:
    """Send `Email Opened` for the chosen emails in `log` (`choose`, by default a `rate`
    share decided by the seed); with `follow`, keep reading the log that many seconds for
    new ones. Returns the emails opened."""
    choose = choose or (lambda email: opens(email.message_id, seed, rate))
    opened: list[SentEmail] = []
    seen: set[str] = set()
    for batch in _new_emails(log, follow, seen):
        for email in batch:
            if email.user_id is None or not choose(email):
                continue
            client.track(
                user_id=email.user_id,
                event="Email Opened",
                properties={"message_id": email.message_id},
            )
            opened.append(email)
            if echo is not None:
                echo(f"opened {email.message_id} ({email.to})")
        client.flush()
    return opened


def _new_emails(log: Path, follow: float, seen: set[str]) -> Iterator[list[SentEmail]]:
    deadline = time.monotonic() + follow
    while True:
        text = log.read_text(errors="replace") if log.exists() else ""
        fresh = [e for e in sent_emails(text) if e.message_id not in seen]
        seen.update(e.message_id for e in fresh)
        yield fresh
        if time.monotonic() >= deadline:
            return
        time.sleep(1.0)
