"""The development channel: prints each message instead of delivering it.

The send pipeline stores every message in the outbox (`messages` table)
whatever the adapter, so with `console` nothing leaves the machine and
everything is visible.
"""

from __future__ import annotations

import sys
import threading
import uuid
from typing import ClassVar, TextIO

from .base import Channel, OutgoingMessage, Receipt
from .email import recipient

# Sends run in an activity thread pool: one message is written whole, under this lock,
# so two messages printed at once never splice into one line (`print` writes the text
# and its newline separately, and the storefront's `opens` reads these headers back).
_WRITING = threading.Lock()


class ConsoleChannel(Channel):
    name: ClassVar[str] = "console"
    serves: ClassVar[tuple[str, ...]] = ("email", "push", "sms")

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    def send(self, message: OutgoingMessage) -> Receipt:
        if message.channel == "email":
            recipient(message, self.name)  # refuses what the real email adapters refuse
        out = self.stream or sys.stdout
        lines = [f"--- {message.channel} to {message.to} (message {message.message_id})"]
        lines += [f"{part}: {text}" for part, text in message.content.items() if part != "html"]
        if "html" in message.content:
            lines.append(f"html: {len(message.content['html'])} characters")
        block = "\n".join(lines) + "\n"
        with _WRITING:
            out.write(block)
            out.flush()
        return Receipt(provider_message_id=f"console-{uuid.uuid4()}")
