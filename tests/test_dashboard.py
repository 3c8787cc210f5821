"""The dashboard over HTTP: access (login, sessions, CSRF, dev mode), each page's numbers
against the reporting model that `journeys stats` / `explain` read, the message log's
filters and pages, erasure with confirmation, languages. The browser tests are in
`test_dashboard_browser.py`.

The store is a simulated month (`dashboard_store` in conftest.py) of `abandoned_cart`
and `ab_offer` (an A/B split), plus a second version of `ab_offer`.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, timedelta
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import Engine, func
from sqlmodel import Session, col, select
from temporalio.testing import WorkflowEnvironment

from orchestrator.analytics.daily import entries_by_day
from orchestrator.analytics.significance import rate_difference
from orchestrator.analytics.stats import headlines, journey_stats
from orchestrator.analytics.story import contact_story
from orchestrator.api import create_app
from orchestrator.dashboard import i18n
from orchestrator.dashboard.sessions import COOKIE, DashboardSession, Signer
from orchestrator.settings import Settings
from orchestrator.store.db import make_engine, sqlite_url
from orchestrator.store.keys import create_key, revoke_key
from orchestrator.store.tables import ApiKey, Contact, JourneyRun, Message
from orchestrator.store.versions import deploy_journey

SIMULATION = "abandoned_cart+ab_offer-seed7"
REMOTE = ("203.0.113.9", 40000)  # a browser on another machine
LOCAL = ("127.0.0.1", 40000)


@dataclass
class Store:
    data_dir: Path
    engine: Engine
    admin_key: str


def _copy_store(source: Path, to: Path) -> Store:
    """The simulated store copied to `to` (tests may change it), v2 of ab_offer deployed."""
    (to / "simulations").mkdir(parents=True)
    shutil.copytree(source / "simulations" / SIMULATION, to / "simulations" / SIMULATION)
    engine = make_engine(sqlite_url(to / "simulations" / SIMULATION))
    with Session(engine) as session:
        spec = json.loads((to / "simulations" / SIMULATION / "journeys.json").read_text())[
            "ab_offer"
        ]
        spec["steps"][0]["split"][1]["then"][0]["wait"] = "4h"  # variant b waits 4 h, not 6
        digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
        deploy_journey(session, "ab_offer", spec, digest, None)
        session.commit()
    return Store(to, engine, create_key(engine, "dashboard-test", "admin"))


@pytest.fixture(scope="module")
def shared(dashboard_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Store:
    """For the tests that only read."""
    return _copy_store(dashboard_store, tmp_path_factory.mktemp("dash-read"))


@pytest.fixture
def own(dashboard_store: Path, tmp_path: Path) -> Store:
    """For a test that changes the store (erasure, key revocation)."""
    return _copy_store(dashboard_store, tmp_path / "data")


def _app(store: Store, dev: bool = False, client: Any = None) -> Any:
    settings = Settings(data_dir=store.data_dir, secret_key="test-secret-for-dashboard-cookies")
    return create_app(store.engine, ["wk_test"], client, settings=settings, dashboard_dev=dev)


def _client(
    app: Any, peer: tuple[str, int] = REMOTE, base: str = "http://testserver"
) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=peer)
    return httpx.AsyncClient(transport=transport, base_url=base)


async def _login(client: httpx.AsyncClient, key: str, next_path: str = "/dashboard/") -> Any:
    form = await client.get("/dashboard/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token, form.text
    return await client.post(
        "/dashboard/login", data={"csrf": token.group(1), "key": key, "next": next_path}
    )


@pytest_asyncio.fixture
async def admin(shared: Store) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(_app(shared)) as client:
        answer = await _login(client, shared.admin_key)
        assert answer.status_code == 303, answer.text
        yield client


def _text(html: str) -> str:
    """The page as a reader sees it: tags dropped, entities decoded, spaces collapsed."""
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


def _cells(html: str, attr: str, key: str) -> dict[str, str]:
    """{data-metric: text} of the row carrying `attr="key"`."""
    row = re.search(rf'<tr {attr}="{re.escape(key)}"[^>]*>(.*?)</tr>', html, re.S)
    assert row, f"no row {attr}={key}"
    return {
        m.group(1): _text(m.group(2)).split(" ")[0]
        for m in re.finditer(r'data-metric="([^"]+)"[^>]*>(.*?)</t[dh]>', row.group(1), re.S)
    }


def _n(value: int) -> str:
    return f"{value:,}"


# --- access -----------------------------------------------------------------------


async def test_without_a_session_every_page_sends_to_the_login(shared: Store) -> None:
    async with _client(_app(shared)) as client:
        for path in ("/dashboard/", "/dashboard/journeys/abandoned_cart", "/dashboard/health"):
            answer = await client.get(path)
            assert answer.status_code == 303
            assert answer.headers["location"].startswith("/dashboard/login?next=")
        answer = await client.get("/dashboard/messages?status=failed")
        assert answer.headers["location"] == (
            "/dashboard/login?next=%2Fdashboard%2Fmessages%3Fstatus%3Dfailed"
        )


async def test_login_takes_only_a_live_admin_key(shared: Store) -> None:
    write_key = create_key(shared.engine, "storefront-for-login-test", "write")
    async with _client(_app(shared)) as client:
        for key in ("wk_test", write_key, "ak_guessed", ""):
            answer = await _login(client, key)
            assert answer.status_code in (400, 401)
            assert COOKIE not in answer.cookies
        answer = await _login(client, "nope")
        assert answer.status_code == 401
        assert "That is not a live admin key." in answer.text
        answer = await _login(client, shared.admin_key, "/dashboard/health")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/dashboard/health"
        cookie = answer.headers["set-cookie"]
        for flag in ("HttpOnly", "SameSite=strict", "Path=/dashboard"):
            assert flag.lower() in cookie.lower()
        assert shared.admin_key not in cookie  # the key is never in the cookie
        assert (await client.get("/dashboard/")).status_code == 200


async def test_login_refuses_a_forged_form_and_foreign_next(shared: Store) -> None:
    async with _client(_app(shared)) as client:
        no_token = await client.post("/dashboard/login", data={"key": shared.admin_key})
        assert no_token.status_code == 400
        await client.get("/dashboard/login")  # the login cookie, but a made-up token
        forged = await client.post(
            "/dashboard/login", data={"csrf": "x" * 43, "key": shared.admin_key}
        )
        assert forged.status_code == 400
        away = await _login(client, shared.admin_key, "https://evil.example/")
        assert away.headers["location"] == "/dashboard/"
        away = await _login(client, shared.admin_key, "/dashboard//evil.example")
        assert away.headers["location"] == "/dashboard/"


async def test_a_revoked_key_ends_its_sessions_and_forged_cookies_do_nothing(own: Store) -> None:
    key = create_key(own.engine, "to-revoke", "admin")
    async with _client(_app(own)) as client:
        assert (await _login(client, key)).status_code == 303
        assert (await client.get("/dashboard/")).status_code == 200
        assert revoke_key(own.engine, "to-revoke")
        assert (await client.get("/dashboard/")).status_code == 303
    ours = Signer("test-secret-for-dashboard-cookies")
    other = Signer("another-secret").dump(DashboardSession(1, 2**40, "c"))
    dev = ours.dump(DashboardSession("dev", 2**40, "c"))
    # Signed with our secret, naming a live admin key's row, but not its hash: a cookie of
    # another store (or of a restored one) whose row 1 is another key.
    with Session(own.engine) as session:
        row_id = session.exec(select(ApiKey.id).where(ApiKey.name == "dashboard-test")).one()
    elsewhere = ours.dump(DashboardSession(row_id, 2**40, "c", "0" * 16))
    for cookie in (other, dev, elsewhere, "garbage", "a.b"):
        async with _client(_app(own)) as client:
            client.cookies.set(COOKIE, cookie)
            assert (await client.get("/dashboard/")).status_code == 303
    async with _client(_app(own)) as client:  # bytes that are not ASCII: no error either
        cookie_header = f"{COOKIE}=é.é".encode()
        answer = await client.get("/dashboard/", headers={"cookie": cookie_header})  # type: ignore[dict-item]
        assert answer.status_code == 303


async def test_dev_mode_opens_to_this_machine_only(shared: Store) -> None:
    for base in ("http://127.0.0.1:8000", "http://localhost:8000", "http://[::1]:8000"):
        async with _client(_app(shared, dev=True), LOCAL, base) as client:
            page = await client.get("/dashboard/")
            assert page.status_code == 200, base
            assert "development" in page.text
    async with _client(_app(shared, dev=True), REMOTE, "http://127.0.0.1:8000") as client:
        assert (await client.get("/dashboard/")).status_code == 303
    async with _client(_app(shared, dev=False), LOCAL, "http://127.0.0.1:8000") as client:
        assert (await client.get("/dashboard/")).status_code == 303
    # DNS rebinding: a page of another site whose name now points at 127.0.0.1.
    async with _client(_app(shared, dev=True), LOCAL, "http://attacker.example:8000") as client:
        assert (await client.get("/dashboard/contacts/sim-001")).status_code == 303
        answer = await client.get("/dashboard/export?contact=sim-001")
        assert answer.status_code == 303


async def test_forms_need_the_session_token(own: Store) -> None:
    contact = _a_contact(own.engine)
    async with _client(_app(own)) as client:
        await _login(client, own.admin_key)
        url = "/dashboard/erase"
        for form, headers in (
            ({"contact": contact, "confirm": contact}, {}),
            ({"contact": contact, "confirm": contact, "csrf": "wrong"}, {}),
            ({"contact": contact, "confirm": contact, "csrf": "é"}, {}),
        ):
            answer = await client.post(url, data=form, headers=headers)
            assert answer.status_code == 403
            assert "Form refused" in answer.text
        page = await client.get(f"/dashboard/contacts/{contact}")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token
        foreign = await client.post(
            url,
            data={"contact": contact, "confirm": contact, "csrf": token.group(1)},
            headers={"origin": "https://evil.example"},
        )
        assert foreign.status_code == 403
    with Session(own.engine) as session:
        assert session.get(Contact, contact) is not None  # nothing was erased


async def test_pages_carry_a_strict_content_security_policy(admin: httpx.AsyncClient) -> None:
    page = await admin.get("/dashboard/")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert page.headers["cache-control"] == "private, no-store"
    assert "<style" not in page.text and " style=" not in page.text  # nothing inline


# --- journeys ---------------------------------------------------------------------


async def test_journeys_page_shows_the_headline_numbers(
    admin: httpx.AsyncClient, shared: Store
) -> None:
    page = await admin.get("/dashboard/?days=all")
    assert page.status_code == 200
    with Session(shared.engine) as session:
        found = headlines(session)
    assert {h.journey_id for h in found} == {"abandoned_cart", "ab_offer"}
    for h in found:
        cells = _cells(page.text, "data-journey", h.journey_id)
        assert cells["entered"] == _n(h.entered)
        assert cells["active"] == _n(h.active)
        assert cells["converted"] == _n(h.converted)
        assert cells["conversion_rate"] == f"{h.conversion_rate * 100:.1f}"
    assert "v2" in _text(page.text)  # ab_offer's current version


async def test_the_sparkline_draws_entries_per_day(admin: httpx.AsyncClient, shared: Store) -> None:
    with Session(shared.engine) as session:
        run = session.exec(select(JourneyRun).order_by(col(JourneyRun.entered_at))).first()
        assert run is not None
        first = run.entered_at.date()
        daily = entries_by_day(session, first, first + timedelta(days=6))
    page = await admin.get(f"/dashboard/?since={first}&until={first + timedelta(days=6)}")
    label = re.search(r'<tr data-journey="abandoned_cart".*?aria-label="([^"]+)"', page.text, re.S)
    assert label
    assert label.group(1) == "Entries per day: " + ", ".join(map(str, daily["abandoned_cart"]))
    assert sum(daily["abandoned_cart"]) > 0


async def test_journey_page_matches_journeys_stats(admin: httpx.AsyncClient, shared: Store) -> None:
    page = await admin.get("/dashboard/journeys/abandoned_cart?days=all")
    assert page.status_code == 200
    with Session(shared.engine) as session:
        stats = journey_stats(session, "abandoned_cart")
    numbers = re.search(r'<dl class="facts" id="numbers">(.*?)</dl>', page.text, re.S)
    assert numbers
    facts = dict(re.findall(r'data-metric="([^"]+)">([^<]*)<', numbers.group(1)))
    assert facts["entered"] == _n(stats.entered)
    assert facts["converted"] == _n(stats.converted)
    assert facts["conversion_rate"] == f"{stats.conversion_rate * 100:.1f} %"
    for step in stats.steps:
        cells = _cells(page.text, "data-step", step.step_id)
        assert cells["reached"] == _n(step.reached)
        assert cells["waiting"] == _n(step.waiting_now)
    for msg in stats.messages:
        row = re.search(
            rf'<table class="grid" id="message-stats">.*?<tr data-step="{msg.step_id}">(.*?)</tr>',
            page.text,
            re.S,
        )
        assert row
        shown = dict(
            (k, _text(v).split(" ")[0])
            for k, v in re.findall(r'data-metric="([^"]+)">(.*?)</td>', row.group(1), re.S)
        )
        assert shown["sent"] == _n(msg.sent)
        assert shown["opened"] == _n(msg.opened)
        assert shown["clicked"] == _n(msg.clicked)
    assert "<svg" in page.text and 'class="funnel"' in page.text  # diagram and funnel
    assert f"Entered: {stats.entered}" not in page.text  # the funnel's label is the model's
    funnel = re.search(r'<svg class="funnel"[^>]*aria-label="[^"]*"', page.text)
    assert funnel


async def test_split_variants_show_the_difference_and_verdict(
    admin: httpx.AsyncClient, shared: Store
) -> None:
    page = await admin.get("/dashboard/journeys/ab_offer?days=all&version=1")
    assert page.status_code == 200
    with Session(shared.engine) as session:
        stats = journey_stats(session, "ab_offer", version=1)
    (split,) = stats.splits
    a, b = split.variants
    assert a.entrants + b.entrants == stats.entered > 0
    for v in (a, b):
        cells = _cells(page.text, "data-variant", v.variant)
        assert cells["entrants"] == _n(v.entrants)
        assert cells["conversions"] == _n(v.conversions)
    assert b.comparison is not None
    diff, interval = rate_difference(b.conversions, b.entrants, a.conversions, a.entrants)
    text = _text(page.text)
    assert f"difference {diff * 100:+.1f} pp" in text
    assert f"{interval.low * 100:+.1f} pp … {interval.high * 100:+.1f} pp" in text
    assert b.comparison.verdict in text


def test_verdicts_in_russian() -> None:
    class C:
        verdict = (
            "b converts better than a, 95 % sure; b brings more revenue per entrant, 95 % sure"
        )

    assert i18n.verdict(C, "ru") == (
        "b конвертирует лучше, чем a, с уверенностью 95 %; "
        "b приносит больше выручки на вошедшего, с уверенностью 95 %"
    )
    C.verdict = "not enough data yet"
    assert i18n.verdict(C, "ru") == "пока недостаточно данных"
    C.verdict = "no clear difference in conversion between b and a yet"
    assert i18n.verdict(C, "ru") == "явной разницы в конверсии между b и a пока нет"
    assert i18n.verdict(C, "en") == C.verdict


async def test_versions_say_what_changed_and_link_the_last_simulation(
    admin: httpx.AsyncClient,
) -> None:
    page = await admin.get("/dashboard/journeys/ab_offer")
    text = _text(page.text)
    assert "v2 — deployed" in text and "v1 — deployed" in text
    assert "6h" in text and "4h" in text  # the retimed wait, in the change's words
    link = re.search(r'href="(/dashboard/simulations/[^"]+)"', page.text)
    assert link and SIMULATION in unquote(link.group(1))
    report = await admin.get(link.group(1))
    assert report.status_code == 200
    assert "ab_offer" in report.text and "<svg" in report.text
    missing = await admin.get("/dashboard/simulations/..%2F..%2Fetc")
    assert missing.status_code == 404


async def test_unknown_journey_and_bad_period_say_what_is_wrong(
    admin: httpx.AsyncClient,
) -> None:
    missing = await admin.get("/dashboard/journeys/nope")
    assert missing.status_code == 404
    assert "no journey 'nope' was ever deployed" in _text(missing.text)
    bad = await admin.get("/dashboard/?days=12")
    assert bad.status_code == 400
    assert "days must be 7, 30, 90 or all" in _text(bad.text)
    bad = await admin.get("/dashboard/?since=2026-13-01")
    assert bad.status_code == 400 and "YYYY-MM-DD" in bad.text
    bad = await admin.get("/dashboard/journeys/abandoned_cart?version=x")
    assert bad.status_code == 400


# --- messages ---------------------------------------------------------------------


def _ids(html: str) -> list[str]:
    return re.findall(r'<tr data-message="([^"]+)"', html)


async def test_message_log_filters_and_pages_through_everything(
    admin: httpx.AsyncClient, shared: Store
) -> None:
    with Session(shared.engine) as session:
        total = session.exec(select(func.count()).select_from(Message)).one()
        emails = set(session.exec(select(Message.id).where(Message.channel == "email")))
        reminders = set(
            session.exec(
                select(Message.id).where(
                    Message.journey_id == "abandoned_cart", Message.step_id == "reminder"
                )
            )
        )
    assert total > 50  # more than one page
    seen: list[str] = []
    url = "/dashboard/messages"
    while url:
        page = await admin.get(url if url.startswith("/") else "/dashboard/messages" + url)
        seen += _ids(page.text)
        found = re.search(r'<a href="([^"]+)" rel="next">', page.text)
        url = unescape(found.group(1)) if found else ""
    assert len(seen) == len(set(seen)) == total
    page = await admin.get("/dashboard/messages?channel=email")
    assert set(_ids(page.text)) <= emails and _ids(page.text)
    page = await admin.get("/dashboard/messages?journey=abandoned_cart&step=reminder")
    assert set(_ids(page.text)) <= reminders and _ids(page.text)
    bad = await admin.get("/dashboard/messages?status=lost")
    assert bad.status_code == 400 and "status must be one of" in bad.text
    none = await admin.get("/dashboard/messages?since=2001-01-01&until=2001-01-02")
    assert 'id="no-messages"' in none.text


async def test_message_page_shows_timeline_and_content_safely(
    admin: httpx.AsyncClient, shared: Store
) -> None:
    with Session(shared.engine) as session:
        message = session.exec(
            select(Message).where(Message.channel == "email", Message.status == "opened")
        ).first()
    assert message is not None and message.content.get("html")
    page = await admin.get(f"/dashboard/messages/{message.id}")
    assert page.status_code == 200
    rows = re.search(r'<table class="grid" id="timeline">.*?<tbody>(.*?)</tbody>', page.text, re.S)
    assert rows and rows.group(1).count("<tr>") == len(message.timeline)
    assert _text(message.content["subject"]) in _text(page.text)
    frame = re.search(r'<iframe[^>]*src="([^"]+)"', page.text)
    assert frame and "sandbox" in frame.group(0)
    content = await admin.get(frame.group(1))
    assert content.text == message.content["html"]
    policy = content.headers["content-security-policy"]
    assert "img-src data:" in policy and "script" not in policy  # no pixel, no script


# --- contacts ---------------------------------------------------------------------


def _a_contact(engine: Engine) -> str:
    with Session(engine) as session:
        row = session.exec(
            select(Message.contact_id).where(Message.status.in_(("opened", "clicked")))  # type: ignore[attr-defined]
        ).first()
        assert row is not None
        return row


async def test_contact_page_tells_the_same_story_as_explain(
    admin: httpx.AsyncClient, shared: Store
) -> None:
    contact = _a_contact(shared.engine)
    page = await admin.get(f"/dashboard/contacts/{contact}")
    assert page.status_code == 200
    with Session(shared.engine) as session:
        story = contact_story(session, contact)
        person = session.get(Contact, contact)
    assert person is not None
    shown = re.findall(r'<span dir="auto">(.*?)</span>', page.text.split('id="story"')[1])
    assert [unescape(s) for s in shown] == [m.text for m in story.moments]
    text = _text(page.text)
    assert person.email in text
    consent = _cells(page.text, "data-channel", "email")
    assert consent == {}  # no metrics there; the row exists
    find = await admin.get(f"/dashboard/contacts?id={contact}")
    assert find.status_code == 303 and find.headers["location"].endswith(contact)
    missing = await admin.get("/dashboard/contacts/nobody-at-all")
    assert missing.status_code == 404


async def test_export_and_erase_with_confirmation(own: Store, ts_env: WorkflowEnvironment) -> None:
    contact = _a_contact(own.engine)
    async with _client(_app(own, client=ts_env.client)) as client:
        await _login(client, own.admin_key)
        export = await client.get(f"/dashboard/export?contact={contact}")
        assert export.status_code == 200
        assert "attachment" in export.headers["content-disposition"]
        assert export.json()["contact"]["id"] == contact
        page = await client.get(f"/dashboard/contacts/{contact}")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token
        url = "/dashboard/erase"
        wrong = await client.post(
            url, data={"csrf": token.group(1), "contact": contact, "confirm": "someone"}
        )
        assert wrong.status_code == 400
        assert "does not match" in wrong.text
        with Session(own.engine) as session:
            assert session.get(Contact, contact) is not None
        done = await client.post(
            url, data={"csrf": token.group(1), "contact": contact, "confirm": contact}
        )
        assert done.status_code == 200, done.text
        assert "Erased" in done.text
    with Session(own.engine) as session:
        assert session.get(Contact, contact) is None


# --- health and languages ----------------------------------------------------------


async def test_health_page_shows_the_health_checks(admin: httpx.AsyncClient) -> None:
    page = await admin.get("/dashboard/health")
    health = (await admin.get("/health")).json()
    assert page.status_code == (200 if health["status"] == "ok" else 503)
    assert _cells(page.text, "data-part", "routing")["backlog"] == _n(health["events"]["backlog"])
    assert "not configured" in _cells_text(page.text, "temporal")


def _cells_text(html: str, part: str) -> str:
    row = re.search(rf'<tr data-part="{part}">(.*?)</tr>', html, re.S)
    assert row
    return _text(row.group(1))


async def test_russian_interface(admin: httpx.AsyncClient) -> None:
    page = await admin.get("/dashboard/?lang=ru")
    assert '<html lang="ru"' in page.text
    assert "Сценарии" in page.text and "Конверсия" in page.text
    assert "journeys_lang=ru" in page.headers["set-cookie"]
    again = await admin.get("/dashboard/health")  # the cookie keeps the choice
    assert "Состояние" in again.text
    english = await admin.get("/dashboard/?lang=en")
    assert "Conversion rate" in english.text


async def test_browser_language_is_followed(shared: Store) -> None:
    async with _client(_app(shared)) as client:
        page = await client.get("/dashboard/login", headers={"accept-language": "ru-RU,ru;q=0.9"})
        assert "Войти" in page.text


def test_every_interface_string_has_a_russian_translation() -> None:
    folder = Path(i18n.__file__).parent
    used: set[str] = set()
    for path in [*folder.glob("templates/*.html"), *folder.glob("*.py")]:
        source = path.read_text()
        used |= set(re.findall(r"""\b_\(\s*"([^"]+)"\s*\)""", source))
        used |= set(re.findall(r"""\b_\(\s*'([^']+)'\s*\)""", source))
        used |= set(re.findall(r"""\btr\(\s*"([^"]+)"\s*\)""", source))
        used |= set(re.findall(r"""PageProblem\(\s*\d+,\s*"([^"]+)\"""", source))
    assert len(used) > 100
    missing = sorted(used - set(i18n.RU))
    assert not missing, f"no Russian for: {missing}"
    assert date.today()  # (keeps the import honest for readers: days are UTC dates)


