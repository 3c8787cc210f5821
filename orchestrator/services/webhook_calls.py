"""The `webhook` action's HTTP call: signed JSON to another system, its JSON answer back.

Signed exactly like the webhook channel (`X-Journeys-Signature`, see
docs/channels/webhook.md), so one receiver library verifies both. `Idempotency-Key`
is the run and step: a retried call is recognisable as the same one. Redirects are
not followed (a signed body goes only where the journey says).

    2xx                      done; a JSON body is the answer (kept with `save_as`)
    408, 409, 425, 429, 5xx  WebhookUnavailable: retried (Retry-After honoured)
    network errors           WebhookUnavailable
    other 3xx/4xx            WebhookRefused: not retried, the step's on_failure runs
"""

from __future__ import annotations

import json
import os
import re
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.client import HTTPException
from typing import Any

from channels.errors import retry_after_seconds
from channels.webhook import MIN_SECRET_LENGTH, SIGNATURE_HEADER, signature_header

from ..dsl.models import URL_VARIABLE, URL_VARIABLE_NAME

MAX_ANSWER_BYTES = 32 * 1024
RETRYABLE = {408, 409, 425, 429}
USER_AGENT = "journeys-orchestrator (webhook action)"


class WebhookRefused(Exception):
    """Calling again will not help: a 4xx answer, a bad URL or missing secret."""


class WebhookUnavailable(Exception):
    """Worth retrying: the receiver is down, overloaded or asked us to wait."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class WebhookAnswer:
    status: int
    body: Any  # the parsed JSON answer, or None


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects())


def expand_url(template: str, environ: dict[str, str] | None = None) -> str:
    """`${NAME_WEBHOOK_URL}` parts from the environment; a missing one is refused, naming it."""
    env = os.environ if environ is None else environ

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if not re.fullmatch(URL_VARIABLE_NAME, name):  # journeys validate this already
            raise WebhookRefused(f"the webhook URL may not read the variable {name}")
        if not env.get(name):
            raise WebhookRefused(f"the webhook URL needs the environment variable {name}")
        return env[name]

    url = re.sub(URL_VARIABLE, value, template)
    if not re.match(r"^https?://[^\s/]+", url):
        raise WebhookRefused(f"the webhook URL {url!r} is not an http(s) URL")
    return url


def secret_from(env_name: str, environ: dict[str, str] | None = None) -> str:
    secret = (os.environ if environ is None else environ).get(env_name) or ""
    if len(secret) < MIN_SECRET_LENGTH:
        raise WebhookRefused(
            f"set {env_name} to the webhook's signing secret (at least {MIN_SECRET_LENGTH} "
            "characters) in the worker's environment"
        )
    return secret


def call_webhook(
    url: str, document: dict[str, Any], *, secret: str, idempotency_key: str, timeout: float
) -> WebhookAnswer:
    body = json.dumps(document, ensure_ascii=False, separators=(",", ":"), default=str).encode()
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
            "Idempotency-Key": idempotency_key,
            SIGNATURE_HEADER: signature_header(secret, body),
        },
    )
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return WebhookAnswer(response.status, _json(response.read(MAX_ANSWER_BYTES + 1)))
    except urllib.error.HTTPError as exc:
        status = exc.code
        detail = _detail(exc)
        if status in RETRYABLE or status >= 500:
            raise WebhookUnavailable(
                f"{url} answered {status}{detail}",
                retry_after_seconds(exc.headers.get("Retry-After")),
            ) from None
        raise WebhookRefused(f"{url} answered {status}{detail}") from None
    except (urllib.error.URLError, HTTPException, OSError, ssl.SSLError) as exc:
        raise WebhookUnavailable(f"{url} unreachable: {exc}") from None


def _json(raw: bytes) -> Any:
    if not raw or len(raw) > MAX_ANSWER_BYTES:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _detail(exc: urllib.error.HTTPError) -> str:
    try:
        text = exc.read(300).decode("utf-8", "replace").strip()
    except OSError:
        return ""
    return f": {text}" if text else ""
