"""`journeys diff`: an edit in a marketer's words, and what deploying it does to the
contacts in flight of two versions (they finish on the version they entered)."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner, Result
from harness import Bench, tiny_templates, write_journey
from sqlalchemy import Engine
from temporalio.testing import WorkflowEnvironment
from test_replay import UnversionedEdit

from orchestrator.cli import main
from orchestrator.deployment.changes import compare
from orchestrator.deployment.impact import may_reach
from orchestrator.deployment.journey_diff import deployed, diff, from_file
from orchestrator.deployment.replay import replay_in_flight
from orchestrator.dsl.loader import load_journey
from orchestrator.dsl.models import Journey

OLD = """
id: cart
name: Cart
trigger: { event: Product Added }
entry: { re_entry: after 7d }
exit_on: [Order Completed]
goal: { event: Order Completed, within: 14d }
steps:
  - wait: 24h
  - send: { id: reminder, channel: email, template: cart_reminder }
  - wait_for: { message: reminder, engagement: opened, timeout: 2d }
    on_timeout:
      - send: { id: reminder_push, channel: [push, sms], template: cart_reminder }
  - branch:
      - if: "contact.traits.vip == true"
        then:
          - send: { id: vip, channel: email, template: vip_offer }
    else:
      - exit: not vip
  - split:
      - { variant: a, weight: 50 }
      - { variant: b, weight: 50 }
"""
NEW = """
id: cart
name: Cart
trigger: { event: Checkout Started }
entry: { re_entry: never }
exit_on: [Order Completed, Unsubscribed]
goal: { event: Order Completed, within: 7d }
steps:
  - wait: 12h
  - send: { id: reminder, channel: push, template: cart_nudge }
  - wait_for: { message: reminder, engagement: opened, timeout: 1d }
  - branch:
      - if: "contact.traits.vip == false"
        then:
          - send: { id: vip, channel: email, template: vip_offer }
    else:
      - exit: not a vip
  - split:
      - { variant: a, weight: 70 }
      - { variant: b, weight: 30 }
  - send: { id: thanks, channel: email, template: welcome }
"""


def loaded(tmp_path: Path, name: str, text: str) -> Journey:
    return load_journey(write_journey(tmp_path, name, text)).journey


def test_every_kind_of_change_in_words(tmp_path: Path) -> None:
    changes = compare(loaded(tmp_path / "a", "cart", OLD), loaded(tmp_path / "b", "cart", NEW))
    assert [c.text for c in changes] == [
        "trigger: event Product Added → event Checkout Started (new entries only)",
        "re-entry: after 1w → never (new entries only)",
        "goal: Order Completed within 2w → Order Completed within 1w "
        "(runs in flight keep their version's goal)",
        "exit on: Order Completed → Order Completed, Unsubscribed "
        "(runs in flight keep their version's exit events)",
        "wait 1d → 12h before `reminder`",
        "step `reminder` (send cart_reminder by email): template cart_reminder → cart_nudge",
        "step `reminder` (send cart_reminder by email): channel email → push",
        "the wait_for after `reminder` (wait up to 2d for message reminder to be opened): "
        "timeout 2d → 1d",
        "step `reminder_push` (send cart_reminder by push or sms) removed",
        "the branch after `reminder` (branch: 1 case, else): "
        "cases if contact.traits.vip == true → if contact.traits.vip == false",
        "the exit in the `else` of the branch after `reminder` (exit): reason not vip → not a vip",
        "the split after `reminder` (split: a 50, b 50): variants a 50, b 50 → a 70, b 30",
        "step `thanks` (send welcome by email) added",
    ]
    assert [c.kind for c in changes if c.step == "reminder_push"] == ["removed"]
    assert compare(loaded(tmp_path / "c", "cart", OLD), loaded(tmp_path / "d", "cart", OLD)) == []


def test_inserting_a_step_is_one_change_not_a_shift(tmp_path: Path) -> None:
    """Unnamed steps are known by position; an insertion must not read as every later
    unnamed step changed."""
    before = "id: j\nname: J\ntrigger: { event: A }\nsteps:\n  - wait: 1h\n  - wait: 2h\n"
    after = before.replace(
        "steps:\n", "steps:\n  - send: { id: hi, channel: email, template: x }\n"
    )
    changes = compare(loaded(tmp_path / "a", "j", before), loaded(tmp_path / "b", "j", after))
    assert [c.text for c in changes] == ["step `hi` (send x by email) added"]


def test_who_may_still_reach_a_step() -> None:
    assert may_reach(("steps", 0), ("steps", 2))  # earlier in the same list
    assert may_reach(("steps", 2), ("steps", 2))  # there now
    assert may_reach(("steps", 1), ("steps", 1, "on_timeout", 0))  # waiting in its parent
    assert may_reach(("steps", 1, "then", 0), ("steps", 3))  # the journey goes on after
    assert not may_reach(("steps", 3), ("steps", 2))  # past it
    assert not may_reach(("steps", 1, "then", 0), ("steps", 1, "on_timeout", 0))  # other outcome
    assert not may_reach(("steps", 1, "branch", 1, "then", 0), ("steps", 1, "branch", 0, "then", 1))
    assert may_reach((), ("steps", 0))  # entered, no step yet


# --- two versions in flight ---------------------------------------------------------

V1 = """
id: promo
name: Promo
trigger: { event: Signed Up }
steps:
  - wait: 1d
  - send: { id: offer, channel: email, template: hello }
  - wait: 2d
  - send: { id: nudge, channel: email, template: late }