async def test_arabic_content_reads_right_to_left(own: Store) -> None:
    subject = "سلتك بانتظارك"  # "your cart is waiting"
    with Session(own.engine) as session:
        message = session.exec(select(Message).where(Message.channel == "email")).first()
        assert message is not None
        message.content = {**message.content, "subject": subject}
        session.add(message)
        session.commit()
        message_id, contact = message.id, message.contact_id
    async with _client(_app(own)) as client:
        await _login(client, own.admin_key)
        page = await client.get(f"/dashboard/messages/{message_id}")
        assert f'<span dir="auto">{subject}</span>' in page.text
        log = await client.get(f"/dashboard/messages?contact={contact}")
        assert f'<td dir="auto">{subject}</td>' in log.text
        assert '<html lang="en" dir="ltr">' in log.text  # the page itself stays left to right


async def test_hostile_inputs_get_clear_answers_not_errors(
    admin: httpx.AsyncClient, shared: Store
) -> None:
    far = await admin.get("/dashboard/?since=0001-01-01&until=9999-12-31")
    assert far.status_code == 400 and "between 2000-01-01 and 2100-12-31" in _text(far.text)
    year = await admin.get("/dashboard/?since=2026-01-01&until=2027-12-31")
    assert year.status_code == 200
    points = re.search(r'<polyline[^>]*points="([^"]+)"', year.text)
    assert points and len(points.group(1).split()) == 92  # the period's last 92 days
    for url in (
        "/dashboard/messages?until=9999-12-31",
        "/dashboard/messages?before=9999-12-31T23:59:59-23:59|x",
        "/dashboard/messages?before=nonsense",
    ):
        assert (await admin.get(url)).status_code == 400, url
    login = await admin.post("/dashboard/login", data={"csrf": "é", "key": "x"})
    assert login.status_code == 400


async def test_contacts_are_found_by_email_and_exported_whatever_their_id(own: Store) -> None:
    with Session(own.engine) as session:
        session.add(Contact(id="Иван", email="Ivan@Example.com"))
        session.commit()
    async with _client(_app(own)) as client:
        await _login(client, own.admin_key)
        found = await client.get("/dashboard/contacts?id=ivan@example.com")
        assert found.status_code == 303
        assert unquote(found.headers["location"]) == "/dashboard/contacts/Иван"
        export = await client.get("/dashboard/export?contact=Иван")
        assert export.status_code == 200
        assert export.json()["contact"]["email"] == "Ivan@Example.com"
        missing = await client.get("/dashboard/contacts?id=nobody@example.com")
        assert missing.status_code == 404


async def test_a_simulated_store_points_to_its_period(admin: httpx.AsyncClient) -> None:
    # The simulation entered its shoppers after today: the default 30 days are empty.
    page = await admin.get("/dashboard/")
    hint = re.search(r'<p class="warn" id="empty-period">(.*?)</p>', page.text, re.S)
    assert hint and "in all: 120" in _text(hint.group(1))  # 60 shoppers, two journeys
