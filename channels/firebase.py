"""Push through Firebase Cloud Messaging (HTTP v1) with the official `firebase-admin` SDK.

One FCM message per registered device of the contact; the per-device answers are folded
into one `Receipt` or one typed error (docs/channels/firebase.md has the table):

    some device got it        -> Receipt(first message name, dead_devices=gone tokens)
    every device is gone      -> PermanentChannelError(reason="dead_token", dead_devices=all)
    none got it, one may yet  -> TransientChannelError(retry_after=largest Retry-After)
    payload refused           -> PermanentChannelError(reason="bad_payload")
    APNs/web-push/OAuth creds -> PermanentChannelError(reason="auth")

The SDK retries by itself and offers no supported option to stop it (`sdk_retries`).
`firebase_admin` is imported lazily so this module always imports; a worker without
the extra fails at start-up with the pip command to run.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic import AliasChoices, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from .base import Channel, OutgoingMessage, Receipt
from .errors import (
    ChannelConfigError,
    PermanentChannelError,
    TransientChannelError,
    retry_after_seconds,
)

log = logging.getLogger(__name__)

PROVIDER = "firebase"
INSTALL = "pip install 'journeys-orchestrator[firebase]'"
# 7.7.0 deprecates Message.token for Message.fid (Firebase installation ids); the devices we
# hold are registration tokens, which FCM v1 still takes as `token`. Only our calls are muted.
warnings.filterwarnings(
    "ignore",
    message=r"Message\.token is deprecated",
    category=DeprecationWarning,
    module=r"channels\.firebase",
)

_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9\-_.~%]")
_RESERVED_DATA = {"from", "message_type", "notification", "collapse_key"}
# The SDK copies the FCM URL class constant when an app first sends: first sends of
# adapters with a base URL are serialised so each app copies its own.
_FCM_URL_LOCK = threading.Lock()

ANDROID_OPTIONS = {
    "priority", "ttl", "collapse_key", "click_action", "channel_id", "icon", "color",
    "sound", "tag", "restricted_package_name",
}  # fmt: skip
APNS_OPTIONS = {
    "headers", "badge", "sound", "category", "thread_id", "mutable_content", "content_available",
}  # fmt: skip
WEBPUSH_OPTIONS = {"headers", "icon", "badge", "tag", "require_interaction", "link"}


class FirebaseSettings(BaseSettings):
    """Where the service account is and how to reach FCM; read from the environment."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    credentials: Path | None = Field(
        default=None, validation_alias=AliasChoices("GOOGLE_APPLICATION_CREDENTIALS")
    )
    project_id: str | None = Field(
        default=None, validation_alias=AliasChoices("JOURNEYS_FIREBASE_PROJECT_ID")
    )
    # Development and tests only: FCM at another address (a loopback fake).
    fcm_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("JOURNEYS_FCM_BASE_URL")
    )
    timeout: float = Field(
        default=10.0, gt=0, validation_alias=AliasChoices("JOURNEYS_FIREBASE_TIMEOUT")
    )


