"""The dashboard in a real browser: headless Chromium (Debian's `chromium`, installed by
`tests/install-chromium.sh` from the README's test command) driven by Playwright through
`executable_path`. Log in, load every page and check its numbers against the store,
click through journey → step → message → contact, submit a form, move by keyboard,
check that every field has a label; a screenshot of each page is kept in
`test-artifacts/dashboard/` (`JOURNEYS_TEST_ARTIFACTS` names another folder), and with
`JOURNEYS_DOCS_SCREENSHOTS=1` also written to `docs/images/` for the README.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from live_api import serve
from sqlmodel import Session, select
from test_dashboard import Store, _app, _copy_store

from orchestrator.analytics.stats import headlines, journey_stats
from orchestrator.store.tables import Message

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("JOURNEYS_TEST_ARTIFACTS") or ROOT / "test-artifacts") / "dashboard"
DOCS_IMAGES = ROOT / "docs" / "images"
# As the machine's browser probe starts it: no sandbox as root, nothing phoning home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    configured = os.environ.get("JOURNEYS_CHROMIUM")
    if configured:
        return configured if Path(configured).is_file() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


pytestmark = pytest.mark.skipif(
    chromium_path() is None,
    reason=(
        "no Chromium for the dashboard's browser tests: run sh tests/install-chromium.sh "
        "(Debian's chromium via apt-get) or set JOURNEYS_CHROMIUM to a Chromium binary"
    ),
)


@pytest.fixture(scope="module")
def store(dashboard_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Store:
    return _copy_store(dashboard_store, tmp_path_factory.mktemp("dash-browser"))


@pytest.fixture(scope="module")
def base_url(store: Store) -> Iterator[str]:
    with serve(_app(store)) as url:
        yield url


@pytest_asyncio.fixture
async def page(base_url: str) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS
        )
        context = await browser.new_context(
            base_url=base_url, viewport={"width": 1280, "height": 900}, locale="en-US"
        )
        tab = await context.new_page()
        problems: list[str] = []

        def console(message: Any) -> None:
            # A page's own status (the health page's 503) is logged too: not a problem.
            if message.type == "error" and "Failed to load resource" not in message.text:
                problems.append(message.text)  # script errors, CSP violations

        def response(answer: Any) -> None:
            if answer.status >= 400 and answer.request.resource_type != "document":
                problems.append(f"{answer.status} for {answer.url}")  # a missing asset

        tab.on("console", console)
        tab.on("pageerror", lambda e: problems.append(str(e)))
        tab.on("response", response)
        yield tab
        await browser.close()
        assert not problems, f"the browser reported: {problems}"  # CSP violations included


async def _log_in(page: Any, key: str) -> None:
    await page.goto("/dashboard/")
    assert "/dashboard/login" in page.url
    await page.get_by_label("Admin key").fill(key)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url("**/dashboard/")


async def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    if os.environ.get("JOURNEYS_DOCS_SCREENSHOTS") == "1":
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(DOCS_IMAGES / f"dashboard-{name}.png"), full_page=False)


async def _metric(page: Any, row: str, metric: str) -> str:
    text: str = await page.locator(f'{row} [data-metric="{metric}"]').first.inner_text()
    return text.split()[0]


async def test_click_through_every_page(page: Any, store: Store) -> None:
    await _log_in(page, store.admin_key)
    await page.goto("/dashboard/?days=all")
    with Session(store.engine) as session:
        found = {h.journey_id: h for h in headlines(session)}
        stats = journey_stats(session, "abandoned_cart")
    for journey_id, h in found.items():
        row = f'tr[data-journey="{journey_id}"]'
        assert await _metric(page, row, "entered") == f"{h.entered:,}"
        assert await _metric(page, row, "converted") == f"{h.converted:,}"
    await _shot(page, "journeys")

    await page.get_by_role("link", name="abandoned_cart", exact=True).click()
    await page.wait_for_url("**/dashboard/journeys/abandoned_cart*")
    assert await _metric(page, "#numbers", "entered") == f"{stats.entered:,}"
    diagram = page.locator(".diagram svg")
    assert await diagram.count() == 1 and await diagram.is_visible()
    for step in stats.steps:
        row = f'#steps tr[data-step="{step.step_id}"]'
        assert await _metric(page, row, "reached") == f"{step.reached:,}"
    await _shot(page, "journey")

    await page.locator('#steps tr[data-step="reminder"] a').click()
    await page.wait_for_url("**/dashboard/messages?journey=abandoned_cart&step=reminder")
    rows = page.locator("#messages tbody tr")
    assert await rows.count() > 0
    with Session(store.engine) as session:
        reminders = set(
            session.exec(
                select(Message.id).where(
                    Message.journey_id == "abandoned_cart", Message.step_id == "reminder"
                )
            )
        )
    shown = await rows.evaluate_all("rows => rows.map(r => r.dataset.message)")
    assert set(shown) <= reminders
    await _shot(page, "messages")

    await rows.first.locator("a").first.click()
    await page.wait_for_url("**/dashboard/messages/*")
    message_id = page.url.rsplit("/", 1)[1]
    with Session(store.engine) as session:
        message = session.get(Message, message_id)
    assert message is not None
    assert await page.locator("#timeline tbody tr").count() == len(message.timeline)
    if message.content.get("html"):
        frame = page.frame_locator("iframe.email")
        assert await frame.locator("body").count() == 1
    await _shot(page, "message")

    await page.locator("#message-facts a").first.click()
    await page.wait_for_url("**/dashboard/contacts/*")
    assert await page.locator("#story li").count() > 0
    await _shot(page, "contact")

    await page.get_by_role("link", name="Health").click()
    await page.wait_for_url("**/dashboard/health")
    assert await page.locator('#parts tr[data-part="database"] .badge').inner_text() == "ok"
    await _shot(page, "health")


async def test_filters_apply_and_forms_confirm(page: Any, store: Store) -> None:
    await _log_in(page, store.admin_key)
    await page.goto("/dashboard/messages")
    await page.get_by_label("Channel").select_option("email")  # applies on change (script)
    await page.wait_for_url("**/dashboard/messages?*channel=email*")
    channels = await page.locator("#messages tbody tr td:nth-child(3)").all_inner_texts()
    assert channels and set(channels) == {"email"}

    contact = await page.locator("#messages tbody tr td:nth-child(5)").first.inner_text()
    await page.get_by_label("Contact", exact=True).first.fill(contact)
    await page.get_by_role("button", name="Open").click()
    await page.wait_for_url(f"**/dashboard/contacts/{contact}")
    await page.get_by_label("Type the contact id to confirm").fill("not-this-one")
    await page.get_by_role("button", name="Erase this contact").click()
    notice = page.locator(".notice")
    await notice.wait_for()
    assert "does not match" in await notice.inner_text()
    assert await page.locator("h1 code").inner_text() == contact  # still there


async def test_keyboard_and_labels(page: Any, store: Store) -> None:
    await _log_in(page, store.admin_key)
    for path in ("/dashboard/", "/dashboard/messages", "/dashboard/journeys/ab_offer"):
        await page.goto(path)
        await page.keyboard.press("Tab")
        focused = await page.evaluate("document.activeElement.textContent")
        assert focused == "Skip to content"
        await page.keyboard.press("Enter")
        assert await page.evaluate("document.activeElement.id") == "main"
        unlabelled = await page.evaluate(
            """() => [...document.querySelectorAll('input:not([type=hidden]), select')]
                .filter(f => !(f.labels && f.labels.length) && !f.getAttribute('aria-label'))
                .map(f => f.name)"""
        )
        assert unlabelled == []
    # Tab reaches the journeys table's links in order, from the keyboard alone.
    await page.goto("/dashboard/?days=all")
    for _ in range(40):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.textContent") == "ab_offer":
            break
    else:
        raise AssertionError("the journey link was never reached with Tab")
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/dashboard/journeys/ab_offer*")


async def test_russian_pages(page: Any, store: Store) -> None:
    await _log_in(page, store.admin_key)
    await page.goto("/dashboard/journeys/ab_offer?lang=ru&days=all&version=1")
    assert await page.get_attribute("html", "lang") == "ru"
    assert await page.locator("h2#h-numbers").inner_text() == "Показатели"
    verdict = await page.locator(".verdict").first.inner_text()
    assert verdict and all(word not in verdict for word in ("converts", "enough", "clear"))
    await _shot(page, "journey-ru")
    await page.goto("/dashboard/")  # the choice stays
    assert await page.get_attribute("html", "lang") == "ru"
