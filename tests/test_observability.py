"""What operators see of a request's way to the provider: spans, metrics, log lines.

One storefront request goes through the real API (in-process ASGI), the events table,
the real router, a journey on the time-skipping server and the real SendGrid adapter
against the loopback fake. Spans are read with the SDK's in-memory exporter; a
canary address, name and property value must appear in none of them, nor in a log line.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import socket
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from devstack import free_ports, journeys_command, subprocess_env
from fakes.sendgrid import FakeSendGrid
from harness import Bench, write_journey
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import Engine
from temporalio.client import Client, WorkflowHistory
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from channels.email import EmailSettings
from channels.errors import PermanentChannelError, TransientChannelError
from channels.sendgrid import SendGridChannel
from orchestrator.api import create_app
from orchestrator.api.health import create_metrics_app
from orchestrator.observability import ids, tracing
from orchestrator.observability.logs import JsonFormatter, configure_logging
from orchestrator.observability.provider_calls import provider_call
from orchestrator.observability.registry import REGISTRY, Exposition, Registry
from orchestrator.observability.temporal_metrics import sdk_runtime
from orchestrator.settings import Settings
from orchestrator.workflows.journey import JourneyWorkflow

KEY = "obs-write-key"
USER = "u-1001"  # a contact id, not personal data; the canaries below are
CANARY_EMAIL = "canary.person@example.com"
CANARY_NAME = "Zebedee Canaryname"
CANARY_PROPERTY = "canary-property-value"
CANARIES = (CANARY_EMAIL, CANARY_NAME, CANARY_PROPERTY, "canary")


def auth() -> tuple[str, str]:
    return (KEY, "")


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on for the test, into memory; off again afterwards."""
    exporter = InMemorySpanExporter()
    tracing.configure_tracing("journeys-test", SimpleSpanProcessor(exporter))
    yield exporter
    tracing.shutdown_tracing()


@pytest.fixture(autouse=True)
def fresh_metrics() -> None:
    REGISTRY.clear()


@pytest.fixture(scope="module")
def sendgrid() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as fake:
        yield fake


def email_adapter(fake: FakeSendGrid) -> SendGridChannel:
    fake.reset()
    return SendGridChannel(
        fake.api_key, host=fake.url, email=EmailSettings(from_="Shop <shop@example.com>")
    )


def traced_client(env: WorkflowEnvironment) -> Client:
    """The test server's client with the tracing interceptor, as `connect` makes it."""
    return Client(**{**env.client.config(), "interceptors": tracing.client_interceptors()})


@pytest_asyncio.fixture
async def bench(ts_env: WorkflowEnvironment, sqlite_engine: Engine, tmp_path: Path) -> Bench:
    templates = tmp_path / "templates" / "hello"
    templates.mkdir(parents=True)
    (templates / "email.subject").write_text("Hello {{ contact.traits.first_name }}")
    (templates / "email.html").write_text("<p>Hi {{ contact.traits.first_name }}</p>")
    bench = Bench(
        ts_env,
        sqlite_engine,
        tmp_path / "journeys",
        tmp_path / "templates",
        overrides={"marketing_cap": "none", "message_cap": "none"},
    )
    write_journey(
        bench.journeys_dir,
        "hello",
        textwrap.dedent(
            """
            id: hello
            name: Hello
            trigger: { event: Signed Up }
            steps:
              - send: { id: greet, channel: email, template: hello }
            """
        ),
    )
    bench.deploy()
    return bench


def use_client(bench: Bench, client: Client) -> None:
    bench.client = client
    bench.router.client = client


@pytest_asyncio.fixture
async def api(bench: Bench) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(bench.engine, [KEY], bench.client)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield client


async def signed_up(api: httpx.AsyncClient, user: str = USER) -> None:
    identify = {
        "userId": user,
        "traits": {"email": CANARY_EMAIL, "first_name": CANARY_NAME, "last_name": CANARY_NAME},
    }
    assert (await api.post("/v1/identify", auth=auth(), json=identify)).status_code == 200
    track = {"userId": user, "event": "Signed Up", "properties": {"plan": CANARY_PROPERTY}}
    assert (await api.post("/v1/track", auth=auth(), json=track)).status_code == 200


def no_canary(span: ReadableSpan) -> None:
    texts = [span.name, str(span.status.description or "")]
    texts += [f"{k}={v}" for k, v in (span.attributes or {}).items()]
    for event in span.events:
        texts += [event.name, *(f"{k}={v}" for k, v in (event.attributes or {}).items())]
    for text in texts:
        for canary in CANARIES:
            assert canary.lower() not in text.lower(), (span.name, text)


