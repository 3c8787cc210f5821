"""`journeys simulate`, `check` and `explain --simulation`: the shipped journeys on
synthetic shoppers, in simulated time on the time-skipping server.

Each simulation starts its own test server and store, so the populations are small.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from harness import ROOT

from orchestrator.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

START = "2027-03-01T00:00:00Z"  # a Monday; pinned so the reports compare across days


def _project(workdir: Path, *journeys: str, invariants: bool = True) -> Path:
    shutil.rmtree(workdir / "templates")
    shutil.copytree(ROOT / "templates", workdir / "templates")
    for name in (*journeys, "segments"):
        shutil.copy(ROOT / "journeys" / f"{name}.yaml", workdir / "journeys")
    if invariants:
        shutil.copy(ROOT / "journeys" / "invariants.yaml", workdir / "journeys")
    return workdir


def _scenario(workdir: Path, name: str, text: str) -> Path:
    folder = workdir / "journeys" / "scenarios"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


def _simulate(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["simulate", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


# Fixed behaviour: every shopper has email and an app, says yes to everything, lives in
# UTC, adds one 50.00 product to the cart in the first day, and never opens an email.
FIXED = f"""
contacts: 12
days: 6
entries_over: 1d
start: {START}
population:
  locales: {{en: 1}}
  timezones: {{UTC: 1}}
  channels: {{email: 1, push: 1, sms: 0}}
  consent: {{email: 1, push: 1}}
  traits: {{}}
catalogue:
  - {{product_id: p1, name: Lamp, price: 50}}
entries:
  - event: Product Added
deliveries: {{chance: 0}}
behaviour:
  email: {{delivered: 1, opened: {{chance: OPEN, after: 2h}}, bought: {{chance: BUY, after: 3h}}}}
  push: {{delivered: 1, opened: {{chance: 0}}}}
"""


def test_fixed_behaviour_gives_the_hand_computed_funnel(workdir: Path) -> None:
    """Nobody opens, nobody buys: all 12 get the email at 24 h, then a push at 72 h."""
    _project(workdir, "abandoned_cart", invariants=False)
    _scenario(workdir, "abandoned_cart", FIXED.replace("OPEN", "0").replace("BUY", "0"))
    code, out, err = _simulate("abandoned_cart", "--json")
    assert code == 0, err
    report = json.loads(out)
    [stats] = report["journeys"]
    assert (stats["entered"], stats["converted"], stats["active"]) == (12, 0, 0)
    steps = {s["step_id"]: s for s in stats["steps"]}
    assert steps["reminder"]["outcomes"] == {"sent": 12}
    assert steps["reminder_push"]["outcomes"] == {"sent": 12}
    messages = {m["step_id"]: m for m in stats["messages"]}
    assert messages["reminder"]["by_channel"] == {"email": 12}
    assert messages["reminder_push"]["by_channel"] == {"push": 12}
    # Pushes due at night (21:00-08:00 in UTC, the default quiet hours) waited for 08:00.
    hours = report["messages_by_local_hour"]["abandoned_cart"]
    assert sum(hours["push"]) == 12 and sum(hours["push"][21:] + hours["push"][:8]) == 0
    assert sum(hours["email"]) == 12


def test_everyone_opens_and_buys_converts_all_with_the_cart_revenue(workdir: Path) -> None:
    """Everyone opens at +2 h (no push) and buys at +3 h: 12 conversions of 50.00."""
    _project(workdir, "abandoned_cart", invariants=False)
    _scenario(workdir, "abandoned_cart", FIXED.replace("OPEN", "1").replace("BUY", "1"))
    code, out, err = _simulate("abandoned_cart", "--json")
    assert code == 0, err
    [stats] = json.loads(out)["journeys"]
    assert (stats["entered"], stats["converted"], stats["revenue"]) == (12, 12, 600.0)
    steps = {s["step_id"]: s for s in stats["steps"]}
    assert steps["reminder"]["outcomes"] == {"sent": 12}
    assert "reminder_push" not in {m["step_id"] for m in stats["messages"] if m["sent"]}
    assert stats["time_to_convert"] == {"1-2d": 12}  # 24 h + 3 h after entry
    assert stats["exits"] == {}  # opened at +2 h: the run completed before the order


def test_the_same_seed_gives_the_same_report_byte_for_byte(workdir: Path) -> None:
    _project(workdir, "abandoned_cart", "post_purchase")
    args = ("abandoned_cart", "post_purchase", "--contacts", "25", "--days", "8", "--json")
    _scenario(workdir, "abandoned_cart", f"start: {START}\n")
    first = _simulate(*args)
    second = _simulate(*args)
    assert first[0] == second[0]
    assert first[1] == second[1]
    other = _simulate(*args, "--seed", "2")
    assert other[1] != first[1]  # the seed does decide


BAD = """
id: late_sms
name: Late SMS promo
trigger: {event: Product Added}
steps:
  - send: {id: promo, channel: sms, template: cart_reminder}
