"""Email through SendGrid's v3 Mail Send API, with the official `sendgrid` SDK.

The SDK is imported lazily (it is the `sendgrid` extra), so importing this module
never fails; building the adapter does, with the pip command to run. Each send is
exactly one HTTP request: retries belong to Temporal, which needs to know whether
a retry can help, so every SDK and network error is mapped at this boundary to a
`TransientChannelError` (with SendGrid's Retry-After) or a `PermanentChannelError`
whose `reason` tells the pipeline what to do.

Webhook correlation: our ids travel in `custom_args` (never PII), which SendGrid
copies onto every event; the `X-Message-Id` answer is the receipt id.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import re
import time
import urllib.error
from email.utils import getaddresses
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import AliasChoices, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from .base import Channel, OutgoingMessage, Receipt
from .email import EmailSettings, list_unsubscribe_headers, recipient, reply_to, sender
from .errors import (
    ChannelConfigError,
    ChannelError,
    PermanentChannelError,
    PermanentReason,
    TransientChannelError,
    retry_after_seconds,
)

if TYPE_CHECKING:
    from sendgrid.helpers.mail import Mail

log = logging.getLogger(__name__)

PROVIDER = "sendgrid"
DEFAULT_HOST = "https://api.sendgrid.com"
INSTALL_HINT = "pip install 'journeys-orchestrator[sendgrid]'"

# SendGrid names the offending field; these point at the recipient's address, so the
# pipeline may suppress it. "personalizations.0.to" alone (no index) is our payload's fault.
RECIPIENT_FIELD = re.compile(r"^personalizations\.\d+\.(to|cc|bcc)\.\d+(\.email)?$")


class SendGridSettings(BaseSettings):
    """The adapter's environment; the key has no default so production cannot guess one."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    api_key: str | None = Field(default=None, validation_alias=AliasChoices("SENDGRID_API_KEY"))
    host: str = Field(default=DEFAULT_HOST, validation_alias=AliasChoices("JOURNEYS_SENDGRID_HOST"))
    sandbox: bool = Field(default=False, validation_alias=AliasChoices("JOURNEYS_SENDGRID_SANDBOX"))
    timeout: float = Field(
        default=10.0, gt=0, validation_alias=AliasChoices("JOURNEYS_SENDGRID_TIMEOUT")
    )


