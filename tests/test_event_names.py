"""Event names a journey waits for must be events that can arrive.

A trigger, `exit_on`, `goal` or `wait_for` naming `product viewed` or `Order Complete`
validates, deploys and never fires. `journeys validate` warns about a name that is
not in the Segment spec, not one of ours, not tracked by a journey, not declared in
`journeys/events.yaml` and not received by the store, with a "did you mean"; `--strict`
(what CI of a journeys repository runs) fails on it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from harness import write_message
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from orchestrator.cli import main
from orchestrator.deployment.deploy import deploy
from orchestrator.rendering import Renderer
from orchestrator.store.db import make_engine, migrate, session_scope
from orchestrator.store.tables import Contact, Event, JourneyVersion

ROOT = Path(__file__).resolve().parent.parent
PLAN = "journeys/events.yaml"
UNKNOWN = (
    "not a Segment spec event, one of ours, tracked by a journey, declared in "
    "journeys/events.yaml or received by the store"
)

TYPOS = """\
id: browse
name: Browse abandonment
trigger: {event: product viewed}
exit_on: [Order Complete, Checkout Started]
goal: {event: Order Completed, within: 7d}
steps:
  - wait_for: {event: [Cart Viewed, Order_Completed], timeout: 1d}
  - send: {channel: email, template: hello}