"""
V2 = V1.replace("wait: 1d", "wait: 2d")
V3 = (
    V2.replace("  - wait: 2d\n  - send: { id: offer", "  - wait: 12h\n  - send: { id: offer")
    .replace("template: hello }", "template: late }")
    .replace("  - send: { id: nudge, channel: email, template: late }\n", "")
    + "  - send: { id: bye, channel: email, template: hello }\n"
)


IMPACT = [
    "  - wait 2d → 12h before `offer`",
    "      1 contact waiting there now finishes on version 2 (2d); new entries get 12h",
    "  - step `offer` (send hello by email): template hello → late",
    "      1 contact on version 2 still reaches it as their version has it; "
    "new entries get the change",
    "  - step `nudge` (send late by email) removed",
    "      2 contacts on version 1, 1 contact on version 2 still reach it",
    "  - step `bye` (send hello by email) added",
    "      runs in flight never reach it (2 contacts on version 1, 1 contact on version 2); "
    "new entries do",
]


async def two_versions_in_flight(bench: Bench, env: WorkflowEnvironment) -> None:
    """v1: two contacts past `offer`, waiting 2d before `nudge`; v2: one waiting 2d
    before `offer`; v3 edited on disk, not deployed."""
    write_journey(bench.journeys_dir, "promo", V1)
    assert [v.version for v in bench.deploy()] == [1]
    for user in ("ann", "bob"):
        await bench.identify(user, email=f"{user}@example.com")
        await bench.track(user, "Signed Up")
    await env.sleep(timedelta(hours=1))
    write_journey(bench.journeys_dir, "promo", V2)
    assert [v.version for v in bench.deploy()] == [2]
    await bench.identify("cy", email="cy@example.com")
    await bench.track("cy", "Signed Up")
    await env.sleep(timedelta(hours=30))
    write_journey(bench.journeys_dir, "promo", V3)


def at_steps(bench: Bench) -> dict[str, tuple[int, str | None]]:
    return {r.contact_id: (r.version, r.current_step) for r in bench.runs() if r.status == "active"}


async def test_impact_of_an_edit_with_two_versions_in_flight(
    ts_env: WorkflowEnvironment, engine: Engine, tmp_path: Path
) -> None:
    templates = tiny_templates(tmp_path / "templates", ("hello", "late"))
    bench = Bench(ts_env, engine, tmp_path / "journeys", templates)
    async with bench.worker():
        await two_versions_in_flight(bench, ts_env)
        assert at_steps(bench) == {
            "ann": (1, "steps.2"),
            "bob": (1, "steps.2"),
            "cy": (2, "steps.0"),
        }
        path = bench.journeys_dir / "promo.yaml"
        result = diff(engine, deployed(engine, "promo"), from_file(path), None)
        assert result.lines() == [
            f"promo: version 2 (active) → {path}",
            "  in flight: 2 on version 1, 1 on version 2",
            *IMPACT,
            "  deploying makes it version 3: runs in flight finish on the version they "
            "entered, only new entries start on the new one",
        ]
        counts = {
            i.change.step: [(s.version, s.waiting, s.reaching) for s in i.versions]
            for i in result.impacts
        }
        assert counts == {
            "steps.0": [(2, 1, 1)],  # v1's runs are past their first wait
            "offer": [(2, 0, 1)],
            "nudge": [(1, 0, 2), (2, 0, 1)],
            "bye": [],
        }
        report = await replay_in_flight(ts_env.client, engine, ["promo"])
        assert (report.in_flight, report.checked, report.broke) == (3, 3, {})
        assert report.sentence() == (
            "replay: 3 histories of runs in flight replayed against this code, 0 broke"
        )
        # The check has teeth: a workflow change without `workflow.patched` breaks them.
        broken = await replay_in_flight(
            ts_env.client, engine, ["promo"], workflows=[UnversionedEdit]
        )
        # The edit stops recording steps: ann and bob recorded one after their first wait;
        # cy's entry recorded its first step, and it has recorded none since.
        assert broken.checked == 3 and set(broken.broke) == {
            "journey:promo:ann",
            "journey:promo:bob",
        }
        assert set(broken.broke.values()) == {
            "NondeterminismError: [TMPRL1100] Nondeterminism error: "
            "Missing associated machine for LocalActivity(2)"
        }
        assert broken.sentence().endswith("2 broke")
        for handle in ("ann", "bob", "cy"):
            await bench.handle("promo", handle).terminate(reason="test over")


def journeys(engine: Engine, temporal: str, *args: str) -> Result:
    """The CLI as a user runs it, against this store and Temporal."""
    env = {
        "DATABASE_URL": engine.url.render_as_string(hide_password=False),
        "TEMPORAL_ADDRESS": temporal,
        "TEMPORAL_NAMESPACE": "default",
    }
    return CliRunner().invoke(main, ["diff", *args], env=env)


async def test_the_command_end_to_end(
    ts_env: WorkflowEnvironment, sqlite_engine: Engine, tmp_path: Path
) -> None:
    templates = tiny_templates(tmp_path / "templates", ("hello", "late"))
    bench = Bench(ts_env, sqlite_engine, tmp_path / "journeys", templates)
    folder = ["--journeys", str(bench.journeys_dir), "--templates", str(templates)]
    temporal = ts_env.client.service_client.config.target_host
    async with bench.worker():
        await two_versions_in_flight(bench, ts_env)
        path = bench.journeys_dir / "promo.yaml"
        # No argument: every file on disk against its deployed version.
        result = await asyncio.to_thread(journeys, sqlite_engine, temporal, *folder)
        assert result.exit_code == 0, result.output
        assert result.stdout.splitlines() == [
            f"promo: version 2 (active) → {path}",
            "  in flight: 2 on version 1, 1 on version 2",
            *IMPACT,
            "  deploying makes it version 3: runs in flight finish on the version they "
            "entered, only new entries start on the new one",
            "replay: 3 histories of runs in flight replayed against this code, 0 broke",
        ]

        # Temporal unreachable: everything else is shown, the missing proof is said.
        result = await asyncio.to_thread(journeys, sqlite_engine, "127.0.0.1:1", "promo", *folder)
        assert result.exit_code == 4
        assert result.stdout.splitlines()[:-1] == [
            f"promo: version 2 (active) → {path}",
            "  in flight: 2 on version 1, 1 on version 2",
            *IMPACT,
            "  deploying makes it version 3: runs in flight finish on the version they "
            "entered, only new entries start on the new one",
        ]
        assert result.stdout.splitlines()[-1].startswith("replay not done: cannot reach Temporal")
        assert "warning: Temporal could not be reached" in result.stderr

        # Two deployed versions, as JSON; an edited message file is named, exactly (its
        # content against the one version 1 pinned), and runs in flight keep theirs.
        (templates / "late" / "email.text").write_text("reworded")
        result = await asyncio.to_thread(
            journeys, sqlite_engine, temporal, "promo@1", "promo", "--json", *folder
        )
        assert result.exit_code == 0, result.output
        body = json.loads(result.stdout)
        [promo] = body["journeys"]
        assert [c["text"] for c in promo["changes"]] == [
            "wait 1d → 12h before `offer`",
            "step `offer` (send hello by email): template hello → late",
            "step `nudge` (send late by email) removed",
            "step `bye` (send hello by email) added",
            "template file late/email.text edited (message late)",
        ]
        assert promo["changes"][-1]["impact"] == (
            "runs in flight keep the files of the version they entered on; new entries get the edit"
        )
        assert body["replay"]["checked"] == 3 and body["replay"]["broke"] == {}

        # Two deployed versions: runs already on the newer one have the change.
        result = await asyncio.to_thread(
            journeys, sqlite_engine, temporal, "promo@1", "promo@2", "--replay", "0", *folder
        )
        assert result.exit_code == 0, result.output
        assert result.stdout.splitlines() == [
            "promo: version 1 (inactive) → version 2 (active)",
            "  in flight: 2 on version 1, 1 on version 2",
            "  (1 contact on version 2 has these changes already: counted below are the others)",
            "  - wait 1d → 2d before `offer`",
            "      no contact in flight is at it or before it; new entries get 2d",
            "replay: skipped (--replay 0)",
        ]

        # Nothing to compare: one line saying why.
        result = await asyncio.to_thread(journeys, sqlite_engine, temporal, "promo@7", *folder)
        assert result.exit_code == 1
        assert "journey 'promo' has no version 7; it has 1, 2" in result.stderr
        for user in ("ann", "bob", "cy"):
            await bench.handle("promo", user).terminate(reason="test over")


def test_a_journey_never_deployed_and_a_broken_file(workdir: Path) -> None:
    """Nothing in flight: Temporal is not asked, so its absence is no failure."""
    from orchestrator.store.db import make_engine, migrate, sqlite_url

    engine = make_engine(sqlite_url(workdir))
    migrate(engine)
    path = write_journey(workdir / "journeys", "fresh", V1.replace("id: promo", "id: fresh"))
    result = journeys(engine, "127.0.0.1:1")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"fresh: never deployed → {Path('journeys') / 'fresh.yaml'}",
        "  in flight: none",
        "  a new journey: deploying makes it version 1; no run in flight",
        "replay: no run in flight, nothing to break",
    ]
    path.write_text(V1.replace("wait: 1d", "wait: 1x"))
    result = journeys(engine, "127.0.0.1:1", str(path))
    assert result.exit_code == 1
    assert "invalid duration '1x'" in result.stderr
    assert "1 problem(s) found: fix them to compare" in result.stderr
    engine.dispose()


def test_an_edited_template_reaches_only_runs_of_unpinned_versions() -> None:
    """Versions deployed before templates were pinned read the folder at each send; the
    pinned ones keep their files."""
    from orchestrator.deployment.changes import Change
    from orchestrator.deployment.impact import InFlight, impact

    spec = Journey.model_validate(
        {
            "id": "promo",
            "name": "Promo",
            "trigger": {"event": "Signed Up"},
            "steps": [
                {"wait": "1d"},
                {"send": {"id": "offer", "channel": "email", "template": "late"}},
            ],
        }
    )
    change = Change("template_files", "template file late/email.text edited", template="late")
    legacy = InFlight("promo", {1: {None: 2}, 2: {None: 1}}, {1: spec, 2: spec}, pinned={2})
    assert impact(change, None, legacy).sentence == (
        "2 contacts on version 1 still send it: versions deployed before templates were "
        "pinned get the files on disk at their next send"
    )
    pinned = InFlight("promo", {2: {None: 1}}, {2: spec}, pinned={2})
    assert impact(change, None, pinned).sentence == (
        "runs in flight keep the files of the version they entered on; new entries get the edit"
    )
    shared = Change("template_files", "template file _partials/footer.html edited")
    assert str(impact(shared, None, legacy).sentence).startswith(
        "2 contacts on version 1 still send"
    )