class FirebaseChannel(Channel):
    """FCM push adapter; thread-safe, one firebase app of its own per instance."""

    name: ClassVar[str] = "firebase"
    serves: ClassVar[tuple[str, ...]] = ("push",)
    # FCM's QUOTA_EXCEEDED is mostly one device's quota: holding every push for it would
    # let one busy device (or a token copied onto many contacts) stop all pushes.
    backoff_scope: ClassVar[str] = "recipient"
    max_payload_bytes: ClassVar[int] = 4096
    max_batch: ClassVar[int] = 500  # firebase-admin's send_each limit
    # firebase-admin 7.7 retries inside every send, with no supported option to change it
    # (firebase-admin-python issue 554): 500/503 up to 4 times (0+1+2+4 s backoff), 429/503
    # with Retry-After up to 4 times sleeping what the header says (capped at 6 h by urllib3),
    # a reset connection once, and a 401 answer triggers up to 2 token refreshes and resends.
    # A TransientChannelError from this adapter therefore already stands for up to 5 attempts.
    sdk_retries: ClassVar[bool] = True

    def __init__(
        self,
        credentials: str | Path | None = None,
        *,
        project_id: str | None = None,
        fcm_base_url: str | None = None,
        timeout: float = 10.0,
        dry_run: bool = False,
        app_name: str | None = None,
    ) -> None:
        if not credentials:
            raise ChannelConfigError(
                "GOOGLE_APPLICATION_CREDENTIALS is not set: point it at the Firebase "
                "service-account JSON file (Firebase console > Project settings > "
                "Service accounts > Generate new private key)",
                provider=PROVIDER,
            )
        firebase_admin, fb_credentials, _ = _sdk()
        path = Path(credentials)
        try:
            certificate = fb_credentials.Certificate(str(path))
        except (OSError, ValueError) as exc:
            raise ChannelConfigError(
                f"GOOGLE_APPLICATION_CREDENTIALS={path}: not a usable Firebase service-account "
                f"file: {exc}",
                provider=PROVIDER,
            ) from exc
        project = project_id or certificate.project_id
        if not project:
            raise ChannelConfigError(
                f"no Firebase project id: {path} has no project_id; set "
                "JOURNEYS_FIREBASE_PROJECT_ID",
                provider=PROVIDER,
            )
        self.project_id = project
        self.timeout = timeout
        self.dry_run = dry_run
        self._fcm_url: str | None = None
        if fcm_base_url:
            if not fcm_base_url.startswith(("http://", "https://")):
                raise ChannelConfigError(
                    f"JOURNEYS_FCM_BASE_URL={fcm_base_url!r} must start with http:// or https://",
                    provider=PROVIDER,
                )
            self._fcm_url = fcm_base_url.rstrip("/") + "/v1/projects/{0}/messages:send"
        self._url_bound = self._fcm_url is None
        self._credential = certificate
        self._token_lock = threading.Lock()
        self._auth_request: Any = None
        self.app = firebase_admin.initialize_app(
            certificate,
            {"projectId": project, "httpTimeout": timeout},
            name=app_name or f"journeys-firebase-{uuid.uuid4().hex}",
        )

    @classmethod
    def from_settings(cls, settings: Any = None) -> FirebaseChannel:
        """Build from the environment (the project `settings` hold nothing of ours)."""
        if not isinstance(settings, FirebaseSettings):
            try:
                settings = FirebaseSettings()
            except ValidationError as exc:
                names = ", ".join(str(e["loc"][0]) for e in exc.errors())
                raise ChannelConfigError(
                    f"invalid Firebase setting ({names}): {exc}", provider=PROVIDER
                ) from exc
        return cls(
            settings.credentials,
            project_id=settings.project_id,
            fcm_base_url=settings.fcm_base_url,
            timeout=settings.timeout,
        )

    def close(self) -> None:
        """Release the firebase app (its HTTP sessions); the adapter cannot send afterwards."""
        firebase_admin, _, _ = _sdk()
        firebase_admin.delete_app(self.app)
        if self._auth_request is not None:
            self._auth_request.func.session.close()

    # --- sending -----------------------------------------------------------

    def send(self, message: OutgoingMessage) -> Receipt:
        tokens = list(dict.fromkeys(t for t in (message.devices or (message.to,)) if t))
        if not tokens:
            raise PermanentChannelError(
                "the contact has no push device token",
                provider=PROVIDER,
                reason="invalid_recipient",
            )
        try:
            fcm_messages = [self.build(message, token) for token in tokens]
        except ValueError as exc:
            raise _bad_payload(str(exc)) from exc
        self._ensure_access_token()
        outcomes: list[_Outcome] = []
        for start in range(0, len(fcm_messages), self.max_batch):
            batch = fcm_messages[start : start + self.max_batch]
            responses = self._send_each(batch)
            for token, response in zip(tokens[start:], responses, strict=False):
                outcomes.append(
                    _Outcome(token, response.message_id)
                    if response.success
                    else _classify(token, response.exception)
                )
        return _fold(outcomes)

    def build(self, message: OutgoingMessage, token: str) -> Any:
        """The FCM message for one device; ValueError when an option cannot be sent."""
        _, _, messaging = _sdk()
        content = message.content
        title, body = content.get("title") or None, content.get("body") or None
        image, link = content.get("image") or None, content.get("link") or None
        data = {
            str(k): str(v)
            for k, v in message.metadata.items()
            if isinstance(v, str | int) and _allowed_data_key(str(k))
        }
        data["msg_id"] = message.message_id
        if link:
            data["link"] = link
        options = message.options
        return messaging.Message(
            token=token,
            notification=messaging.Notification(title=title, body=body, image=image),
            data=data,
            android=_android(messaging, _opts(options, "android", ANDROID_OPTIONS)),
            apns=_apns(messaging, _opts(options, "apns", APNS_OPTIONS), image),
            webpush=_webpush(messaging, _opts(options, "webpush", WEBPUSH_OPTIONS), link),
            fcm_options=messaging.FCMOptions(analytics_label=_label(message)),
        )

    def _ensure_access_token(self) -> None:
        """Fetch the OAuth token once, before fanning out, so N devices make one token call
        and an OAuth failure surfaces here as itself, not wrapped by the SDK's thread pool."""
        from google.auth import exceptions as auth_errors
        from google.auth.transport.requests import Request

        google_credential = self._credential.get_credential()
        if google_credential.valid:
            return
        with self._token_lock:
            if google_credential.valid:
                return
            if self._auth_request is None:
                self._auth_request = functools.partial(Request(), timeout=self.timeout)
            try:
                google_credential.refresh(self._auth_request)
            except (auth_errors.RefreshError, auth_errors.TransportError) as exc:
                raise _auth_failure(exc) from exc

    def _first_send(self, messaging: Any, batch: list[Any]) -> list[Any]:
        """The app copies FCM_URL when it first sends: set ours for that moment only."""
        previous = messaging._MessagingService.FCM_URL
        messaging._MessagingService.FCM_URL = self._fcm_url
        try:
            return list(messaging.send_each(batch, dry_run=self.dry_run, app=self.app).responses)
        finally:
            messaging._MessagingService.FCM_URL = previous
            self._url_bound = True

    def _send_each(self, batch: list[Any]) -> list[Any]:
        _, _, messaging = _sdk()
        from firebase_admin import exceptions as fb_errors

        try:
            if not self._url_bound:
                with _FCM_URL_LOCK:
                    if not self._url_bound:
                        return self._first_send(messaging, batch)
            return list(messaging.send_each(batch, dry_run=self.dry_run, app=self.app).responses)
        except ValueError as exc:  # the SDK's own validation of a message
            raise _bad_payload(str(exc)) from exc
        except fb_errors.FirebaseError as exc:  # a worker thread failed outside HTTP
            cause = exc.cause
            if cause is not None and type(cause).__module__.startswith("google.auth"):
                raise _auth_failure(cause) from exc
            raise TransientChannelError(
                f"FCM send failed: {exc}", provider=PROVIDER, code=exc.code
            ) from exc


