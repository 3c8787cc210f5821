"""SMS through MessageBird's REST API: an example of a channel adapter packaged on its own.

The orchestrator finds `MessageBirdChannel` through the `journeys.channels` entry
point in this package's pyproject.toml; select it with JOURNEYS_SMS_CHANNEL=messagebird.
Only the standard library is used (urllib), so the package adds no dependency.

Settings (environment variables, read once at worker start-up):

    MESSAGEBIRD_ACCESS_KEY   required; sent as `Authorization: AccessKey <key>`
    MESSAGEBIRD_ORIGINATOR   required; the default sender (a number or up to 11 letters),
                             a journey's `sender: {sms: {from: ...}}` overrides it
    MESSAGEBIRD_BASE_URL     default https://rest.messagebird.com (point it at a fake in tests)
    MESSAGEBIRD_TIMEOUT      seconds, default 10
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from http.client import HTTPException
from typing import Any, ClassVar

from channels import (
    Channel,
    ChannelConfigError,
    ChannelError,
    OutgoingMessage,
    PermanentChannelError,
    Receipt,
    TransientChannelError,
)
from channels.errors import retry_after_seconds

__all__ = ["MessageBirdChannel"]
__version__ = "0.1.0"

NAME = "messagebird"
DEFAULT_BASE_URL = "https://rest.messagebird.com"
# MessageBird's error code 9: "no (correct) recipients found".
INVALID_RECIPIENT_CODES = {9}


class MessageBirdChannel(Channel):
    """One `POST /messages` per SMS. Holds no per-send state, so worker threads may share it."""

    name: ClassVar[str] = NAME
    serves: ClassVar[tuple[str, ...]] = ("sms",)

    def __init__(
        self,
        access_key: str,
        originator: str,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 10.0,
    ) -> None:
        self._access_key = access_key
        self.originator = originator
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    @classmethod
    def from_settings(cls, settings: Any = None) -> MessageBirdChannel:
        """Fail at start-up, naming the variable, rather than at the first send."""
        missing = [
            name
            for name in ("MESSAGEBIRD_ACCESS_KEY", "MESSAGEBIRD_ORIGINATOR")
            if not os.environ.get(name)
        ]
        if missing:
            raise ChannelConfigError(
                f"the messagebird channel needs {' and '.join(missing)}", provider=NAME
            )
        try:
            timeout = float(os.environ.get("MESSAGEBIRD_TIMEOUT", "10"))
        except ValueError as exc:
            raise ChannelConfigError("MESSAGEBIRD_TIMEOUT must be a number", provider=NAME) from exc
        return cls(
            access_key=os.environ["MESSAGEBIRD_ACCESS_KEY"],
            originator=os.environ["MESSAGEBIRD_ORIGINATOR"],
            base_url=os.environ.get("MESSAGEBIRD_BASE_URL") or DEFAULT_BASE_URL,
            timeout=timeout,
        )

    def send(self, message: OutgoingMessage) -> Receipt:
        text = message.content.get("body", "")
        if message.channel != "sms" or not text:
            raise PermanentChannelError(
                "messagebird sends SMS with a body", provider=NAME, reason="bad_payload"
            )
        number = message.to.strip().removeprefix("+")
        if not number.isdigit():
            raise PermanentChannelError(
                f"{message.to!r} is not a phone number", provider=NAME, reason="invalid_recipient"
            )
        payload = {
            "originator": str(message.options.get("from") or self.originator),
            "recipients": [number],
            "body": text,
            # Comes back on MessageBird's status reports: leads them to our message.
            "reference": message.message_id,
        }
        request = urllib.request.Request(
            f"{self.base_url}/messages",
            data=json.dumps(payload).encode(),
            method="POST",
            headers={
                "Authorization": f"AccessKey {self._access_key}",
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": f"journeys-messagebird/{__version__}",
            },
        )
        try:
            response = urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            raise _error(exc) from exc
        except (OSError, HTTPException) as exc:  # refused, reset, timed out
            raise TransientChannelError(f"messagebird unreachable: {exc}", provider=NAME) from exc
        # Accepted: from here on nothing may raise, or a retry would send the SMS twice.
        with response:
            try:
                raw = response.read()
            except (OSError, HTTPException):
                raw = b""
        return Receipt(provider_message_id=str(_json(raw).get("id") or message.message_id))


def _json(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _error(exc: urllib.error.HTTPError) -> ChannelError:
    """MessageBird answers `{"errors": [{"code", "description", "parameter"}]}`."""
    try:
        errors = _json(exc.read()).get("errors")
    except (OSError, HTTPException):
        errors = None
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
    code = first.get("code")
    detail = f"messagebird answered {exc.code}: {first.get('description') or exc.reason}"
    if exc.code == 429 or exc.code >= 500:
        return TransientChannelError(
            detail,
            provider=NAME,
            status=exc.code,
            code=code,
            retry_after=retry_after_seconds(exc.headers.get("Retry-After")),
        )
    if exc.code in (401, 403):
        return PermanentChannelError(
            f"{detail} (check MESSAGEBIRD_ACCESS_KEY)",
            provider=NAME,
            status=exc.code,
            code=code,
            reason="auth",
        )
    if code in INVALID_RECIPIENT_CODES or first.get("parameter") in ("recipient", "recipients"):
        return PermanentChannelError(
            detail, provider=NAME, status=exc.code, code=code, reason="invalid_recipient"
        )
    return PermanentChannelError(
        detail, provider=NAME, status=exc.code, code=code, reason="rejected"
    )
