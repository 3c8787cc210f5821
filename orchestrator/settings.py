"""All configuration in one place: environment variables, with sane dev defaults.

Standard names are used where the ecosystem has them (`DATABASE_URL`,
`TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`); everything
else is prefixed `JOURNEYS_`. Command-line options override these.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any, Literal, get_origin

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from .services.redaction import redact_url


def _env(name: str) -> AliasChoices:
    return AliasChoices(name, name.lower())


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="JOURNEYS_", extra="ignore")

    data_dir: Path = Path(".journeys")
    journeys_dir: Path = Path("journeys")
    templates_dir: Path = Path("templates")
    database_url: str | None = Field(default=None, validation_alias=_env("DATABASE_URL"))

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # `journeys worker` and `journeys router` serve /metrics on this port when set (on
    # api_host): the journey counters, as the API's /metrics has them.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    # The Temporal SDK's own metrics (task latencies, polls, slots), on their own Prometheus
    # endpoint at this "host:port" (":9464": every interface); unset = not collected.
    temporal_metrics_address: str | None = None
    # Log lines on stderr: "text" for people, "json" (one object per line, with run, step
    # and message ids) for a log collector. Tracing is the standard OTEL_* variables'.
    log_format: Literal["text", "json"] = "text"
    write_keys: list[str] = []  # extra accepted write keys (comma-separated JSON list)
    # Calls per second per write key (a batch counts its calls); more get 429. Unset = no limit.
    ingest_rate_limit: float | None = Field(default=None, gt=0)
    # Coupon checks and redemptions per second "per key,per client address"; a guess that
    # misses costs more (orchestrator/api/coupon_limits.py). "none" = no limit.
    coupon_rate_limit: str = "30,10"

    temporal_address: str | None = Field(default=None, validation_alias=_env("TEMPORAL_ADDRESS"))
    temporal_namespace: str = Field(default="default", validation_alias=_env("TEMPORAL_NAMESPACE"))
    temporal_api_key: str | None = Field(default=None, validation_alias=_env("TEMPORAL_API_KEY"))
    temporal_tls: bool = Field(default=False, validation_alias=_env("TEMPORAL_TLS"))
    temporal_tls_cert: Path | None = Field(default=None, validation_alias=_env("TEMPORAL_TLS_CERT"))
    temporal_tls_key: Path | None = Field(default=None, validation_alias=_env("TEMPORAL_TLS_KEY"))
    temporal_tls_ca: Path | None = Field(default=None, validation_alias=_env("TEMPORAL_TLS_CA"))
    temporal_ui_url: str | None = None  # printed by `journeys dev` with TEMPORAL_ADDRESS
    task_queue: str = "journeys"

    # The embedded dev server (used when TEMPORAL_ADDRESS is not set).
    temporal_port: int = 7233
    temporal_ui_port: int = 8233
    temporal_sqlite_synchronous: Literal["off", "normal", "full"] = "normal"

    python_journeys: list[str] = []  # hand-written journeys, "package.module:Class"

    email_channel: str = "console"
    push_channel: str = "console"
    sms_channel: str = "console"
    # Provider quotas, in sends per second shared by every worker (Temporal task-queue
    # rate limit on the channel's queue); unset = no limit.
    email_rate_limit: float | None = Field(default=None, gt=0)
    push_rate_limit: float | None = Field(default=None, gt=0)
    sms_rate_limit: float | None = Field(default=None, gt=0)
    # Which task queues this worker polls: main (journeys), email, push, sms.
    worker_queues: list[Literal["main", "email", "push", "sms"]] = ["main", "email", "push", "sms"]
    # Seconds a stopping worker (SIGTERM, SIGINT) lets activities in flight finish and record
    # what happened before Temporal is told to cancel them; longer than the adapters' own
    # timeouts (10 s), so a send in progress ends as sent or failed, not unknown.
    shutdown_grace: float = Field(default=30.0, ge=0)
    # How journey workflow code runs (docs/performance.md#the-workflow-sandbox): "passthrough"
    # keeps Temporal's sandbox but imports our deterministic, replay-tested workflow modules
    # once instead of once per run; "strict" re-imports them in every run, as the SDK does
    # by default (the test suite runs this); "off" runs without the sandbox.
    workflow_sandbox: Literal["passthrough", "strict", "off"] = "passthrough"
    # Runs kept in the worker's memory between their tasks (Temporal's sticky cache): it
    # bounds the worker's memory; an evicted run is rebuilt from its history when it wakes.
    workflow_cache: int = Field(default=1000, ge=0)
    # Connections each process keeps open to PostgreSQL, and how many more it may open
    # when all are busy (SQLAlchemy's pool; SQLite stores ignore both). Size the
    # server's max_connections for (pool + overflow) x processes (docs/performance.md).
    db_pool_size: int = Field(default=5, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    # The API stores the calls of requests in flight together in one transaction (each
    # still acknowledged only once committed); off: one transaction per request.
    group_commit: bool = True

    # Send policy (docs/sending.md).
    marketing_consent: Literal["implied", "explicit"] = "implied"
    marketing_cap: str = "3/24h"  # marketing messages per contact, all journeys; "none"
    message_cap: str = "1/24h"  # the same message (template) on one channel per contact; "none"
    quiet_hours_email: str = "none"
    quiet_hours_push: str = "21:00-08:00"
    quiet_hours_sms: str = "21:00-08:00"

    router_interval: float = 1.0  # seconds between sweeps for events not yet routed
    # Routing (docs/routing.md): JOURNEYS_ROUTER=off runs `journeys worker` without its router
    # (when `journeys router` processes route); a claim's lease in seconds; the routing lag
    # (age of the oldest unrouted event) above which /health is degraded, 0 = never.
    router: bool = True
    router_lease: float = Field(default=30.0, gt=0)
    routing_lag_limit: float = Field(default=300.0, ge=0)
    # Failed routing attempts of an event's own (not an outage) after which it is a dead
    # letter and stops holding back its contact's later events; 0 = retry for ever.
    dead_letter_after: int = Field(default=5, ge=0)

    # Messages: the locale, currency and timezone used when a contact has none.
    default_locale: str = "en"
    default_currency: str = "USD"
    default_timezone: str = "UTC"
    sms_max_segments: int = Field(default=3, ge=1, le=10)
    # Links in messages (unsubscribe, preferences, view in browser) point here.
    public_url: str | None = None  # default: the API address
    secret_key: str | None = None  # signs those links; `journeys dev` keeps one in data_dir
    # Links in messages go through our redirect, `<public url>/c/<token>`, which records
    # the click (docs/sending.md, "Click tracking"); false: links are sent as rendered.
    click_tracking: bool = True
    # Hosts whose links are tracked (a host and its subdomains, e.g. ["shop.example"]);
    # links elsewhere are sent as rendered, so a link a storefront event put in a message
    # (a `cart_url`, a product `url`: public write key) never hides a foreign host behind
    # ours. Empty: every host (development). Set it in production.
    click_tracking_domains: list[str] = []

    # --- Provider feedback webhooks (orchestrator/api/webhooks.py, docs/webhooks.md) ---
    # SendGrid's Signed Event Webhook "Verification Key" (base64 DER, as SendGrid shows it).
    # Unset: POST /webhooks/sendgrid answers 503 and stores nothing.
    sendgrid_webhook_public_key: str | None = None
    # Signed timestamps further than this from our clock (seconds, either way) are refused.
    webhook_max_age: int = Field(default=300, ge=1, le=86_400)
    # Twilio signs its webhooks with the account's Auth Token: the name the SDK and the
    # twilio channel read. Unset: POST /webhooks/twilio/* answer 503 and store nothing.
    twilio_auth_token: str | None = Field(default=None, validation_alias=_env("TWILIO_AUTH_TOKEN"))
    # --- end of provider feedback webhooks ---

    @field_validator("marketing_cap", "message_cap")
    @classmethod
    def _cap(cls, value: str) -> str:
        from .services.policy import Cap

        Cap.parse(value)  # raises a ValueError that names the expected form
        return value

    @field_validator("coupon_rate_limit")
    @classmethod
    def _coupon_limit(cls, value: str) -> str:
        coupon_rates(value)  # raises a ValueError that names the expected form
        return value

    @field_validator("quiet_hours_email", "quiet_hours_push", "quiet_hours_sms")
    @classmethod
    def _quiet(cls, value: str) -> str:
        from .services.policy import QuietHours

        QuietHours.parse(value)
        return value

    def rate_limit_for(self, channel: str) -> float | None:
        return {
            "email": self.email_rate_limit,
            "push": self.push_rate_limit,
            "sms": self.sms_rate_limit,
        }[channel]

    def quiet_hours_for(self, channel: str) -> str:
        return {
            "email": self.quiet_hours_email,
            "push": self.quiet_hours_push,
            "sms": self.quiet_hours_sms,
        }[channel]

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'journeys.db').as_posix()}"

    @property
    def resolved_public_url(self) -> str:
        return self.public_url or f"http://{self.api_host}:{self.api_port}"

    def adapter_for(self, channel: str) -> str:
        return {"email": self.email_channel, "push": self.push_channel, "sms": self.sms_channel}[
            channel
        ]


def coupon_rates(value: str) -> tuple[float, float] | None:
    """`JOURNEYS_COUPON_RATE_LIMIT`: "30,10" (calls/s per key, per client address) or "none"."""
    text = value.strip().lower()
    if text in ("none", "off"):
        return None
    parts = [p.strip() for p in text.split(",")]
    try:
        rates = [float(p) for p in parts]
    except ValueError:
        rates = []
    if len(rates) != 2 or not all(0 < r < float("inf") for r in rates):
        raise ValueError(
            f"invalid coupon rate limit {value!r}: expected two numbers of calls per second, "
            "per key and per client address, such as 30,10 (or none)"
        )
    return rates[0], rates[1]


# Values of settings whose names hold one of these are never printed.
_SECRET_WORDS = ("KEY", "SECRET", "TOKEN", "PASSWORD")
# Pydantic's wording for the types a setting is most often mistyped as.
_PROBLEMS = {
    "bool_parsing": "must be true or false",
    "int_parsing": "must be a whole number",
    "float_parsing": "must be a number",
}
# How pydantic-settings reports a list setting that is not JSON (it keeps no field object).
_NOT_JSON = re.compile(r'error parsing value for field "(?P<field>\w+)"')


def explain(error: ValidationError | SettingsError, model: type[BaseSettings] = Settings) -> str:
    """One line per bad setting: the variable as the user sets it, the value (secrets
    hidden), what is wrong and the default. Pydantic's own report names the Python
    field, prints secrets as given and links to its docs, which tells an operator
    neither which variable to change nor to what."""
    if isinstance(error, SettingsError):
        return _explain_not_json(error, model)
    lines = []
    for problem in error.errors(include_url=False):
        loc = problem["loc"]
        field = _field_for(model, str(loc[0])) if loc else None
        if field is None:  # not a field's error (none today): pydantic's words
            lines.append(_problem(problem))
            continue
        name, info = field
        variable = _variable(model, name, info)
        items = [f"item {i + 1}" if isinstance(i, int) else str(i) for i in loc[1:]]
        where = " ".join([variable, *items])
        value = _shown(variable, problem["input"], raw=not items)
        lines.append(f"{where}={value}: {_problem(problem)} ({_default(info)})")
    return "\n".join(lines)


def _explain_not_json(error: SettingsError, model: type[BaseSettings]) -> str:
    match = _NOT_JSON.search(str(error))
    info = model.model_fields.get(match["field"]) if match else None
    if match is None or info is None:
        return str(error)
    variable = _variable(model, match["field"], info)
    cause = error.__cause__
    given = f"={_shown(variable, cause.doc)}" if isinstance(cause, json.JSONDecodeError) else ""
    form = 'a JSON list, such as ["a", "b"]' if get_origin(info.annotation) is list else "JSON"
    return f"{variable}{given}: must be {form} ({_default(info)})"


def _field_for(model: type[BaseSettings], loc: str) -> tuple[str, FieldInfo] | None:
    """The field an error's location names: its Python name, or the alias it was read as."""
    for name, info in model.model_fields.items():
        if loc.lower() in (name.lower(), *(a.lower() for a in _aliases(info))):
            return name, info
    return None