# --- outcome of one device ---------------------------------------------------


@dataclass(slots=True)
class _Outcome:
    token: str
    name: str | None = None  # the FCM message name when sent
    kind: str = "sent"  # sent | dead | transient | bad_payload | auth | rejected
    code: str | None = None
    status: int | None = None
    message: str = ""
    retry_after: float | None = None


def _classify(token: str, exc: Any) -> _Outcome:
    """Map one device's FirebaseError to sent/dead/transient/bad_payload/auth/rejected."""
    from firebase_admin import exceptions as e
    from firebase_admin import messaging as m

    response = getattr(exc, "http_response", None)
    status = getattr(response, "status_code", None)
    error = _error_body(response)
    code = _fcm_code(error) or getattr(exc, "code", None)
    header = None if response is None else response.headers.get("Retry-After")
    retry_after = retry_after_seconds(header)

    def outcome(kind: str) -> _Outcome:
        return _Outcome(token, None, kind, code, status, str(exc), retry_after)

    if isinstance(exc, m.UnregisteredError | m.SenderIdMismatchError):
        return outcome("dead")
    if isinstance(exc, m.ThirdPartyAuthError):
        return outcome("auth")
    if isinstance(exc, m.QuotaExceededError):
        return outcome("transient")
    if isinstance(exc, e.InvalidArgumentError):
        return outcome("dead" if _token_is_invalid(error) else "bad_payload")
    if status in (401, 403) or isinstance(exc, e.UnauthenticatedError | e.PermissionDeniedError):
        return outcome("auth")
    if (
        response is None
        or status == 429
        or (status or 0) >= 500
        or isinstance(
            exc,
            e.UnavailableError
            | e.InternalError
            | e.DeadlineExceededError
            | e.ResourceExhaustedError,
        )
    ):
        return outcome("transient")
    return outcome("rejected")