"""


def validate(*args: str) -> Result:
    return CliRunner().invoke(main, ["validate", *args])


@pytest.fixture
def project(workdir: Path) -> Path:
    write_message("hello", {"email.subject": "Hi", "email.text": "Hello"})
    return workdir


def test_misspelt_event_names_warn_with_what_was_meant_and_fail_under_strict(
    project: Path,
) -> None:
    Path("journeys/browse.yaml").write_text(TYPOS)
    Path("journeys/segments.yaml").write_text(
        "browsers:\n  event: {name: Product viewed, at_least: 3, within: 7d}\n"
    )

    result = validate()

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"journeys/browse.yaml:3:18: warning: unknown event 'product viewed': {UNKNOWN}; "
        "did you mean 'Product Viewed'?",
        f"journeys/browse.yaml:4:11: warning: unknown event 'Order Complete': {UNKNOWN}; "
        "did you mean 'Order Completed'?",
        f"journeys/browse.yaml:7:37: warning: unknown event 'Order_Completed': {UNKNOWN}; "
        "did you mean 'Order Completed'?",
        f"journeys/segments.yaml:2:17: warning: unknown event 'Product viewed': {UNKNOWN}; "
        "did you mean 'Product Viewed'?",
        "1 journey(s) and 1 segment(s) valid",
    ]
    assert "4 warning(s) (journeys validate --strict fails on them)" in result.stderr
    # No store here, and none is created to look: the output says so.
    assert "event names were not checked against the store: no database in .journeys" in (
        result.stderr
    )
    assert not Path(".journeys").exists()

    strict = validate("--strict")
    assert strict.exit_code == 1
    assert "4 warning(s) found; --strict fails on warnings" in strict.stderr


def test_misspelt_audience_events_warn_too(project: Path) -> None:
    # A misspelt `did` selects no one; a misspelt `not_did` keeps in those who bought.
    Path(PLAN).write_text("Price Dropped:\n  properties: [product_id]\n")
    Path("journeys/drop.yaml").write_text(
        "id: drop\nname: Price drop\ntrigger:\n  event: Price Dropped\n  audience:\n"
        "    did: Product Viewd\n    within: 14d\n"
        "    not_did: [Order Completed, Order Complete]\n"
        "entry: {re_entry: always}\nsteps:\n  - send: {channel: email, template: hello}\n"
    )

    result = validate("--strict")

    assert result.exit_code == 1
    assert result.stdout.splitlines()[:2] == [
        f"journeys/drop.yaml:6:10: warning: unknown event 'Product Viewd': {UNKNOWN}; "
        "did you mean 'Product Viewed'?",
        f"journeys/drop.yaml:8:32: warning: unknown event 'Order Complete': {UNKNOWN}; "
        "did you mean 'Order Completed'?",
    ]


def test_a_name_nothing_resembles_says_where_to_declare_it(project: Path) -> None:
    Path("journeys/browse.yaml").write_text(
        "id: ship\nname: Shipped\ntrigger: {event: Order Shipped}\n"
        "steps:\n  - send: {channel: email, template: hello}\n"
    )
    assert validate().stdout.splitlines()[0] == (
        f"journeys/browse.yaml:3:18: warning: unknown event 'Order Shipped': {UNKNOWN}; "
        "if your storefront sends it, declare it in journeys/events.yaml"
    )

    Path(PLAN).write_text(
        "# our tracking plan\nOrder Shipped:\n  description: The parcel left the warehouse\n"
        "  properties: [order_id, carrier]\n"
    )
    result = validate("--strict")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "1 journey(s) valid"


def test_the_tracking_plan_is_checked_itself_at_file_line_column(project: Path) -> None:
    Path(PLAN).write_text(
        "Order Shipped:\n  descripton: typo\nReturn Requested:\n  properties: 3\nOrder Delivered:\n"
    )
    result = validate()
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "journeys/events.yaml:2:3: unknown key 'descripton' in event 'Order Shipped' "
        "(expected one of: description, properties)",
        "journeys/events.yaml:4:15: properties of 'Return Requested': expected a list of "
        "property names or a mapping of names to what they mean, got a number",
    ]

    Path(PLAN).write_text("- Order Shipped\n")
    assert validate().stdout.splitlines() == [
        "journeys/events.yaml:1:1: expected a mapping of event names to their descriptions, "
        "got a list; e.g.",
        "Order Delivered:",
        "  properties: [order_id]",
    ]


def test_an_event_another_journey_tracks_is_known(project: Path) -> None:
    Path("journeys/waits.yaml").write_text(
        "id: waits\nname: Waits\ntrigger: {event: Club Joined}\n"
        "steps:\n  - send: {channel: email, template: hello}\n"
    )
    assert "unknown event 'Club Joined'" in validate().stdout

    Path("journeys/joins.yaml").write_text(
        "id: joins\nname: Joins\ntrigger: {event: Order Completed}\n"
        "steps:\n  - action: {type: track, event: Club Joined}\n"
    )
    result = validate("--strict")
    assert result.exit_code == 0, result.output


def test_names_the_store_received_are_known(project: Path) -> None:
    Path("journeys/tier.yaml").write_text(
        "id: tier\nname: Tier\ntrigger: {event: Loyalty Tier Changed}\n"
        "steps:\n  - send: {channel: email, template: hello}\n"
    )
    assert validate("--strict").exit_code == 1

    Path(".journeys").mkdir()
    engine = make_engine(f"sqlite:///{Path('.journeys/journeys.db').resolve()}")
    migrate(engine)
    now = datetime(2026, 3, 1, tzinfo=UTC)
    with session_scope(engine) as session:
        session.add(Contact(id="ann"))
        session.add(
            Event(
                message_id="m1",
                type="track",
                name="Loyalty Tier Changed",
                contact_id="ann",
                timestamp=now,
                received_at=now,
            )
        )
    engine.dispose()

    result = validate("--strict")
    assert result.exit_code == 0, result.output
    assert "not checked against the store" not in result.stderr


def received(*names: str) -> None:
    """A store in the default data dir that has received a track event of each name."""
    Path(".journeys").mkdir(exist_ok=True)
    engine = make_engine(f"sqlite:///{Path('.journeys/journeys.db').resolve()}")
    migrate(engine)
    now = datetime(2026, 3, 1, tzinfo=UTC)
    with session_scope(engine) as session:
        session.add(Contact(id="ann"))
        for i, name in enumerate(names):
            session.add(
                Event(
                    message_id=f"m{i}",
                    type="track",
                    name=name,
                    contact_id="ann",
                    timestamp=now,
                    received_at=now,
                )
            )
    engine.dispose()


def test_a_received_near_miss_of_a_known_name_still_warns(project: Path) -> None:
    """One track of `Order Complete` from anyone (a storefront's write key may be public)
    made `exit_on: [Order Complete]` pass --strict."""
    Path("journeys/cart.yaml").write_text(
        "id: cart\nname: Cart\ntrigger: {event: Product Added}\nexit_on: [Order Complete]\n"
        "steps:\n  - send: {channel: email, template: hello}\n"
    )
    received("Order Complete", "Loyalty Tier Changed")
    result = validate("--strict")
    assert result.exit_code == 1
    assert result.stdout.splitlines()[0] == (
        "journeys/cart.yaml:4:11: warning: event 'Order Complete' was received by the store, "
        "but is not a Segment spec event, one of ours, tracked by a journey or declared in "
        "journeys/events.yaml; did you mean 'Order Completed'? (anyone with a write key can "
        "send any name: if your storefront really sends 'Order Complete', declare it in "
        "journeys/events.yaml)"
    )
    # A shop whose storefront really sends it says so in its tracking plan.
    Path(PLAN).write_text("Order Complete:\n  description: our legacy checkout's name\n")
    assert validate("--strict").exit_code == 0


DELIVERY = """\
id: reviews
name: Reviews
trigger: {event: Order Completed}
steps:
  - wait_for:
      event: Order Delivered
      where: event.properties.orderid == trigger.properties.order_id
      timeout: 30d
  - wait_for:
      event: [Order Delivered, Return Requested]
      where: event.properties.order_id != null and event.properties.carier != "dhl"
      timeout: 30d
  - wait_for: {event: Order Shipped, where: event.properties.anything == 1, timeout: 1d}
  - send: {channel: email, template: hello}
"""


def test_a_property_the_tracking_plan_does_not_list_for_the_event_is_a_warning(
    project: Path,
) -> None:
    """`where: event.properties.orderid == …` on `Order Delivered` (declared with
    `order_id`) passed --strict and never held."""
    Path("journeys/reviews.yaml").write_text(DELIVERY)
    Path(PLAN).write_text(
        "Order Delivered:\n  properties:\n    order_id: the order's id\n"
        "    carrier: {description: who delivered it}\n"
        "Return Requested:\n  properties: [order_id]\n"
        "Order Shipped:\n"  # lists no properties: any may be read
    )
    result = validate("--strict")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "journeys/reviews.yaml:7:14: warning: event.properties.orderid is always null: "
        "journeys/events.yaml lists no property 'orderid' for 'Order Delivered' (it lists: "
        "carrier, order_id); did you mean event.properties.order_id?",
        "journeys/reviews.yaml:11:52: warning: event.properties.carier is always null: "
        "journeys/events.yaml lists no property 'carier' for 'Order Delivered' or 'Return "
        "Requested' (it lists: carrier, order_id); did you mean event.properties.carrier?",
    ]
    # `trigger.properties.order_id` is not checked: the plan does not list Order Completed's
    # properties. Once it does, a misspelt one there is caught too.
    Path(PLAN).write_text(
        Path(PLAN).read_text() + "Order Completed:\n  properties: [orderId, revenue]\n"
    )
    assert (
        "journeys/reviews.yaml:7:42: warning: trigger.properties.order_id is always null: "
        "journeys/events.yaml lists no property 'order_id' for 'Order Completed' (it lists: "
        "orderId, revenue); did you mean trigger.properties.orderId?"
    ) in validate().stdout.splitlines()


def test_a_message_reading_a_property_the_plan_does_not_list_is_a_warning(
    project: Path,
) -> None:
    Path("journeys/delivered.yaml").write_text(
        "id: delivered\nname: Delivered\ntrigger: {event: Order Delivered}\n"
        "steps:\n  - send: {channel: email, template: delivered}\n"
    )
    Path(PLAN).write_text(
        "Order Delivered:\n  properties:\n    order_id: {required: true}\n    carrier:\n"
    )
    write_message(
        "delivered",
        {
            "email.subject": "Order {{ event.properties.order_id }} delivered",
            # A guarded typo would silently never show; `.get` reads a key too.
            "email.text": "{% if event.properties.carier is defined %}By {{ "
            "event.properties.carier }}{% endif %}\n{{ event.properties.get('ordr_id') }}",
            "ru/email.subject": "Заказ {{ event.properties['order_id'] }} доставлен",
            "ru/email.text": "Ваш заказ доставлен",
            "sample.yaml": "event: {properties: {order_id: '1'}}\n",
        },
    )
    result = validate()
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "templates/delivered/email.text:1:1: warning: event.properties.carier is never set: "
        "journeys/events.yaml lists no property 'carier' for 'Order Delivered' (it lists: "
        "carrier, order_id); did you mean event.properties.carrier?",
        "templates/delivered/email.text:2:1: warning: event.properties.ordr_id is never set: "
        "journeys/events.yaml lists no property 'ordr_id' for 'Order Delivered' (it lists: "
        "carrier, order_id); did you mean event.properties.order_id?",
        "1 journey(s) valid",
    ]


def test_deploy_refuses_on_errors_only_and_knows_what_its_store_received(
    project: Path, sqlite_engine: Engine
) -> None:
    Path("journeys/browse.yaml").write_text(TYPOS)
    deployed = deploy(sqlite_engine, Path("journeys"), Renderer(Path("templates")))
    assert [d.journey_id for d in deployed] == ["browse"]
    with Session(sqlite_engine) as session:
        assert session.exec(select(func.count()).select_from(JourneyVersion)).one() == 1


@pytest.mark.parametrize(
    "folder",
    [ROOT / "journeys", *sorted(p for p in (ROOT / "examples").glob("*/journeys") if p.is_dir())],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_shipped_journeys_pass_strict_validation(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CI of a journeys repository runs --strict: the playbook and examples must pass it."""
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("JOURNEYS_DATA_DIR", str(ROOT / ".no-store-here"))
    if not any(folder.glob("*.yaml")):  # its journeys are Python classes (and run so)
        python = '["examples.python_journey.vip_welcome:VipWelcome"]'
        monkeypatch.setenv("JOURNEYS_PYTHON_JOURNEYS", python)
    result = validate("--strict", str(folder), "--templates", str(ROOT / "templates"))
    assert result.exit_code == 0, result.output


def test_known_names_need_no_store_so_no_note_about_it(project: Path) -> None:
    Path("journeys/browse.yaml").write_text(
        TYPOS.replace("product viewed", "Product Viewed")
        .replace("Order Complete,", "Order Completed,")
        .replace("Order_Completed", "Order Completed")
    )
    result = validate("--strict")
    assert result.exit_code == 0, result.output
    assert "not checked against the store" not in result.stderr
    assert not Path(".journeys").exists()
