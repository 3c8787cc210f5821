"""Fuzzing the HTTP API: no input, however broken, gets a 5xx or leaves a trace.

- Every operation in our OpenAPI (`app.openapi()`, so endpoints added later are
  fuzzed too) gets schemathesis cases, valid and invalid, under several auth
  styles (write key as Basic user or X-Write-Key, admin key as Bearer, none,
  wrong): never a 5xx (bar a deliberate 503 in our error shape), documented
  answers match their schema, and a refused call changes no row of any table.
- Hypothesis property tests send the ingestion endpoints random JSON (objects,
  arrays, strings, deep nesting, huge numbers, NaN, NUL, lone surrogates, dates
  of any year), raw bytes and batches mixing good and bad calls: only 2xx/4xx,
  and a refused batch stores nothing while an accepted one stores each new
  messageId once.
- The body-limit row of RELIABILITY §4: a 600 KB batch, a chunked upload without
  Content-Length, 10k-deep JSON, gzip bombs: 413/400 before the body is read in
  full, memory bounded.

CI runs a few examples per property and operation, derandomized (the same cases
every run); `JOURNEYS_FUZZ_EXAMPLES=2000` runs that many per test, randomized
(figures in docs/ingestion.md).
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import select
import socket
import string
import tracemalloc
import unicodedata
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import schemathesis
from conftest import _fresh_postgres_database
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from live_api import serve
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)
from sqlalchemy import Engine, create_engine, func
from sqlalchemy import select as sql_select
from sqlmodel import SQLModel

from orchestrator.api import create_app
from orchestrator.settings import Settings
from orchestrator.store.db import make_engine, migrate, session_scope, sqlite_url
from orchestrator.store.identity import UNPRINTABLE
from orchestrator.store.keys import create_key

CONFIG_KEY = "wk_fuzz_config_key"
LONG_RUN = int(os.environ.get("JOURNEYS_FUZZ_EXAMPLES", "0"))
EXAMPLES = LONG_RUN or 20
fuzz_settings = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not LONG_RUN,
    database=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)
EVENT_PATHS = ("identify", "track", "page", "screen", "group", "alias")


def _operations() -> list[tuple[str, str]]:
    """(METHOD, path) of every operation the API documents, read from the app itself."""
    schema = create_app(create_engine("sqlite://"), []).openapi()
    return [(m.upper(), p) for p, ops in schema["paths"].items() for m in ops]


@dataclass
class Keys:
    write: str  # a stored (hashed) write key
    admin: str

    def auth_styles(self) -> list[dict[str, str]]:
        return [
            basic(self.write),
            {"X-Write-Key": CONFIG_KEY},
            {"Authorization": f"Bearer {self.admin}"},
            basic(self.admin),
            {},
            basic("wk_wrong"),
        ]


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def webhook_settings() -> Settings:
    """Webhooks configured (a throwaway SendGrid key, a Twilio token), so fuzzing reaches
    their verification instead of the 'not configured' 503."""
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    values = {
        "sendgrid_webhook_public_key": base64.b64encode(der).decode(),
        "twilio_auth_token": "fuzz-twilio-token",
    }
    known = {k: v for k, v in values.items() if k in Settings.model_fields}
    return Settings(**known)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """One database per module and kind (overrides conftest's per-test one): fuzzing shares
    it across examples anyway, and a fresh PostgreSQL database per operation would cost
    more than the fuzzing."""
    if request.param == "sqlite":
        urls: Iterator[str] = iter([sqlite_url(tmp_path_factory.mktemp("fuzz"))])
    else:
        urls = _fresh_postgres_database()
    engine = make_engine(next(urls))
    migrate(engine)
    yield engine
    engine.dispose()
    for _ in urls:  # runs the generator to its end: drops the PostgreSQL database
        pass


@pytest.fixture(scope="module")
def keys(engine: Engine) -> Keys:
    return Keys(
        create_key(engine, "fuzz-write", "write"), create_key(engine, "fuzz-admin", "admin")
    )


@pytest.fixture
def fuzz_app(engine: Engine, keys: Keys) -> tuple[FastAPI, Keys]:
    return create_app(engine, [CONFIG_KEY], settings=webhook_settings()), keys


def row_counts(engine: Engine) -> dict[str, int]:
    """Rows in every table (one query): what a refused request must leave as it was."""
    tables = SQLModel.metadata.sorted_tables
    query = sql_select(
        *(sql_select(func.count()).select_from(t).scalar_subquery().label(t.name) for t in tables)
    )
    with session_scope(engine) as session:
        return dict(session.execute(query).one()._mapping)


def events(engine: Engine) -> int:
    return row_counts(engine)["events"]


def deliberate(response: Any) -> bool:
    """A 503 we meant: our JSON error shape (database busy, webhook not configured), or
    /health reporting a part down (no Temporal here)."""
    if response.status_code != 503:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    if not isinstance(body, dict):
        return False
    return (body.get("success") is False and "error" in body) or body.get("status") == "degraded"


# --- every operation, through schemathesis ---------------------------------------


@pytest.mark.parametrize(("method", "path"), _operations())
def test_no_operation_answers_5xx_or_changes_rows_when_it_refuses(
    fuzz_app: tuple[FastAPI, Keys], engine: Engine, method: str, path: str
) -> None:
    app, keys = fuzz_app
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operation = schema[path][method]
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    @fuzz_settings
    @given(case=cases, auth=st.sampled_from(keys.auth_styles()))
    def check(case: Any, auth: dict[str, str]) -> None:
        before = row_counts(engine)
        response = case.call(headers=auth)
        reproduce = case.as_curl_command(headers=auth)
        assert response.status_code < 500 or deliberate(response), (
            f"{response.status_code} {response.text[:300]}\n{reproduce}"
        )
        if 400 <= response.status_code < 500 or deliberate(response):
            assert row_counts(engine) == before, f"refused, but rows changed\n{reproduce}"
            if "json" in response.headers.get("content-type", ""):
                body = response.json()
                assert body.get("error") or body.get("detail"), f"no reason given\n{reproduce}"
        case.validate_response(
            response, checks=[response_schema_conformance, content_type_conformance]
        )

    check()


# --- ingestion bodies, through hypothesis ----------------------------------------

# Text as clients really send it, and the characters stores choke on.
awkward_chars = st.sampled_from(["\x00", "\ud800", "\udfff", "\u2028", "\ufeff", "é", "💥"])
any_text = st.text(st.characters(codec=None) | awkward_chars, max_size=20)
storable_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20)
json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(),  # NaN and ±Infinity serialize as bare tokens: not JSON
    any_text,
)
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=25,
)
storable_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | storable_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(storable_text, inner, max_size=3),
    max_leaves=12,
)
# Dates of any year, with offsets of up to ±14 h; and strings that only look like dates.
# Years 1 and 9999 are left to test_known_server_errors while they are open bugs.
stamps = st.one_of(
    st.datetimes(
        min_value=datetime(1800, 1, 1),
        max_value=datetime(2300, 1, 1),
        timezones=st.none()
        | st.just(UTC)
        | st.builds(
            timezone, st.timedeltas(min_value=timedelta(hours=-14), max_value=timedelta(hours=14))
        ),
    ).map(datetime.isoformat),
    st.sampled_from(["2026-02-30T10:00:00Z", "yesterday", "", "2026-13-01", "1e9", "T"]),
    json_values,
)
ids = st.one_of(storable_text.filter(bool), st.integers(), json_values)
# A contact id goes into URLs: no '/', not '.' or '..'; and into logs and terminals: no
# control or invisible characters (tests/test_ingestion.py).
contact_ids = storable_text.filter(str.strip).filter(
    lambda s: (
        "/" not in s
        and s not in (".", "..")
        and not any(unicodedata.category(c) in UNPRINTABLE for c in s)
    )
)


@st.composite
def segment_calls(draw: st.DrawFn, kind: str | None = None) -> dict[str, Any]:
    """A Segment call whose every field may be right, wrong or missing."""
    kind = kind or draw(st.sampled_from(EVENT_PATHS))
    fields: dict[str, Any] = {"type": kind}
    optional = {
        "userId": ids,
        "anonymousId": ids,
        "messageId": st.uuids().map(str) | json_values,
        "event": st.sampled_from(["Product Added", "Order Completed", ""]) | json_values,
        "properties": st.dictionaries(any_text, json_values, max_size=5) | json_values,
        "traits": st.fixed_dictionaries(
            {},
            optional={
                "email": any_text | json_values,
                "phone": any_text,
                "consent": st.dictionaries(
                    st.sampled_from(["email", "sms", "push", "fax"]),
                    st.booleans()
                    | st.dictionaries(
                        st.sampled_from(["marketing", "transactional", "x"]), json_values
                    ),
                )
                | json_values,
            },
        )
        | json_values,
        "context": st.fixed_dictionaries(
            {},
            optional={
                "timezone": any_text | json_values,
                "locale": any_text | json_values,
                "device": st.fixed_dictionaries({}, optional={"token": any_text | json_values})
                | json_values,
            },
        )
        | json_values,
        "timestamp": stamps,
        "originalTimestamp": stamps,
        "sentAt": stamps,
        "previousId": ids,
        "groupId": ids,
        "name": any_text | json_values,
        "category": any_text | json_values,
        "integrations": json_values,
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            fields[name] = draw(strategy)
    if draw(st.integers(0, 9)) == 0:
        del fields["type"]
    return fields


def encode(value: Any, style: str) -> bytes:
    if style == "ascii":
        return json.dumps(value).encode()
    # Raw UTF-8 where the JSON has a lone surrogate is not UTF-8 at all.
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


deep_json = st.integers(1, 12_000).flatmap(
    lambda depth: st.sampled_from(
        ["[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth, "[" * depth]
    )
)
bodies = st.one_of(
    st.tuples(segment_calls(), st.sampled_from(["ascii", "utf8"])).map(lambda t: encode(*t)),
    st.tuples(json_values, st.sampled_from(["ascii", "utf8"])).map(lambda t: encode(*t)),
    st.binary(max_size=200),
    deep_json.map(str.encode),
)


@pytest.fixture
def client(fuzz_app: tuple[FastAPI, Keys]) -> Iterator[TestClient]:
    with TestClient(fuzz_app[0], raise_server_exceptions=True) as client:
        yield client


def test_any_body_on_any_event_endpoint_gets_2xx_or_4xx_and_4xx_stores_nothing(
    client: TestClient, engine: Engine
) -> None:
    @fuzz_settings
    @given(path=st.sampled_from(EVENT_PATHS), body=bodies)
    def check(path: str, body: bytes) -> None:
        before = row_counts(engine)
        r = client.post(f"/v1/{path}", content=body, headers=basic_json(CONFIG_KEY))
        assert r.status_code < 500 or deliberate(r), (path, body[:300], r.text)
        if r.status_code >= 400:
            assert row_counts(engine) == before, (path, body[:300])
            assert r.json()["success"] is False and r.json()["error"]
        else:
            assert r.json() == {"success": True}

    check()


batch_items = st.one_of(segment_calls(), json_values)


def test_any_batch_is_stored_whole_or_not_at_all(client: TestClient, engine: Engine) -> None:
    @fuzz_settings
    @given(
        items=st.lists(batch_items, max_size=6),
        shared=st.fixed_dictionaries(
            {}, optional={"context": json_values, "sentAt": stamps, "integrations": json_values}
        ),
        style=st.sampled_from(["ascii", "utf8"]),
    )
    def check(items: list[Any], shared: dict[str, Any], style: str) -> None:
        before = row_counts(engine)
        body = encode({"batch": items, **shared}, style)
        r = client.post("/v1/batch", content=body, headers=basic_json(CONFIG_KEY))
        assert r.status_code < 500 or deliberate(r), (body[:500], r.text)
        if r.status_code >= 400:
            assert row_counts(engine) == before, body[:500]

    check()


@st.composite
def valid_tracks(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "type": "track",
        "userId": draw(contact_ids),
        "event": draw(st.sampled_from(["Product Added", "Checkout Started", "Order Completed"])),
        "messageId": "",  # set per example: derandomized uuids repeat across examples
        "properties": draw(st.dictionaries(storable_text, storable_values, max_size=4)),
        "timestamp": datetime.now(UTC).isoformat(),
    }


def test_valid_calls_are_stored_once_and_one_bad_call_refuses_the_batch(
    client: TestClient, engine: Engine
) -> None:
    @fuzz_settings
    @given(
        good=st.lists(valid_tracks(), min_size=1, max_size=5),
        bad=st.none()
        | st.sampled_from(
            [
                {"type": "track", "userId": "u"},  # no event
                {"type": "track", "event": "X"},  # nobody
                {"type": "fly", "userId": "u"},
                {"type": "identify", "userId": "u", "traits": {"consent": {"fax": True}}},
                {"type": "alias", "previousId": "a"},
                {"type": "track", "userId": "u\n2", "event": "X"},  # a line break in an id
                {"type": "track", "userId": "u", "event": "Segment Entered"},  # only ours
                [],
            ]
        ),
        at=st.integers(0, 5),
    )
    def check(good: list[dict[str, Any]], bad: Any, at: int) -> None:
        events_before = row_counts(engine)["events"]
        items = [{**call, "messageId": str(uuid.uuid4())} for call in good]
        if bad is not None:
            items.insert(at % (len(items) + 1), bad)
        r = client.post("/v1/batch", json={"batch": items}, headers=basic(CONFIG_KEY))
        if bad is not None:
            assert r.status_code == 400, r.text
            assert row_counts(engine)["events"] == events_before
            return
        assert r.status_code == 200, (r.text, items)
        assert row_counts(engine)["events"] == events_before + len(good)
        again = client.post("/v1/batch", json={"batch": items}, headers=basic(CONFIG_KEY))
        assert again.status_code == 200
        assert row_counts(engine)["events"] == events_before + len(good)  # retry: deduped

    check()


def basic_json(key: str) -> dict[str, str]:
    return {**basic(key), "Content-Type": "application/json"}


# --- once-known server errors (found by fuzzing), kept as regression tests ----------

ODD_TIMES = [
    pytest.param(
        {
            "userId": "u",
            "event": "X",
            "timestamp": "9999-12-31T00:00:00Z",
            "sentAt": "0001-01-01T00:00:00Z",
        },
        id="skew-correction-would-overflow",
    ),
    # Found by the long run (JOURNEYS_FUZZ_EXAMPLES=300): a device clock in year 4053.
    pytest.param(
        {"anonymousId": "0", "event": "0", "sentAt": "4053-01-01T00:00:00Z"},
        id="far-future-sent-at",
    ),
    pytest.param(
        {"userId": "u", "event": "X", "timestamp": "0001-01-01T00:00:00+14:00"},
        id="year-1-with-offset",
    ),
]


@pytest.mark.parametrize("call", ODD_TIMES)
def test_times_out_of_range_are_400_naming_the_field(
    client: TestClient, call: dict[str, Any]
) -> None:
    r = client.post("/v1/track", json=call, headers=basic(CONFIG_KEY))
    assert r.status_code == 400, r.text
    assert r.json()["field"] in ("timestamp", "sentAt") and "out of range" in r.json()["error"]


@pytest.mark.parametrize(
    ("method", "path", "admin"),
    [
        ("POST", "/v1/contacts/a%00b/push-tokens", False),
        ("DELETE", "/v1/contacts/a%00b/push-tokens/t", False),
        ("GET", "/v1/contacts/a%00b", True),
        ("DELETE", "/v1/contacts/a%00b", True),
    ],
)
def test_a_nul_in_a_contact_id_is_400(
    client: TestClient, engine: Engine, keys: Keys, method: str, path: str, admin: bool
) -> None:
    auth = {"Authorization": f"Bearer {keys.admin}"} if admin else basic(CONFIG_KEY)
    body = {"token": "t"} if method == "POST" else None
    r = client.request(method, path, headers=auth, json=body)
    assert r.status_code == 400, r.text


# --- body limits (RELIABILITY §4) -------------------------------------------------


@pytest.fixture
async def asgi(fuzz_app: tuple[FastAPI, Keys]) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=fuzz_app[0])
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield client


class CountingBody:
    """A streamed (chunked, no Content-Length) body that counts what the server pulled."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks, self.sent = chunks, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            self.sent += len(chunk)
            yield chunk


def batch_of(size: int) -> bytes:
    item = {
        "type": "track",
        "userId": "u",
        "event": "Product Added",
        "properties": {"x": "y" * 900},
    }
    count = size // len(json.dumps(item)) + 1
    return json.dumps({"batch": [item] * count}).encode()


async def test_a_600_kb_batch_is_refused_413_and_nothing_stored(asgi, engine) -> None:  # type: ignore[no-untyped-def]
    before = events(engine)
    body = batch_of(600 * 1024)
    r = await asgi.post("/v1/batch", content=body, headers=basic_json(CONFIG_KEY))
    assert r.status_code == 413 and r.json() == {
        "success": False,
        "error": "request body is larger than 512000 bytes",
        "code": "too_large",
        "message": "request body is larger than 512000 bytes",
    }
    assert events(engine) == before


async def test_a_chunked_upload_without_length_is_cut_at_the_limit(asgi, engine) -> None:  # type: ignore[no-untyped-def]
    before = events(engine)
    body = batch_of(2 * 1024 * 1024)
    stream = CountingBody([body[i : i + 16_384] for i in range(0, len(body), 16_384)])
    r = await asgi.post("/v1/batch", content=stream, headers=basic_json(CONFIG_KEY))  # type: ignore[arg-type]
    assert r.status_code == 413
    assert stream.sent < 600 * 1024, "the server read far past its limit"
    assert events(engine) == before


def test_a_chunked_upload_over_a_real_socket_gets_413_before_it_ends(
    fuzz_app: tuple[FastAPI, Keys], engine: Engine
) -> None:
    """As a client that keeps sending: the 413 arrives while 2 MB are still unsent."""
    before = events(engine)
    body = batch_of(2 * 1024 * 1024)
    with serve(fuzz_app[0]) as url:
        host = urlsplit(url)
        head = (
            f"POST /v1/batch HTTP/1.1\r\nHost: {host.netloc}\r\n"
            f"Authorization: {basic(CONFIG_KEY)['Authorization']}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        ).encode()
        sent, answer = 0, b""
        with socket.create_connection((host.hostname, host.port), timeout=30) as sock:
            sock.sendall(head)
            for i in range(0, len(body), 8192):
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    break
                chunk = body[i : i + 8192]
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                sent += len(chunk)
            else:
                sock.sendall(b"0\r\n\r\n")
            while b"\r\n\r\n" not in answer:
                data = sock.recv(4096)
                if not data:
                    break
                answer += data
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert events(engine) == before


async def test_json_10k_levels_deep_is_refused_400(asgi, engine) -> None:  # type: ignore[no-untyped-def]
    before = events(engine)
    arrays = "[" * 10_000 + "]" * 10_000  # 20 KB: under the 32 KB of a single call
    objects = '{"batch":' + '{"a":' * 10_000 + "1" + "}" * 10_001  # 60 KB
    for path, deep in (("/v1/track", arrays), ("/v1/batch", arrays), ("/v1/batch", objects)):
        r = await asgi.post(path, content=deep.encode(), headers=basic_json(CONFIG_KEY))
        assert r.status_code == 400, r.text
        assert r.json()["error"] == "request body is not valid JSON"
    assert events(engine) == before


async def test_gzip_bodies_are_inflated_within_the_limit(asgi, engine) -> None:  # type: ignore[no-untyped-def]
    """RudderStack gzips by default. A bomb (10 MB of zeros in 10 KB) is refused after
    at most the limit was inflated; broken or unknown encodings get clear errors."""
    before = events(engine)
    ok = gzip.compress(
        json.dumps({"batch": [{"type": "track", "userId": "u", "event": "E"}]}).encode()
    )
    bomb = gzip.compress(b"{" + b" " * 10_000_000 + b"}")
    zipped = {**basic_json(CONFIG_KEY), "Content-Encoding": "gzip"}
    r = await asgi.post("/v1/batch", content=ok, headers=zipped)
    assert r.status_code == 200, r.text

    tracemalloc.start()
    try:
        r = await asgi.post("/v1/batch", content=bomb, headers=zipped)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.status_code == 413 and "larger than 512000 bytes" in r.json()["error"]
    assert peak < 5 * 1024 * 1024, f"inflating the bomb took {peak / 2**20:.1f} MiB"

    cases = [
        (ok[:-12], zipped, 400, "gzip body is truncated"),
        (b"not gzip at all", zipped, 400, "not valid gzip"),
        (ok + ok, zipped, 400, "one gzip member"),
        (ok, {**basic_json(CONFIG_KEY), "Content-Encoding": "br"}, 415, "not supported"),
    ]
    for body, headers, status, text in cases:
        r = await asgi.post("/v1/batch", content=body, headers=headers)
        assert r.status_code == status and text in r.json()["error"], r.text
    assert events(engine) == before + 1


async def test_text_no_store_can_keep_is_refused_naming_the_field(asgi, engine) -> None:  # type: ignore[no-untyped-def]
    before = events(engine)
    cases = [
        (b'{"userId":"a\\u0000b","event":"X"}', "userId: the text holds NUL (\\u0000)"),
        (b'{"userId":"a","event":"X","properties":{"p":"\\ud800"}}', "properties.p: the text"),
        (b'{"userId":"a","event":"X","properties":{"p":NaN}}', "NaN is not a JSON number"),
        (b'{"userId":"a","event":"X","properties":{"p":1e400}}', "too large for a 64-bit"),
        (b'{"userId":"a\xff","event":"X"}', "not valid UTF-8 (byte 0xff at 12)"),
    ]
    for body, text in cases:
        r = await asgi.post("/v1/track", content=body, headers=basic_json(CONFIG_KEY))
        assert r.status_code == 400 and text in r.json()["error"], r.text
    assert events(engine) == before
    # Everything else Unicode is kept as sent.
    fancy = "Zoë 💥 \u2028 " + string.punctuation
    # A contact id holds anything but '/' (it goes into URLs) and control or invisible
    # characters such as U+2028 (logs, terminals): tests/test_ingestion.py.
    user = fancy.replace("/", "").replace("\u2028", "")
    r = await asgi.post(
        "/v1/track",
        json={"userId": user, "event": "X", "properties": {fancy: fancy}},
        headers=basic(CONFIG_KEY),
    )
    assert r.status_code == 200