# --- tracing -----------------------------------------------------------------


async def test_one_trace_from_the_request_to_the_provider_call_with_ids_and_no_personal_data(
    spans: InMemorySpanExporter, bench: Bench, sendgrid: FakeSendGrid
) -> None:
    use_client(bench, traced_client(bench.env))
    app = create_app(bench.engine, [KEY], bench.client)
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as api,
        bench.worker({"email": email_adapter(sendgrid)}),
    ):
        await signed_up(api)
        await bench.route_all()
        assert await bench.result("hello", USER) == "completed"
    [message] = bench.messages(USER)
    assert message.status == "sent" and sendgrid.by_msg_id()[message.id] == 1

    finished = spans.get_finished_spans()
    by_id = {s.context.span_id: s for s in finished}

    def one(name: str) -> ReadableSpan:
        found = [s for s in finished if s.name == name]
        assert len(found) == 1, (name, sorted(s.name for s in finished))
        return found[0]

    def parent(span: ReadableSpan) -> ReadableSpan:
        assert span.parent is not None, span.name
        return by_id[span.parent.span_id]

    request = one("POST /v1/track")
    assert request.attributes == {
        "http.request.method": "POST",
        "http.route": "/v1/track",
        "http.response.status_code": 200,
    }
    route = next(
        s
        for s in finished
        if s.name == "RouteEvent" and (s.attributes or {}).get("journeys.event.name") == "Signed Up"
    )
    provider = one("ProviderSend:sendgrid")
    # request -> RouteEvent -> SignalWithStart -> (the workflow) StartActivity -> RunActivity
    # -> provider; the workflow's own spans hang off the start too.
    chain = [provider]
    while chain[-1].parent is not None:
        chain.append(parent(chain[-1]))
    assert [s.name for s in reversed(chain)] == [
        "POST /v1/track",
        "RouteEvent",
        "SignalWithStartWorkflow:JourneyWorkflow",
        "StartActivity:deliver_message",
        "RunActivity:deliver_message",
        "ProviderSend:sendgrid",
    ]
    workflow = one("RunWorkflow:JourneyWorkflow")
    assert parent(workflow) is chain[-3]  # the signal-with-start
    assert {s.context.trace_id for s in chain} == {request.context.trace_id}
    assert route in chain

    assert message.workflow_id == f"journey:hello:{USER}"
    assert provider.attributes == {
        "journeys.provider": "sendgrid",
        "journeys.channel": "email",
        "journeys.message.id": message.id,
        "journeys.outcome": "sent",
    }
    deliver = parent(provider)
    assert {k: v for k, v in (deliver.attributes or {}).items() if k.startswith("journeys.")} == {
        "journeys.run.id": message.workflow_id,
        "journeys.step.id": "greet",
        "journeys.message.id": message.id,
        "journeys.journey.id": "hello",
    }
    prepare = one("RunActivity:prepare_message")
    assert (prepare.attributes or {})["journeys.message.id"] == message.id
    assert (prepare.attributes or {})["journeys.step.id"] == "greet"
    for span in finished:
        no_canary(span)


async def test_a_router_in_another_process_continues_the_trace_the_event_stored(
    spans: InMemorySpanExporter, bench: Bench, api: httpx.AsyncClient
) -> None:
    """The API's process and the router's share nothing but the events table."""
    await signed_up(api)
    request = next(s for s in spans.get_finished_spans() if s.name == "POST /v1/track")
    spans.clear()
    await bench.route_all()  # no worker: the start is all there is to see
    route = next(
        s
        for s in spans.get_finished_spans()
        if s.name == "RouteEvent" and (s.attributes or {}).get("journeys.event.name") == "Signed Up"
    )
    assert route.context.trace_id == request.context.trace_id
    assert route.parent is not None and route.parent.span_id == request.context.span_id
    assert route.parent.is_remote