def _fold(outcomes: list[_Outcome]) -> Receipt:
    """One answer for the contact; devices that already got the message are never resent."""
    sent = [o for o in outcomes if o.kind == "sent"]
    dead = tuple(o.token for o in outcomes if o.kind == "dead")
    failed = [o for o in outcomes if o.kind not in ("sent", "dead")]
    if sent:
        for o in failed:  # the send is done: a retry would duplicate on the others
            log.warning(
                "FCM: device %s… not reached (%s %s), not retried: %s",
                o.token[:12],
                o.kind,
                o.code,
                o.message,
            )
        return Receipt(provider_message_id=str(sent[0].name), dead_devices=dead)
    transient = [o for o in failed if o.kind == "transient"]
    if transient:  # a retry may still reach someone; dead tokens show up again then
        delays = [o.retry_after for o in transient if o.retry_after is not None]
        first = transient[0]
        raise TransientChannelError(
            f"FCM did not take the message for now ({first.code}): {first.message}",
            provider=PROVIDER,
            status=first.status,
            code=first.code,
            retry_after=max(delays) if delays else None,
        )
    for kind in ("bad_payload", "auth", "rejected"):
        worst = next((o for o in failed if o.kind == kind), None)
        if worst is not None:
            raise PermanentChannelError(
                f"FCM refused the message ({worst.code}): {worst.message}",
                provider=PROVIDER,
                status=worst.status,
                code=worst.code,
                reason=kind,  # type: ignore[arg-type]
                dead_devices=dead,
            )
    first = outcomes[0]
    raise PermanentChannelError(
        f"every device token of the contact is gone ({first.code})",
        provider=PROVIDER,
        status=first.status,
        code=first.code,
        reason="dead_token",
        dead_devices=dead,
    )


def _error_body(response: Any) -> dict[str, Any]:
    if response is None:
        return {}
    try:
        body = response.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _fcm_code(error: dict[str, Any]) -> str | None:
    for detail in error.get("details") or ():
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("FcmError"):
            return detail.get("errorCode")
    return None


def _token_is_invalid(error: dict[str, Any]) -> bool:
    """INVALID_ARGUMENT about the token itself (a dead token), not about the payload."""
    for detail in error.get("details") or ():
        for violation in (detail or {}).get("fieldViolations") or ():
            if violation.get("field") in ("message.token", "token"):
                return True
    return "registration token" in str(error.get("message", "")).lower()


def _bad_payload(text: str) -> PermanentChannelError:
    return PermanentChannelError(
        f"cannot build the FCM message: {text}", provider=PROVIDER, reason="bad_payload"
    )