class SendGridChannel(Channel):
    """SendGrid v3 Mail Send. Thread-safe: every send builds its own SDK client."""

    name: ClassVar[str] = "sendgrid"
    serves: ClassVar[tuple[str, ...]] = ("email",)

    # SendGrid's documented limits, checked before sending so a journey that breaks
    # them fails with a clear message instead of a 400 from the API.
    max_categories: ClassVar[int] = 10
    max_category_length: ClassVar[int] = 255
    max_custom_args_bytes: ClassVar[int] = 10_000
    # A Retry-After beyond this is clamped: one extra attempt costs less than a message
    # parked for days by a bogus header.
    max_retry_after: ClassVar[float] = 3600.0

    def __init__(
        self,
        api_key: str | None,
        *,
        email: EmailSettings | None = None,
        host: str = DEFAULT_HOST,
        sandbox: bool = False,
        timeout: float = 10.0,
    ) -> None:
        _require_sdk()
        if not api_key or not api_key.strip():
            # The SDK would silently fall back to the environment: refuse instead.
            raise ChannelConfigError(
                "SendGrid adapter: SENDGRID_API_KEY is not set; create an API key with the "
                "'Mail Send' permission and export it",
                provider=PROVIDER,
            )
        self.email = email if email is not None else EmailSettings()
        if not self.email.from_:
            raise ChannelConfigError(
                "SendGrid adapter: JOURNEYS_EMAIL_FROM is not set; it is the default sender "
                "(e.g. 'Shop <news@example.com>'), journeys may still override it",
                provider=PROVIDER,
            )
        for setting, value in (
            ("JOURNEYS_EMAIL_FROM", self.email.from_),
            ("JOURNEYS_EMAIL_REPLY_TO", self.email.reply_to),
            ("JOURNEYS_EMAIL_UNSUBSCRIBE_MAILTO", self.email.unsubscribe_mailto),
        ):
            if value and _parse_address(value) is None:
                raise ChannelConfigError(
                    f"SendGrid adapter: {setting}={value!r} is not one email address "
                    "(write 'addr@example.com' or 'Name <addr@example.com>', quoting a name "
                    "that contains a comma)",
                    provider=PROVIDER,
                )
        if not host.startswith(("https://", "http://")):
            raise ChannelConfigError(
                f"SendGrid adapter: JOURNEYS_SENDGRID_HOST={host!r} must be an http(s) URL",
                provider=PROVIDER,
            )
        if not timeout > 0:
            # python-http-client treats 0 as "no timeout" (`timeout or self.timeout`).
            raise ChannelConfigError(
                "SendGrid adapter: JOURNEYS_SENDGRID_TIMEOUT must be a positive number of seconds",
                provider=PROVIDER,
            )
        self._api_key = api_key.strip()
        self.host = host.rstrip("/")
        self.sandbox = sandbox
        self.timeout = timeout

    @classmethod
    def from_settings(cls, settings: Any = None) -> SendGridChannel:
        """Build from the environment; `settings` (the orchestrator's) is not needed."""
        try:
            own = SendGridSettings()
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}={e.get('input')!r}: {e['msg']}"
                for e in exc.errors()
            )
            raise ChannelConfigError(
                f"SendGrid adapter: invalid setting {problems}", provider=PROVIDER
            ) from exc
        return cls(
            own.api_key,
            email=EmailSettings(),
            host=own.host,
            sandbox=own.sandbox,
            timeout=own.timeout,
        )

    # --- sending -----------------------------------------------------------

    def send(self, message: OutgoingMessage) -> Receipt:
        from python_http_client.exceptions import HTTPError
        from sendgrid import SendGridAPIClient
        from sendgrid.helpers.mail.exceptions import ApiKeyIncludedException

        try:
            mail = self.build(message)
        except ApiKeyIncludedException as exc:
            raise PermanentChannelError(
                "the rendered email body starts with what looks like a SendGrid API key; "
                "the SDK refuses to send it",
                provider=PROVIDER,
                reason="bad_payload",
            ) from exc
        # A client per send: python-http-client shares one mutable `request_headers`
        # dict between a client and every child it builds, so a shared client is not
        # safe to use from several worker threads.
        client = SendGridAPIClient(self._api_key, host=self.host)
        client.client.timeout = self.timeout
        try:
            response = client.send(mail)
        except HTTPError as exc:
            raise self._http_error(exc) from exc
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            # URLError wraps failures while sending; a reset or a timeout while waiting
            # for the answer comes out raw (ConnectionResetError, TimeoutError, ...).
            reason = getattr(exc, "reason", None) or exc
            raise TransientChannelError(
                f"SendGrid unreachable at {self.host}: {type(reason).__name__}: {reason}",
                provider=PROVIDER,
            ) from exc
        provider_id = response.headers.get("X-Message-Id") or ""
        if self.sandbox:
            return Receipt(
                provider_message_id=provider_id or f"sandbox-{message.message_id}",
                status="sandbox",
            )
        if not provider_id:
            # Accepted all the same: raising would make Temporal send it twice.
            log.warning("SendGrid accepted message %s without X-Message-Id", message.message_id)
        return Receipt(provider_message_id=provider_id)

    def build(self, message: OutgoingMessage) -> Mail:
        """The v3 Mail for `message`, built with the SDK's helpers (no HTTP)."""
        from sendgrid.helpers.mail import (
            Category,
            CustomArg,
            From,
            Header,
            Mail,
            MailSettings,
            ReplyTo,
            SandBoxMode,
            To,
        )

        from_address = self._address(sender(message, self.email, PROVIDER), "from")
        # The recipient goes as it is, once it cannot carry a header (no line breaks or
        # control characters): SendGrid judges the rest, and its answer names the field,
        # which is how an unusable address becomes `invalid_recipient`.
        to = To()
        to.email = recipient(message, PROVIDER)
        mail = Mail(
            from_email=From(*from_address),
            to_emails=to,
            subject=message.content.get("subject"),
            plain_text_content=message.content.get("text") or None,
            html_content=message.content.get("html") or None,
        )
        reply = reply_to(message, self.email)
        if reply:
            mail.reply_to = ReplyTo(*self._address(reply, "reply_to"))
        # The SDK inserts each item at the front of its list: add in reverse to keep order.
        for category in reversed(self._categories(message)):
            mail.add_category(Category(category))
        for key, value in reversed(list(self._custom_args(message).items())):
            mail.add_custom_arg(CustomArg(key, value))
        for key, value in list_unsubscribe_headers(message, self.email.unsubscribe_mailto).items():
            mail.add_header(Header(key, value))
        if self.sandbox:
            mail.mail_settings = MailSettings(sandbox_mode=SandBoxMode(True))
        return mail

    def _address(self, value: str, what: str) -> tuple[str, str | None]:
        parsed = _parse_address(value)
        if parsed is None:
            # The SDK would send {"name": ...} without an email: fail here, clearly.
            raise PermanentChannelError(
                f"the journey's `{what}` {value!r} is not one email address "
                "(quote a name that contains a comma)",
                provider=PROVIDER,
                reason="bad_payload",
            )
        return parsed

    def _categories(self, message: OutgoingMessage) -> list[str]:
        """The journey's categories, then marketing/transactional, without duplicates."""
        extra = message.options.get("categories") or []
        if isinstance(extra, str):
            extra = [extra]
        categories = list(dict.fromkeys([*map(str, extra), message.category]))
        if len(categories) > self.max_categories:
            raise PermanentChannelError(
                f"SendGrid allows at most {self.max_categories} categories per message, "
                f"this one has {len(categories)} (including {message.category!r})",
                provider=PROVIDER,
                reason="bad_payload",
            )
        too_long = [c for c in categories if len(c) > self.max_category_length]
        if too_long:
            raise PermanentChannelError(
                f"SendGrid categories are at most {self.max_category_length} characters: "
                f"{too_long[0][:40]!r}...",
                provider=PROVIDER,
                reason="bad_payload",
            )
        return categories

    def _custom_args(self, message: OutgoingMessage) -> dict[str, str]:
        """Our ids for webhook correlation. SendGrid keeps them: anything like an
        address is dropped, in case a caller put PII into `metadata`."""
        args: dict[str, str] = {}
        for key, value in message.metadata.items():
            if value is None or key == "msg_id":
                continue
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            if "@" in text or text == message.to:
                log.warning(
                    "not sending metadata %r of message %s to SendGrid: looks like PII",
                    key,
                    message.message_id,
                )
                continue
            args[str(key)] = text
        args = {"msg_id": message.message_id, **args}
        size = custom_args_bytes(args)
        if size > self.max_custom_args_bytes:
            raise PermanentChannelError(
                f"custom_args are {size} bytes, SendGrid allows {self.max_custom_args_bytes}: "
                "keep message metadata to short ids",
                provider=PROVIDER,
                reason="bad_payload",
            )
        return args

    # --- errors ------------------------------------------------------------

    def _http_error(self, exc: Any) -> ChannelError:
        status = int(exc.status_code)
        errors = sendgrid_errors(exc.body)
        detail = "; ".join(
            f"{e['field']}: {e['message']}" if e.get("field") else str(e.get("message"))
            for e in errors
        ) or _snippet(exc.body)
        fields = [str(e["field"]) for e in errors if e.get("field")]
        code = fields[0] if fields else None
        text = f"SendGrid answered {status}: {detail}"
        if status == 429:
            return TransientChannelError(
                text,
                provider=PROVIDER,
                status=status,
                code=code,
                retry_after=self._retry_after(exc.headers, rate_limited=True),
            )
        if status >= 500 or status < 400:
            return TransientChannelError(
                text,
                provider=PROVIDER,
                status=status,
                code=code,
                retry_after=self._retry_after(exc.headers, rate_limited=False),
            )
        if status in (401, 403):
            hint = "check SENDGRID_API_KEY (it needs the 'Mail Send' permission)"
            if status == 403:
                hint += " and that the From address is a verified sender"
            return PermanentChannelError(
                f"{text}; {hint}",
                provider=PROVIDER,
                status=status,
                code=code,
                reason="auth",
            )
        reason: PermanentReason = "rejected"
        if status == 400 and any(RECIPIENT_FIELD.match(f) for f in fields):
            reason = "invalid_recipient"
        elif status in (400, 413):
            reason = "bad_payload"
        return PermanentChannelError(
            text, provider=PROVIDER, status=status, code=code, reason=reason
        )

    def _retry_after(self, headers: Any, *, rate_limited: bool) -> float | None:
        """Retry-After, else (for 429) X-RateLimit-Reset, in seconds from now."""
        get = headers.get if headers is not None else (lambda name: None)
        delay = retry_after_seconds(get("Retry-After"))
        if delay is None and rate_limited:
            delay = rate_limit_reset_seconds(get("X-RateLimit-Reset"))
        if delay is None or not math.isfinite(delay):
            return None
        return min(delay, self.max_retry_after)