def test_tracing_is_off_unless_an_otel_variable_asks_for_it() -> None:
    assert not tracing.requested({})
    assert not tracing.requested({"OTEL_SERVICE_NAME": "api"})  # names, does not export
    assert tracing.requested({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert tracing.requested({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"})
    assert tracing.requested({"OTEL_TRACES_EXPORTER": "console"})
    assert not tracing.requested({"OTEL_TRACES_EXPORTER": "none"})
    assert not tracing.requested(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"}
    )
    assert not tracing.enabled() and tracing.client_interceptors() == []
    with tracing.span("nothing") as span:
        assert span is None and tracing.current_traceparent() is None


def test_tracing_asked_for_without_the_package_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    with pytest.raises(tracing.TracingUnavailable) as refused:
        tracing.configure_tracing("journeys-worker")
    assert str(refused.value).startswith(
        "OTEL_EXPORTER_OTLP_ENDPOINT asks for traces, but OpenTelemetry is not installed"
    )
    assert str(refused.value).endswith("pip install 'journeys-orchestrator[otel]'")
    assert not tracing.enabled()


def test_the_service_name_is_the_processs_unless_otel_service_name_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    names = []
    for service_name in (None, "shop-router"):
        if service_name:
            monkeypatch.setenv("OTEL_SERVICE_NAME", service_name)
        exporter = InMemorySpanExporter()
        try:
            tracing.configure_tracing("journeys-router", SimpleSpanProcessor(exporter))
            with tracing.span("a"):
                pass
        finally:
            tracing.shutdown_tracing()
        [span] = exporter.get_finished_spans()
        names.append(span.resource.attributes["service.name"])
    assert names == ["journeys-router", "shop-router"]


# --- metrics -----------------------------------------------------------------


def samples(text: str, prefix: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(prefix)]


async def test_api_requests_are_counted_by_route_template_and_status(
    bench: Bench, api: httpx.AsyncClient
) -> None:
    for user in ("a", "b"):
        r = await api.post("/v1/track", auth=auth(), json={"userId": user, "event": "Viewed"})
        assert r.status_code == 200
    assert (await api.post("/v1/track", auth=auth(), json={"event": "Viewed"})).status_code == 400
    assert (await api.get("/v1/contacts/ann@example.com/timeline")).status_code == 401
    assert (await api.get("/no/such/page/ann@example.com")).status_code == 404
    text = (await api.get("/metrics")).text
    assert samples(text, "journeys_http_requests_total") == [
        'journeys_http_requests_total{method="GET",route="/v1/contacts/{contact_id}/timeline",'
        'status="401"} 1',
        'journeys_http_requests_total{method="GET",route="unmatched",status="404"} 1',
        'journeys_http_requests_total{method="POST",route="/v1/track",status="200"} 2',
        'journeys_http_requests_total{method="POST",route="/v1/track",status="400"} 1',
    ]
    track = 'method="POST",route="/v1/track"'
    assert f"journeys_http_request_duration_seconds_count{{{track}}} 3" in text
    assert f'journeys_http_request_duration_seconds_bucket{{{track},le="+Inf"}} 3' in text
    assert "# TYPE journeys_http_request_duration_seconds histogram" in text
    assert "ann@example.com" not in text


async def test_sends_are_counted_by_outcome_and_429s_by_provider(
    bench: Bench, sendgrid: FakeSendGrid
) -> None:
    adapter = email_adapter(sendgrid)
    sendgrid.fail_next(FakeSendGrid.rate_limited(retry_after=1))
    async with bench.worker({"email": adapter}):
        await bench.identify(USER, email="ann@example.com", first_name="Ann")
        await bench.track(USER, "Signed Up")
        assert await bench.result("hello", USER) == "completed"
    [message] = bench.messages(USER)
    assert (message.status, message.attempts) == ("sent", 2)
    app = create_metrics_app(bench.engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://w") as w:
        text = (await w.get("/metrics")).text
    assert samples(text, "journeys_provider_rate_limited_total") == [
        'journeys_provider_rate_limited_total{provider="sendgrid"} 1'
    ]
    assert samples(text, "journeys_messages_sent_total") == [
        'journeys_messages_sent_total{channel="email",provider="sendgrid",outcome="retry"} 1',
        'journeys_messages_sent_total{channel="email",provider="sendgrid",outcome="sent"} 1',
    ]
    assert (
        'journeys_provider_request_duration_seconds_count{provider="sendgrid",operation="send"} 2'
        in text
    )


def test_each_provider_answer_has_its_outcome() -> None:
    answers: list[BaseException | None] = [
        None,
        TransientChannelError("busy", "twilio", status=429),
        TransientChannelError("down", "twilio", status=503),
        PermanentChannelError("no such number", "twilio", status=400),
        RuntimeError("the SDK broke"),
    ]
    for answer in answers:
        with (
            contextlib.suppress(type(answer) if answer else ()),
            provider_call("twilio", "sms", "m-1"),
        ):
            if answer is not None:
                raise answer
    text = "\n".join(REGISTRY.lines())
    for outcome, count in (("sent", 1), ("retry", 2), ("failed", 1), ("unknown", 1)):
        line = (
            f'journeys_messages_sent_total{{channel="sms",provider="twilio",outcome="{outcome}"}}'
        )
        assert f"{line} {count}" in text
    assert 'journeys_provider_rate_limited_total{provider="twilio"} 1' in text


def test_histogram_exposition() -> None:
    registry = Registry()
    h = registry.histogram("x_seconds", "X.", ("op",), buckets=(0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 3.0):
        h.observe(value, op="a")
    assert registry.lines() == [
        "# HELP x_seconds X.",
        "# TYPE x_seconds histogram",
        'x_seconds_bucket{op="a",le="0.1"} 2',
        'x_seconds_bucket{op="a",le="1"} 3',
        'x_seconds_bucket{op="a",le="+Inf"} 4',
        'x_seconds_sum{op="a"} 3.65',
        'x_seconds_count{op="a"} 4',
    ]
    with pytest.raises(ValueError):
        h.observe(1.0, contact="ann")


def test_figures_read_from_the_store_keep_every_digit() -> None:
    # A routed total past a million and a revenue with cents: six significant digits
    # (1.23457e+06) would freeze the counter's rate and round the revenue.
    out = Exposition()
    out.add("journeys_events_routed_total", "counter", "Routed.", 1_234_567)
    out.add("journeys_revenue_total", "counter", "Revenue.", 1_234_567.89, {"currency": "EUR"})
    out.add("journeys_events_routing_lag_seconds", "gauge", "Lag.", 0.25)
    out.add("x_ratio", "gauge", "X.", float("nan"))
    out.add("y_seconds", "gauge", "Y.", float("inf"))
    assert out.text().splitlines()[2::3] == [
        "journeys_events_routed_total 1234567",
        'journeys_revenue_total{currency="EUR"} 1234567.89',
        "journeys_events_routing_lag_seconds 0.25",
        "x_ratio NaN",
        "y_seconds +Inf",
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_temporal_sdk_metrics_are_served_where_the_setting_says(
    ts_env: WorkflowEnvironment,
) -> None:
    address = f"127.0.0.1:{free_port()}"
    runtime = sdk_runtime(Settings(temporal_metrics_address=address).temporal_metrics_address)
    assert runtime is not None and sdk_runtime(address) is runtime  # one per process
    assert sdk_runtime(None) is None
    config = ts_env.client.config()
    client = await Client.connect(
        ts_env.client.service_client.config.target_host,
        namespace=config["namespace"],
        runtime=runtime,
    )
    with pytest.raises(RPCError):  # a request the SDK counts, failed or not
        await client.get_workflow_handle("no-such-run").describe()
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    assert re.search(r"^temporal_request(_failure)?_total\{", text, re.M), text[:2000]


# --- logs --------------------------------------------------------------------


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("orchestrator")
    root.addHandler(handler)
    yield stream
    root.removeHandler(handler)


async def test_a_failed_send_logs_one_json_line_with_its_ids_and_no_address(
    spans: InMemorySpanExporter, bench: Bench, sendgrid: FakeSendGrid, json_log: io.StringIO
) -> None:
    use_client(bench, traced_client(bench.env))
    adapter = email_adapter(sendgrid)
    sendgrid.fail_next(
        FakeSendGrid.error(
            400, f"Does not contain a valid address: {CANARY_EMAIL}", "personalizations.0.to.0"
        )
    )
    async with bench.worker({"email": adapter}):
        await bench.identify(USER, email=CANARY_EMAIL, first_name=CANARY_NAME)
        await bench.track(USER, "Signed Up")
        assert await bench.result("hello", USER) == "completed"
    [message] = bench.messages(USER)
    assert message.status == "failed"
    text = json_log.getvalue()
    for canary in (CANARY_EMAIL, CANARY_NAME):
        assert canary not in text
    lines = [json.loads(line) for line in text.splitlines()]
    [failed] = [line for line in lines if line["message"].startswith("send failed")]
    assert failed["level"] == "WARNING"
    assert failed["logger"] == "orchestrator.activities.sending"
    assert (failed["run"], failed["step"], failed["message_id"]) == (
        message.workflow_id,
        "greet",
        message.id,
    )
    assert failed["activity"] == "deliver_message" and failed["journey"] == "hello"
    assert re.fullmatch(r"[0-9a-f]{32}", failed["trace_id"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", failed["time"])
    provider = next(s for s in spans.get_finished_spans() if s.name == "ProviderSend:sendgrid")
    assert failed["trace_id"] == f"{provider.context.trace_id:032x}"
    for span in spans.get_finished_spans():
        no_canary(span)


def test_json_lines_carry_bound_ids_and_tracebacks() -> None:
    record = logging.LogRecord(
        "orchestrator.x", logging.ERROR, __file__, 1, "boom %s", ("!",), None
    )
    with ids.working_on(run="hello:u-1", step="greet"):
        line = json.loads(JsonFormatter().format(record))
    assert {k: line[k] for k in ("level", "logger", "message", "run", "step")} == {
        "level": "ERROR",
        "logger": "orchestrator.x",
        "message": "boom !",
        "run": "hello:u-1",
        "step": "greet",
    }
    assert "trace_id" not in line  # tracing is off
    try:
        raise KeyError("k")
    except KeyError:
        record.exc_info = sys.exc_info()
    assert "KeyError" in json.loads(JsonFormatter().format(record))["exception"]
    assert "\n" not in JsonFormatter().format(record)


def test_json_is_a_setting_and_text_stays_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().log_format == "text"
    monkeypatch.setenv("JOURNEYS_LOG_FORMAT", "json")
    assert Settings().log_format == "json"
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    root.handlers = []
    try:
        configure_logging("json")
        assert isinstance(root.handlers[0].formatter, JsonFormatter)
    finally:
        root.handlers, root.level = saved, level


def test_a_router_process_logs_json_lines_when_told(tmp_path: Path) -> None:
    """`journeys router` with JOURNEYS_LOG_FORMAT=json and Temporal unreachable: its
    warning is one JSON object on stderr."""
    process = subprocess.Popen(
        journeys_command("router"),
        cwd=tmp_path,
        env=subprocess_env(
            JOURNEYS_LOG_FORMAT="json",
            JOURNEYS_DATA_DIR=str(tmp_path / "data"),
            TEMPORAL_ADDRESS="127.0.0.1:1",
        ),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        first = process.stderr.readline()
    finally:
        process.terminate()
        process.wait(timeout=30)
    line = json.loads(first)
    assert line["level"] == "WARNING" and line["logger"] == "orchestrator.processes.router"
    assert line["message"].startswith("Temporal is unreachable")
    assert set(line) == {"time", "level", "logger", "message"}


def test_the_api_process_logs_json_lines_and_no_access_lines(tmp_path: Path) -> None:
    """`journeys api` with JOURNEYS_LOG_FORMAT=json: uvicorn's lines are JSON too, and a
    request leaves no access line (client address, raw path) behind."""
    [port] = free_ports(1)
    process = subprocess.Popen(
        journeys_command("api"),
        cwd=tmp_path,
        env=subprocess_env(
            JOURNEYS_LOG_FORMAT="json",
            JOURNEYS_DATA_DIR=str(tmp_path / "data"),
            JOURNEYS_API_PORT=str(port),
            JOURNEYS_WRITE_KEYS=json.dumps([KEY]),
            JOURNEYS_SECRET_KEY="s" * 32,
            TEMPORAL_ADDRESS="127.0.0.1:1",
        ),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[dict[str, Any]] = []
    rest = ""
    try:
        assert process.stderr is not None
        while not any("startup complete" in line["message"] for line in lines):
            text = process.stderr.readline()
            assert text, f"the API ended: {lines}"
            lines.append(json.loads(text))
        call = {"userId": USER, "event": "Viewed", "properties": {"email": CANARY_EMAIL}}
        answer = httpx.post(
            f"http://127.0.0.1:{port}/v1/track?email={CANARY_EMAIL}", auth=auth(), json=call
        )
        assert answer.status_code == 200
    finally:
        process.terminate()
        rest = process.communicate(timeout=30)[1] or ""
    assert lines[0]["logger"].startswith("uvicorn") and lines[0]["level"] == "INFO"
    assert rest.strip(), "no line at all after the request: nothing logged its stop either"
    for text in rest.splitlines():
        assert CANARY_EMAIL not in text
        json.loads(text)


async def test_recorded_histories_replay_with_the_tracing_interceptor(
    spans: InMemorySpanExporter,
) -> None:
    """Turning tracing on for workers with runs in flight changes no workflow command."""
    histories = [
        WorkflowHistory.from_json(p.stem, p.read_text())
        for p in sorted((Path(__file__).parent / "histories").glob("*.json"))
    ]
    assert len(histories) >= 10
    replayer = Replayer(workflows=[JourneyWorkflow], interceptors=tracing.client_interceptors())
    for history in histories:
        await replayer.replay_workflow(history)