def _auth_failure(exc: Exception) -> Exception:
    """OAuth token errors: network or 5xx may pass, a refused key will not (alert)."""
    from google.auth import exceptions as auth_errors

    if isinstance(exc, auth_errors.TransportError) or getattr(exc, "retryable", False):
        return TransientChannelError(f"OAuth token request failed: {exc}", provider=PROVIDER)
    return PermanentChannelError(
        f"Google refused the service account's OAuth token request: {exc}",
        provider=PROVIDER,
        code="oauth",
        reason="auth",
    )


# --- building the message ----------------------------------------------------


def _sdk() -> tuple[Any, Any, Any]:
    try:
        import firebase_admin
        from firebase_admin import credentials, messaging
    except ImportError as exc:
        raise ChannelConfigError(
            f"the firebase channel needs firebase-admin: {INSTALL}", provider=PROVIDER
        ) from exc
    return firebase_admin, credentials, messaging


def _opts(options: dict[str, Any], platform: str, allowed: set[str]) -> dict[str, Any]:
    """The journey's overrides for one platform; unknown keys fail loudly, not silently."""
    given = options.get(platform) or {}
    if not isinstance(given, dict):
        raise ValueError(f"sender option {platform!r} must be a mapping")
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise ValueError(
            f"unknown {platform} option(s) {', '.join(unknown)}; "
            f"supported: {', '.join(sorted(allowed))}"
        )
    return given


def _android(messaging: Any, o: dict[str, Any]) -> Any:
    if not o:
        return None
    notification_keys = ("click_action", "channel_id", "icon", "color", "sound", "tag")
    notification = (
        messaging.AndroidNotification(**{k: o[k] for k in notification_keys if k in o})
        if any(k in o for k in notification_keys)
        else None
    )
    return messaging.AndroidConfig(
        priority=o.get("priority"),
        ttl=o.get("ttl"),
        collapse_key=o.get("collapse_key"),
        restricted_package_name=o.get("restricted_package_name"),
        notification=notification,
    )


def _apns(messaging: Any, o: dict[str, Any], image: str | None) -> Any:
    if not o and not image:
        return None
    aps = messaging.Aps(
        badge=o.get("badge"),
        sound=o.get("sound"),
        category=o.get("category"),
        thread_id=o.get("thread_id"),
        # iOS shows an image only through a notification service extension, which runs
        # only for mutable-content notifications.
        mutable_content=o.get("mutable_content", True if image else None),
        content_available=o.get("content_available"),
    )
    return messaging.APNSConfig(
        headers=o.get("headers"),
        payload=messaging.APNSPayload(aps=aps),
        fcm_options=messaging.APNSFCMOptions(image=image) if image else None,
    )


def _webpush(messaging: Any, o: dict[str, Any], link: str | None) -> Any:
    link = o.get("link", link)
    web_link = link if link and link.startswith("https://") else None  # FCM wants HTTPS here
    keys = ("icon", "badge", "tag", "require_interaction")
    notification = (
        messaging.WebpushNotification(**{k: o[k] for k in keys if k in o})
        if any(k in o for k in keys)
        else None
    )
    if not (web_link or notification or o.get("headers")):
        return None
    return messaging.WebpushConfig(
        headers=o.get("headers"),
        notification=notification,
        fcm_options=messaging.WebpushFCMOptions(link=web_link) if web_link else None,
    )


def _label(message: OutgoingMessage) -> str | None:
    """FCM's analytics label: the journey's own, else the journey id, fitted to FCM's pattern."""
    raw = message.options.get("analytics_label") or message.metadata.get("journey")
    if not raw:
        return None
    label = _LABEL_CHARS.sub("_", str(raw))[:50]
    return label or None


def _allowed_data_key(key: str) -> bool:
    return key not in _RESERVED_DATA and not key.startswith(("google.", "gcm."))