def _require_sdk() -> None:
    try:
        import sendgrid  # noqa: F401
    except ImportError as exc:
        raise ChannelConfigError(
            f"the SendGrid adapter needs the `sendgrid` package: {INSTALL_HINT}",
            provider=PROVIDER,
        ) from exc


def _parse_address(value: str) -> tuple[str, str | None] | None:
    """(address, name) from 'addr' or 'Name <addr>', or None unless it is exactly one."""
    found = getaddresses([value])
    if len(found) != 1:
        return None
    name, address = found[0]
    if "@" not in address or address.startswith("@") or address.endswith("@"):
        return None
    return address, name or None


def custom_args_bytes(args: dict[str, str]) -> int:
    """How SendGrid's 10,000-byte custom_args limit is measured here (the JSON object)."""
    return len(json.dumps(args, ensure_ascii=False, separators=(",", ":")).encode())


def sendgrid_errors(body: bytes | str | None) -> list[dict[str, Any]]:
    """SendGrid's `{"errors": [{"message", "field", "help"}]}`, or [] for anything else."""
    try:
        data = json.loads(body or b"")
    except (ValueError, TypeError):
        return []
    errors = data.get("errors") if isinstance(data, dict) else None
    if not isinstance(errors, list):
        return []
    return [e for e in errors if isinstance(e, dict)]


def rate_limit_reset_seconds(value: str | None, now: float | None = None) -> float | None:
    """X-RateLimit-Reset is a unix time; a small number is taken as seconds to wait."""
    if not value:
        return None
    try:
        reset = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(reset):
        return None
    if reset < 1_000_000_000:  # not an epoch (before 2001): a delta, as some proxies send
        return max(0.0, reset)
    return max(0.0, reset - (time.time() if now is None else now))


def _snippet(body: bytes | str | None) -> str:
    if not body:
        return "(empty body)"
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return text.strip()[:200]
