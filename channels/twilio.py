"""SMS through Twilio's Messages API, with the official `twilio` SDK.

The SDK is imported when the adapter is built, not when this module is, so a
worker without the `twilio` extra can still import every adapter and gets a
`ChannelConfigError` naming the pip extra only if it is configured to use this one.

One HTTP attempt per `send`: the SDK must not retry by itself, because the send
activity owns retries (and the ledger) and a hidden retry can double-send. Errors
become `TransientChannelError` (with the delay Twilio asked for) or
`PermanentChannelError` (with the reason the pipeline acts on).
"""

from __future__ import annotations

import threading
import urllib.parse
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlencode

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from orchestrator.rendering.sms import MAX_SMS_CHARACTERS, sms_length

from .base import Channel, OutgoingMessage, Receipt
from .errors import (
    ChannelConfigError,
    ChannelError,
    PermanentChannelError,
    PermanentReason,
    TransientChannelError,
    retry_after_seconds,
)

PROVIDER = "twilio"
STATUS_CALLBACK_PATH = "/webhooks/twilio/status"

# Twilio error codes (https://www.twilio.com/docs/api/errors/<code>) and what they mean to us.
INVALID_RECIPIENT = {
    21211: "the 'To' number is not a valid phone number",
    21614: "the 'To' number cannot receive SMS (landline or unreachable carrier)",
    21612: "Twilio cannot route a message between this sender and the 'To' number",
}
# Account settings, not bad numbers: the message fails, the number is not suppressed.
ACCOUNT_REFUSALS = {
    21408: "SMS to the 'To' number's region is not enabled on the Twilio account "
    "(Messaging > Settings > Geo permissions)",
}
UNSUBSCRIBED = 21610  # the recipient replied STOP to this sender or Messaging Service
AUTH_FAILED = 20003
TOO_MANY_REQUESTS = 20429
QUEUE_FULL = {30001: "queue overflow", 21611: "too many messages queued for this sender"}


def _env(name: str) -> AliasChoices:
    return AliasChoices(name, name.lower())


class TwilioSettings(BaseSettings):
    """Twilio's own names for credentials (as the SDK reads them); ours for the rest."""

    model_config = SettingsConfigDict(extra="ignore")

    account_sid: str | None = Field(default=None, validation_alias=_env("TWILIO_ACCOUNT_SID"))
    auth_token: str | None = Field(default=None, validation_alias=_env("TWILIO_AUTH_TOKEN"))
    messaging_service_sid: str | None = Field(
        default=None, validation_alias=_env("JOURNEYS_TWILIO_MESSAGING_SERVICE_SID")
    )
    sms_from: str | None = Field(default=None, validation_alias=_env("JOURNEYS_SMS_FROM"))
    # Unset means the real Twilio API; tests and local development point it at a fake.
    base_url: str | None = Field(default=None, validation_alias=_env("JOURNEYS_TWILIO_BASE_URL"))
    timeout: float = Field(default=10.0, validation_alias=_env("JOURNEYS_TWILIO_TIMEOUT"))


@dataclass(frozen=True)
class _Sdk:
    """The parts of the SDK we use, loaded on demand."""

    client: type
    http_client: type
    exception: type[Exception]
    # Raised raw by `requests`: nothing, or nothing we can know of, reached Twilio.
    timeout: type[Exception]
    network: tuple[type[Exception], ...]


def _load_sdk() -> _Sdk:
    try:
        from requests import exceptions as rex
        from requests.adapters import HTTPAdapter
        from twilio.base.exceptions import TwilioException
        from twilio.http.http_client import TwilioHttpClient
        from twilio.rest import Client
    except ImportError as exc:
        raise ChannelConfigError(
            "the twilio channel needs the Twilio SDK: pip install 'journeys-orchestrator[twilio]' "
            f"({exc})",
            provider=PROVIDER,
        ) from exc

    class OneShotHttpClient(TwilioHttpClient):
        """The SDK's HTTP client with our base URL, no retries, and Retry-After kept.

        The SDK's exceptions carry neither the response headers nor (for RFC 9457
        bodies) the HTTP status, so the last response's are kept here. One instance
        serves one thread, which makes those attributes safe to read after a failure.
        """

        def __init__(self, base_url: str | None, timeout: float) -> None:
            super().__init__(timeout=timeout)
            # `max_retries` is mounted on https:// only; pin both schemes to no retries.
            assert self.session is not None
            for scheme in ("http://", "https://"):
                self.session.mount(scheme, HTTPAdapter(max_retries=0))
            self.base_url = base_url.rstrip("/") if base_url else None
            self.last_status: int | None = None
            self.last_retry_after: str | None = None

        def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            self.last_status = self.last_retry_after = None
            if self.base_url:
                parts = urllib.parse.urlsplit(url)
                query = f"?{parts.query}" if parts.query else ""
                url = f"{self.base_url}{parts.path}{query}"
            response = super().request(method, url, *args, **kwargs)
            self.last_status = response.status_code
            self.last_retry_after = response.headers.get("Retry-After")
            return response

    return _Sdk(
        client=Client,
        http_client=OneShotHttpClient,
        exception=TwilioException,
        timeout=rex.Timeout,
        network=(rex.ConnectionError, rex.Timeout, rex.ChunkedEncodingError),
    )


