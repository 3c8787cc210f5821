"""A loopback Twilio Messages API that checks requests the way Twilio does.

Only `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` exists. Requests need
HTTP Basic auth with the fake's Account SID and Auth Token, a form-encoded body, a
`To` in E.164, exactly one of `From` / `MessagingServiceSid` (Twilio accepts both;
the fake is stricter so an adapter that sends both is caught), a `Body` of 1 to
1600 characters and, if present, an absolute `StatusCallback` URL. Errors use
Twilio's JSON shape. Recipients and the sender queue can be scripted to fail the
way Twilio does; anything else goes through `fail_next` / `faults`.
"""

from __future__ import annotations

import base64
import re
import secrets
import threading
from collections import Counter
from dataclasses import dataclass, field
from email.utils import formatdate
from urllib.parse import urlsplit

from orchestrator.rendering.sms import sms_length

from .server import FakeProvider, Reply, Request

PATH = re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)/Messages\.json$")
E164 = re.compile(r"^\+[1-9]\d{7,14}$")
MAX_BODY = 1600

# Recipient states a test can script, with Twilio's code and message for each.
RECIPIENT_ERRORS = {
    "stopped": (21610, "Attempt to send to unsubscribed recipient"),
    "invalid": (21211, "The 'To' number {to} is not a valid phone number."),
    "landline": (21614, "'To' number {to} is not a valid mobile number"),
}
QUEUE_ERRORS = {
    30001: "Queue overflow",
    21611: "This 'From' number has exceeded the maximum number of queued messages",
}


def new_sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def error(status: int, code: int, message: str, retry_after: str | None = None) -> Reply:
    """An error reply in Twilio's JSON shape (optionally with a Retry-After header)."""
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return Reply(status, body, headers)


def too_many_requests(retry_after: str | None = None) -> Reply:
    return error(429, 20429, "Too Many Requests", retry_after)


@dataclass(frozen=True)
class Sms:
    """One message the fake accepted."""

    sid: str
    to: str
    body: str
    from_: str | None
    messaging_service_sid: str | None
    status_callback: str | None
    num_segments: int
    form: dict[str, str] = field(repr=False)


class FakeTwilio(FakeProvider):
    def __init__(self, account_sid: str | None = None, auth_token: str | None = None) -> None:
        super().__init__()
        self.account_sid = account_sid or new_sid("AC")
        self.auth_token = auth_token or secrets.token_hex(16)
        self.stopped: set[str] = set()  # replied STOP: 21610
        self.invalid: set[str] = set()  # not a phone number: 21211
        self.landlines: set[str] = set()  # cannot receive SMS: 21614
        self.queue_full: int | None = None  # 30001 or 21611 while the sender queue is full
        self._delivered: list[Sms] = []
        self._delivered_lock = threading.Lock()

    def reset(self) -> FakeTwilio:
        """Forget requests, scripts and deliveries, so one running fake serves many tests."""
        with self._lock:
            self.requests.clear()
            self._scripted.clear()
        with self._delivered_lock:
            self._delivered.clear()
        self.faults = None
        self.queue_full = None
        for numbers in (self.stopped, self.invalid, self.landlines):
            numbers.clear()
        return self

    # --- what tests read ------------------------------------------------------

    @property
    def delivered(self) -> list[Sms]:
        """Every accepted message, in order (a copy: safe while sends are running)."""
        with self._delivered_lock:
            return list(self._delivered)

    def delivered_to(self, number: str) -> list[Sms]:
        return [sms for sms in self.delivered if sms.to == number]

    def duplicates(self, by: str = "body") -> dict[str, int]:
        """Values of `by` ("body" or "to") accepted more than once, with their counts."""
        counts = Counter(getattr(sms, by) for sms in self.delivered)
        return {value: n for value, n in counts.items() if n > 1}

    # --- Twilio ---------------------------------------------------------------

    def handle(self, request: Request) -> Reply:
        match = PATH.match(request.path)
        if match is None:
            return error(404, 20404, f"The requested resource {request.path} was not found")
        if request.method != "POST":
            return error(405, 20004, "Method not allowed")
        if not self._authorized(request) or match["account"] != self.account_sid:
            return error(401, 20003, "Authenticate")
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith("application/x-www-form-urlencoded"):
            # Twilio does not document this answer; any 4xx makes a wrong adapter fail loudly.
            return error(400, 20001, "Expected a form-encoded body")
        return self._create(request.form())

    def _authorized(self, request: Request) -> bool:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            sid, _, token = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return secrets.compare_digest(f"{sid}:{token}", f"{self.account_sid}:{self.auth_token}")

    def _create(self, form: dict[str, str]) -> Reply:
        to = form.get("To", "")
        sender, service = form.get("From"), form.get("MessagingServiceSid")
        body = form.get("Body", "")
        callback = form.get("StatusCallback")
        if not to:
            return error(400, 21604, "A 'To' phone number is required.")
        if not E164.match(to) or to in self.invalid:
            return error(400, 21211, RECIPIENT_ERRORS["invalid"][1].format(to=to))
        if not (sender or service):
            return error(400, 21603, "A 'From' or 'MessagingServiceSid' parameter is required.")
        if sender and service:
            return error(400, 21603, "Send 'From' or 'MessagingServiceSid', not both (fake rule).")
        if service and not re.fullmatch(r"MG[0-9a-f]{32}", service):
            return error(400, 21705, f"The Messaging Service Sid {service} is invalid.")
        if not body:
            return error(400, 21602, "Message body is required.")
        if len(body) > MAX_BODY:
            return error(
                400, 21617, "The concatenated message body exceeds the 1600 character limit."
            )
        if callback is not None and not _absolute_url(callback):
            return error(400, 21609, "The StatusCallback URL is not a valid URL.")
        for state, numbers in (("stopped", self.stopped), ("landline", self.landlines)):
            if to in numbers:
                code, message = RECIPIENT_ERRORS[state]
                return error(400, code, message.format(to=to))
        if self.queue_full is not None:
            return error(400, self.queue_full, QUEUE_ERRORS[self.queue_full])

        sms = Sms(
            sid=new_sid("SM"),
            to=to,
            body=body,
            from_=sender,
            messaging_service_sid=service,
            status_callback=callback,
            num_segments=sms_length(body).segments,
            form=form,
        )
        with self._delivered_lock:
            self._delivered.append(sms)
        now = formatdate(usegmt=True)
        uri = f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sms.sid}"
        return Reply(
            201,
            {
                "account_sid": self.account_sid,
                "api_version": "2010-04-01",
                "body": body,
                "date_created": now,
                "date_sent": None,
                "date_updated": now,
                "direction": "outbound-api",
                "error_code": None,
                "error_message": None,
                # Through a Messaging Service Twilio picks the number later: `from` is null
                # and the first status is "accepted" rather than "queued".
                "from": sender,
                "messaging_service_sid": service,
                "num_media": "0",
                "num_segments": str(sms.num_segments),
                "price": None,
                "price_unit": "USD",
                "sid": sms.sid,
                "status": "accepted" if service else "queued",
                "subresource_uris": {"media": f"{uri}/Media.json"},
                "to": to,
                "uri": f"{uri}.json",
            },
        )


def _absolute_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)