"""

PROMO_AFTER_ORDER = """
id: promo_after_order
name: Promo right after an order
trigger: {event: Order Completed}
steps:
  - action: {type: award_points, per: 1, of: revenue}
  - action: {type: issue_coupon, campaign: again, prefix: AGAIN, discount: 10%, expires_in: 7d}
  - send: {id: again, channel: email, template: order_thank_you}
"""


def test_a_bad_journey_breaks_its_invariants_and_prints_the_timeline(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With quiet hours turned off, an SMS sent on entry lands at night for some; a
    journey that sends a code right after an order breaks the promo rule."""
    _project(workdir)
    (workdir / "journeys" / "late_sms.yaml").write_text(BAD)
    (workdir / "journeys" / "promo_after_order.yaml").write_text(PROMO_AFTER_ORDER)
    monkeypatch.setenv("JOURNEYS_QUIET_HOURS_SMS", "none")
    _scenario(
        workdir,
        "late_sms",
        f"""
contacts: 10
days: 2
entries_over: 1d
start: {START}
population: {{channels: {{email: 1, sms: 1, push: 0}}, consent: {{sms: 1, email: 1}},
              timezones: {{UTC: 1}}}}
entries:
  - event: Product Added
  - event: Order Completed
""",
    )
    code, out, err = _simulate("late_sms", "promo_after_order")
    assert code == 1
    assert "BROKEN no marketing SMS at night" in out
    assert "BROKEN no promo code right after a purchase" in out
    # The first offenders' stories, as `journeys explain` tells them.
    assert "invariant broken: no marketing SMS at night" in err
    assert "message promo (sms, cart_reminder): sent" in err
    assert "time (UTC)" in err


def test_explain_tells_a_simulated_shoppers_story(workdir: Path) -> None:
    _project(workdir, "abandoned_cart", invariants=False)
    _scenario(workdir, "abandoned_cart", FIXED.replace("OPEN", "0").replace("BUY", "0"))
    code, out, _ = _simulate("abandoned_cart")
    assert code == 0
    assert "journeys explain sim-001 --simulation abandoned_cart-seed1" in out
    result = CliRunner().invoke(
        main, ["explain", "sim-001", "--simulation", "abandoned_cart-seed1"]
    )
    assert result.exit_code == 0, result.output
    assert "entered abandoned_cart" in result.output
    assert "message reminder (email, cart_reminder): sent" in result.output
    stranger = CliRunner().invoke(
        main, ["explain", "sim-999", "--simulation", "abandoned_cart-seed1"]
    )
    assert stranger.exit_code == 1
    assert "its shoppers are sim-001 to sim-012" in stranger.stderr
    missing = CliRunner().invoke(main, ["explain", "sim-001", "--simulation", "nope"])
    assert missing.exit_code == 1
    assert "no simulation 'nope'" in missing.stderr and "abandoned_cart-seed1" in missing.stderr


def test_a_scenario_mistake_is_reported_with_its_position(workdir: Path) -> None:
    _project(workdir, "abandoned_cart", invariants=False)
    path = _scenario(
        workdir,
        "abandoned_cart",
        "contacts: 10\npopulation:\n  timezones: {Mars/Olympus: 1}\nbehaviour:\n  fax: {}\n",
    )
    code, out, err = _simulate("abandoned_cart")
    assert code == 1 and out == ""
    where = path.relative_to(workdir)  # as the journeys folder is named: journeys/...
    assert f"{where}:3:3: unknown timezone 'Mars/Olympus'" in err
    assert f"{where}:4:1: unknown channel 'fax'" in err
    assert "nothing was simulated" in err