def _aliases(info: FieldInfo) -> list[str]:
    alias = info.validation_alias or info.alias
    if isinstance(alias, str):
        return [alias]
    if isinstance(alias, AliasChoices):
        return [c for c in alias.choices if isinstance(c, str)]
    return []  # an AliasPath reads a part of a variable: none here


def _variable(model: type[BaseSettings], name: str, info: FieldInfo) -> str:
    """The environment variable of a field, as the docs spell it (upper case)."""
    aliases = _aliases(info)
    if aliases:
        return aliases[0].upper()
    return f"{model.model_config.get('env_prefix', '')}{name}".upper()


def _shown(variable: str, value: Any, raw: bool = True) -> str:
    """The value as it may be printed: hidden for secrets, a URL without its password."""
    if any(word in variable for word in _SECRET_WORDS):
        return "***"
    if not raw or not isinstance(value, str):  # an item of a JSON list
        return json.dumps(value) if _is_json(value) else repr(value)
    if "://" in value and ("@" in value or "password" in value.lower()):
        value = redact_url(value)
    return shlex.quote(value)


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _problem(problem: Any) -> str:
    if problem["type"] in _PROBLEMS:
        return _PROBLEMS[problem["type"]]
    message = str(problem["msg"]).removeprefix("Value error, ")
    return re.sub(r"^Input should", "must", message)


def _default(info: FieldInfo) -> str:
    default = info.get_default(call_default_factory=True)
    if default is None:
        return "unset by default"
    if isinstance(default, bool):
        return f"default {str(default).lower()}"
    if isinstance(default, list | dict):
        return f"default {json.dumps(default)}"
    return f"default {default}"