class TwilioChannel(Channel):
    """Sends `content["body"]` to `message.to` (E.164) from a number or a Messaging Service."""

    name: ClassVar[str] = "twilio"
    serves: ClassVar[tuple[str, ...]] = ("sms",)

    max_body_chars: ClassVar[int] = MAX_SMS_CHARACTERS  # Twilio refuses longer bodies (21617)
    rate_limit_delay: ClassVar[float] = 5.0  # after a 429 that did not say how long to wait
    # A full sender queue drains over minutes to hours: pause long enough to be useful,
    # and the send activity keeps retrying, so nothing is dropped.
    queue_full_delay: ClassVar[float] = 60.0

    def __init__(
        self,
        *,
        account_sid: str | None,
        auth_token: str | None,
        messaging_service_sid: str | None = None,
        sms_from: str | None = None,
        base_url: str | None = None,
        timeout: float = 10.0,
        status_callback: str | None = None,
        max_segments: int = 3,
    ) -> None:
        if not account_sid:
            raise ChannelConfigError(
                "the twilio channel needs TWILIO_ACCOUNT_SID (the Account SID, AC...)",
                provider=PROVIDER,
            )
        if not auth_token:
            raise ChannelConfigError(
                "the twilio channel needs TWILIO_AUTH_TOKEN", provider=PROVIDER
            )
        if not (messaging_service_sid or sms_from):
            raise ChannelConfigError(
                "the twilio channel needs a default sender: set "
                "JOURNEYS_TWILIO_MESSAGING_SERVICE_SID (MG...) or JOURNEYS_SMS_FROM (+E.164)",
                provider=PROVIDER,
            )
        if base_url and not _is_absolute_url(base_url):
            raise ChannelConfigError(
                f"JOURNEYS_TWILIO_BASE_URL must be an absolute http(s) URL, got {base_url!r}",
                provider=PROVIDER,
            )
        if timeout <= 0:
            raise ChannelConfigError(
                f"JOURNEYS_TWILIO_TIMEOUT must be a positive number of seconds, got {timeout}",
                provider=PROVIDER,
            )
        self._sdk = _load_sdk()
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.messaging_service_sid = messaging_service_sid
        self.sms_from = sms_from
        self.base_url = base_url
        self.timeout = timeout
        self.status_callback = status_callback
        self.max_segments = max_segments
        # The SDK client keeps per-request state, and sends run in concurrent worker
        # threads: one client (and connection pool) per thread.
        self._local = threading.local()

    @classmethod
    def from_settings(cls, settings: Any) -> TwilioChannel:
        """Build from the environment; status callbacks only when JOURNEYS_PUBLIC_URL is set.

        The default public URL is the local API address, which Twilio cannot reach, so
        asking for callbacks there would only produce failed webhook attempts.
        """
        own = TwilioSettings()
        status_callback = None
        public_url = getattr(settings, "public_url", None)
        if public_url:
            if not _is_absolute_url(public_url):
                raise ChannelConfigError(
                    "JOURNEYS_PUBLIC_URL must be an absolute http(s) URL Twilio can reach "
                    f"for status callbacks, got {public_url!r}",
                    provider=PROVIDER,
                )
            status_callback = public_url.rstrip("/") + STATUS_CALLBACK_PATH
        return cls(
            account_sid=own.account_sid,
            auth_token=own.auth_token,
            messaging_service_sid=own.messaging_service_sid,
            sms_from=own.sms_from,
            base_url=own.base_url,
            timeout=own.timeout,
            status_callback=status_callback,
            max_segments=getattr(settings, "sms_max_segments", 3),
        )

    def send(self, message: OutgoingMessage) -> Receipt:
        body = message.content.get("body") or ""
        self._check_length(body)
        params: dict[str, Any] = {"to": message.to, "body": body, **self._sender(message)}
        if self.status_callback:
            # Our id in the URL finds the message even when the callback outruns the
            # recording of Twilio's MessageSid (Twilio signs the URL with its query).
            joiner = "&" if "?" in self.status_callback else "?"
            query = urlencode({"msg_id": message.message_id})
            params["status_callback"] = f"{self.status_callback}{joiner}{query}"
        client = self._client()
        http = client.http_client
        try:
            created = client.messages.create(**params)
        except self._sdk.exception as exc:
            raise self._sdk_error(exc, http, message.to) from exc
        except self._sdk.network as exc:
            # A read timeout is ambiguous: Twilio may have accepted the message. It is
            # retried anyway, as with any provider without an idempotency key.
            kind = "timed out" if isinstance(exc, self._sdk.timeout) else "failed"
            raise TransientChannelError(
                f"the request to Twilio {kind}: {exc}", provider=PROVIDER
            ) from exc
        return Receipt(provider_message_id=str(created.sid), status=str(created.status or ""))

    # --- the steps of a send -------------------------------------------------

    def _check_length(self, body: str) -> None:
        """Refuse before paying for a call Twilio would refuse or a bill nobody expects."""
        if not body:
            raise PermanentChannelError(
                "the SMS has an empty body", provider=PROVIDER, reason="bad_payload"
            )
        if len(body) > self.max_body_chars:
            raise PermanentChannelError(
                f"the SMS body is {len(body)} characters; Twilio accepts at most "
                f"{self.max_body_chars}",
                provider=PROVIDER,
                reason="bad_payload",
            )
        length = sms_length(body)
        if length.segments > self.max_segments:
            raise PermanentChannelError(
                f"the SMS body is {length.describe()}; the limit is {self.max_segments} "
                "segments (JOURNEYS_SMS_MAX_SEGMENTS)",
                provider=PROVIDER,
                reason="bad_payload",
            )

    def _sender(self, message: OutgoingMessage) -> dict[str, str]:
        """Exactly one of MessagingServiceSid / From: the journey's choice, else the default.

        A Messaging Service is preferred over a bare number when both are configured:
        it brings the sender pool, opt-out handling and queueing.
        """
        options = message.options
        if options.get("messaging_service_sid"):
            return {"messaging_service_sid": str(options["messaging_service_sid"])}
        if options.get("from"):
            return {"from_": str(options["from"])}
        if self.messaging_service_sid:
            return {"messaging_service_sid": self.messaging_service_sid}
        return {"from_": str(self.sms_from)}

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            http = self._sdk.http_client(self.base_url, self.timeout)
            client = self._sdk.client(self.account_sid, self.auth_token, http_client=http)
            self._local.client = client
        return client

    def _sdk_error(self, exc: Any, http: Any, to: str) -> ChannelError:
        """Map a TwilioRestException / TwilioServiceException to our error tree."""
        code = _int_or_none(getattr(exc, "code", None))
        # RFC 9457 bodies put their own `status` in the exception; the wire status wins.
        status = http.last_status or _int_or_none(getattr(exc, "status", None))
        if code == status:
            code = None  # the SDK's stand-in when the body carried no Twilio code
        said = _redact(_twilio_message(exc), to)
        where = f"(Twilio code {code}, HTTP {status})"

        if code in INVALID_RECIPIENT:
            return self._permanent(
                f"{INVALID_RECIPIENT[code]} {where}", status, code, "invalid_recipient"
            )
        if code in ACCOUNT_REFUSALS:
            return self._permanent(f"{ACCOUNT_REFUSALS[code]} {where}", status, code, "rejected")
        if code == UNSUBSCRIBED:
            return self._permanent(
                f"the recipient replied STOP to this sender {where}", status, code, "unsubscribed"
            )
        if code == AUTH_FAILED or status in (401, 403):
            return self._permanent(
                f"Twilio rejected the credentials {where}: check TWILIO_ACCOUNT_SID and "
                f"TWILIO_AUTH_TOKEN. {said}",
                status,
                code,
                "auth",
            )
        retry_after = retry_after_seconds(http.last_retry_after)
        if code in QUEUE_FULL:
            return TransientChannelError(
                f"Twilio's sender queue is full: {QUEUE_FULL[code]} {where}",
                provider=PROVIDER,
                status=status,
                code=code,
                retry_after=max(retry_after or 0.0, self.queue_full_delay),
            )
        if code == TOO_MANY_REQUESTS or status == 429:
            return TransientChannelError(
                f"Twilio is rate limiting this account {where}",
                provider=PROVIDER,
                status=status,
                code=code,
                retry_after=self.rate_limit_delay if retry_after is None else retry_after,
            )
        if status is not None and status >= 500:
            return TransientChannelError(
                f"Twilio failed: {said} {where}",
                provider=PROVIDER,
                status=status,
                code=code,
                retry_after=retry_after,
            )
        return self._permanent(f"Twilio refused the message: {said} {where}", status, code)

    @staticmethod
    def _permanent(
        text: str, status: int | None, code: int | None, reason: PermanentReason = "bad_payload"
    ) -> PermanentChannelError:
        return PermanentChannelError(
            text, provider=PROVIDER, status=status, code=code, reason=reason
        )


def _twilio_message(exc: Any) -> str:
    # str() of the SDK's exceptions is colourised for terminals: build our own text.
    parts = [getattr(exc, "msg", None), getattr(exc, "title", None), getattr(exc, "detail", None)]
    return " - ".join(str(p) for p in parts if p) or type(exc).__name__


def _redact(text: str, number: str) -> str:
    """Twilio echoes the phone number in some messages: keep it out of errors and history."""
    if len(number) > 4:
        text = text.replace(number, number[:3] + "…" + number[-2:])
    return text


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _is_absolute_url(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)