NUDGE = """
id: nudge
name: Nudge with a code the events never carry
trigger: {event: Product Added}
steps:
  - send: {id: nudge, channel: email, template: nudge}
"""


def test_a_message_that_does_not_render_and_a_journey_nobody_enters_fail_it(
    workdir: Path,
) -> None:
    """The report says why sends failed; a template error, or a journey the scenario
    never exercised, fails the simulation instead of passing it unnoticed."""
    _project(workdir, "win_back", invariants=False)
    (workdir / "journeys" / "nudge.yaml").write_text(NUDGE)
    folder = workdir / "templates" / "nudge"
    folder.mkdir()
    (folder / "email.subject").write_text("Your code: {{ event.properties.discount_code }}")
    (folder / "email.text").write_text("Use it today.")
    # The sample has the code, so validate renders it; the shoppers' carts do not.
    (folder / "sample.yaml").write_text(
        "event:\n  name: Product Added\n  properties:\n    discount_code: SAVE5\n"
    )
    _scenario(
        workdir,
        "nudge",
        f"contacts: 6\ndays: 2\nstart: {START}\npopulation: {{channels: {{email: 1}}}}\n",
    )
    code, out, _ = _simulate("nudge", "win_back")
    assert code == 1
    assert "failed 6 (template 6)" in out
    assert "Problems (the simulation fails)" in out
    assert "nudge: 6 message(s) of step nudge did not render, e.g. for sim-001" in out
    assert "win_back: nobody entered it" in out


def test_simulate_checks_what_it_can_before_running(workdir: Path) -> None:
    _project(workdir, "abandoned_cart", invariants=False)
    code, _, err = _simulate("abandoned_cart", "--html", str(workdir / "nowhere" / "r.html"))
    assert code == 1 and "no folder" in err
    _scenario(workdir, "abandoned_cart", "steps:\n  remindr: {email: {}}\n")
    code, _, err = _simulate("abandoned_cart")
    assert code == 1
    assert "'remindr', which is no send step of abandoned_cart" in err
    assert "reminder, reminder_push" in err
    assert not (workdir / ".journeys" / "simulations" / "abandoned_cart-seed1").exists()


def test_validate_checks_the_scenario_files(workdir: Path) -> None:
    _project(workdir, "abandoned_cart", invariants=False)
    _scenario(workdir, "abandoned_cart", "days: 3\nbehaviour:\n  email: {opened: {after: 10}}\n")
    _scenario(workdir, "abandoned_kart", "days: 3\n")
    result = CliRunner().invoke(main, ["validate", "journeys"])
    assert result.exit_code == 1
    assert "journeys/scenarios/abandoned_cart.yaml:3:27: duration 10 has no unit" in result.output
    assert "journeys/scenarios/abandoned_kart.yaml:1:1: scenario for no journey" in result.output


def test_simulate_refuses_an_unknown_journey(workdir: Path) -> None:
    _project(workdir, "abandoned_cart", invariants=False)
    code, _, err = _simulate("abandoned_kart")
    assert code == 1
    assert "no journey 'abandoned_kart'" in err and "abandoned_cart" in err


def test_check_simulates_the_shipped_playbook_and_its_invariants_hold(workdir: Path) -> None:
    """What the project's CI (and a journeys repository's) runs on every change."""
    shutil.rmtree(workdir / "journeys")
    shutil.copytree(ROOT / "journeys", workdir / "journeys")
    shutil.rmtree(workdir / "templates")
    shutil.copytree(ROOT / "templates", workdir / "templates")
    result = CliRunner().invoke(main, ["check", "--contacts", "30", "--days", "10"])
    assert result.exit_code == 0, result.output + result.stderr
    assert "all invariants hold in 4 simulation(s) of 11 journey(s)" in result.stdout
    # The journeys whose triggers the default shoppers never meet run their own scenario.
    for line in ("big_spenders: 40 shoppers, 21 days", "win_back: 30 shoppers, 80 days"):
        assert line in result.stdout
    assert "nobody entered" not in result.output
