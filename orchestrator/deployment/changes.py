"""What an edit changes in a journey, in a marketer's words: steps added, removed,
re-timed, messages and branches changed, trigger, entry, goal and exits.

Steps are matched by their id. Unnamed steps carry their position as id
(`steps.2`), which moves when a step is inserted before them, so each step list is
aligned first (named steps by id, unnamed ones by kind, in order): inserting a step
reads as one step added, not as every later step changed.

Templates are not part of a journey's version: a send names its message folder and
the worker renders the files on disk at send time. So a changed *name* is a change
of the version, while changed *files* reach every run in flight at its next send;
`template_edits` finds those from the files' modification times.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any, Literal

from ..analytics.stats import describe
from ..dsl import models as m
from ..dsl.durations import format_duration
from ..dsl.loader import iter_steps

ChangeKind = Literal["added", "removed", "retimed", "changed", "journey", "template_files"]
_LISTS = ("then", "on_timeout", "else_", "on_failure")


@dataclass(frozen=True)
class Change:
    """One difference. `step`: the step's id in the old journey (removed, re-timed,
    changed), in the new one (added), or None for the journey itself; `template`: the
    message whose files changed (`template_files`)."""

    kind: ChangeKind
    text: str
    step: str | None = None
    template: str | None = None
    old: str | None = None  # the old setting, in words ("24h"), where one is replaced
    new: str | None = None


def is_named(step_id: str | None) -> bool:
    """A marketer's id, not a position the loader gave an unnamed step."""
    return step_id is not None and not step_id.startswith("steps.")


def step_name(step: Any, siblings: Sequence[Any], where: str = "") -> str:
    """How to point at a step: "step `reminder`", else by the named step next to it
    ("the wait before `reminder`"), else by where it is ("the exit in the `else` of
    the branch after `vip`"), else its position."""
    if is_named(step.id):
        return f"step `{step.id}`"
    kind = m.step_kind(step) or "step"
    index = next(i for i, s in enumerate(siblings) if s is step)
    after = next((s for s in siblings[index + 1 :] if is_named(s.id)), None)
    if after is not None:
        return f"the {kind} before `{after.id}`"
    before = next((s for s in reversed(siblings[:index]) if is_named(s.id)), None)
    if before is not None:
        return f"the {kind} after `{before.id}`"
    if where and sum(m.step_kind(s) == kind for s in siblings) == 1:
        return f"the {kind} in {where}"
    return f"the {kind} at {step.id}"


def _parent(name: str) -> str:
    return name.removeprefix("step ")


def compare(old: m.Journey, new: m.Journey) -> list[Change]:
    """Every change from `old` to `new`: the journey's settings first, then the steps
    in the order they run."""
    return _journey_changes(old, new) + _list_changes(old.steps, new.steps)


# --- the journey's settings -----------------------------------------------------


def _trigger(trigger: m.Trigger) -> str:
    if trigger.identify:
        what = "every identify call"
    elif trigger.schedule is not None:
        what = f"campaign to {trigger.campaign_text()}"
        if trigger.throttle:
            rates = ", ".join(f"{c} {r}" for c, r in sorted(trigger.throttle.items()))
            what += f", throttled to {rates}"
    elif trigger.date is not None:
        what = f"date {trigger.date_text()}"
    elif trigger.segment is not None:
        what = f"{trigger.when} segment {trigger.segment}"
    else:
        what = f"event {trigger.event}"
    return what + (f" where {trigger.where}" if trigger.where else "")


def _re_entry(entry: m.Entry) -> str:
    if entry.re_entry.mode == "after" and entry.re_entry.after is not None:
        return f"after {format_duration(entry.re_entry.after)}"
    return entry.re_entry.mode


def _goal(goal: m.Goal | None) -> str:
    if goal is None:
        return "none"
    since = " of the last message" if goal.after == "last_message" else ""
    where = f" where {goal.where}" if goal.where else ""
    return f"{goal.event} within {format_duration(goal.within)}{since}{where}"


def _journey_changes(old: m.Journey, new: m.Journey) -> list[Change]:
    found: list[Change] = []

    def setting(label: str, before: str, after: str, why: str) -> None:
        if before != after:
            found.append(
                Change("journey", f"{label}: {before} → {after} ({why})", None, None, before, after)
            )

    only_new = "new entries only"
    setting("name", old.name, new.name, "a label")
    if old.description != new.description:
        found.append(Change("journey", "description reworded (a label)"))
    setting("trigger", _trigger(old.trigger), _trigger(new.trigger), only_new)
    setting("re-entry", _re_entry(old.entry), _re_entry(new.entry), only_new)
    setting("entry condition", old.entry.if_ or "none", new.entry.if_ or "none", only_new)
    setting(
        "one run per",
        old.entry.one_run_per or "contact",
        new.entry.one_run_per or "contact",
        only_new,
    )
    keeps = "runs in flight keep their version's"
    setting("goal", _goal(old.goal), _goal(new.goal), f"{keeps} goal")
    exits = ", ".join(old.exit_on) or "none", ", ".join(new.exit_on) or "none"
    setting("exit on", *exits, f"{keeps} exit events")
    for label, attr in (
        ("send policy", "policy"),
        ("sender", "sender"),
        ("link tracking", "tracking"),
    ):
        before, after = getattr(old, attr), getattr(new, attr)
        if before != after:
            fields = _changed_fields(before, after)
            found.append(
                Change("journey", f"{label} changed: {', '.join(fields)} ({keeps} {label})")
            )
    return found


def _changed_fields(before: m.Model, after: m.Model) -> list[str]:
    a, b = before.model_dump(mode="json"), after.model_dump(mode="json")
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


# --- steps ----------------------------------------------------------------------


def _key(step: Any) -> tuple[str, str]:
    return ("id", step.id) if is_named(step.id) else ("kind", m.step_kind(step) or "")


def _list_changes(old: Sequence[Any], new: Sequence[Any], where: str = "") -> list[Change]:
    """Align two step lists, then compare the steps found in both."""
    found: list[Change] = []
    matcher = SequenceMatcher(a=[_key(s) for s in old], b=[_key(s) for s in new], autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            for a, b in zip(old[i1:i2], new[j1:j2], strict=True):
                found += _step_changes(a, old, b, where)
            continue
        for step in old[i1:i2]:
            found.append(
                Change(
                    "removed", f"{step_name(step, old, where)} ({describe(step)}) removed", step.id
                )
            )
        for step in new[j1:j2]:
            found.append(
                Change("added", f"{step_name(step, new, where)} ({describe(step)}) added", step.id)
            )
    return found


def _step_changes(a: Any, old_list: Sequence[Any], b: Any, where: str) -> list[Change]:
    name = step_name(a, old_list, where)
    found: list[Change] = []

    def changed(what: str, before: str, after: str) -> None:
        found.append(
            Change(
                "changed",
                f"{name} ({describe(a)}): {what} {before} → {after}",
                a.id,
                None,
                before,
                after,
            )
        )

    match a, b:
        case m.WaitStep(), m.WaitStep() if a.wait != b.wait:
            before, after = format_duration(a.wait), format_duration(b.wait)
            at = name.removeprefix("the wait ") if name.startswith("the wait ") else f"({name})"
            found.append(
                Change("retimed", f"wait {before} → {after} {at}", a.id, None, before, after)
            )
        case m.WaitUntilStep(), m.WaitUntilStep() if a.wait_until != b.wait_until:
            found.append(
                Change(
                    "retimed",
                    f"{describe(a)} → {describe(b)} ({name})",
                    a.id,
                    None,
                    describe(a),
                    describe(b),
                )
            )
        case m.WaitForStep(), m.WaitForStep():
            x, y = a.wait_for, b.wait_for
            if x.timeout != y.timeout:
                before, after = format_duration(x.timeout), format_duration(y.timeout)
                found.append(
                    Change(
                        "retimed",
                        f"{name} ({describe(a)}): timeout {before} → {after}",
                        a.id,
                        None,
                        before,
                        after,
                    )
                )
            if (x.events, x.message, x.engagement) != (y.events, y.message, y.engagement):
                changed("waits for", _waits_for(x), _waits_for(y))
            if x.where != y.where:
                changed("condition", x.where or "none", y.where or "none")
            if x.save_as != y.save_as:
                changed("saves the event as", x.save_as or "nothing", y.save_as or "nothing")
        case m.SendStep(), m.SendStep():
            x, y = a.send, b.send
            if x.template != y.template:
                changed("template", x.template, y.template)
            if x.channel != y.channel:
                changed("channel", _channel(x.channel), _channel(y.channel))
            if x.category != y.category:
                changed("category", x.category, y.category)
        case m.BranchStep(), m.BranchStep():
            before = [case.if_ for case in a.branch]
            after = [case.if_ for case in b.branch]
            if before != after:
                changed(
                    "cases",
                    "; ".join(f"if {c}" for c in before),
                    "; ".join(f"if {c}" for c in after),
                )
        case m.SplitStep(), m.SplitStep():
            before = ", ".join(f"{v.variant} {v.weight}" for v in a.split)
            after = ", ".join(f"{v.variant} {v.weight}" for v in b.split)
            if before != after:
                changed("variants", before, after)
        case m.ActionStep(), m.ActionStep() if a.action != b.action:
            if a.action.type != b.action.type:
                changed("action", a.action.type, b.action.type)
            else:
                fields = ", ".join(_changed_fields(a.action, b.action))
                found.append(
                    Change("changed", f"{name} ({describe(a)}): settings changed ({fields})", a.id)
                )
        case m.ExitStep(), m.ExitStep() if a.exit != b.exit:
            changed("reason", a.exit.reason or "none", b.exit.reason or "none")
    return found + _nested_changes(a, b, _parent(name))


def _waits_for(spec: m.WaitForSpec) -> str:
    if spec.message is not None:
        return f"message {spec.message} {spec.engagement}"
    return " or ".join(spec.events)


def _channel(channel: str | list[str]) -> str:
    return " or ".join(channel) if isinstance(channel, list) else channel


def _nested_changes(a: Any, b: Any, parent: str) -> list[Change]:
    """The step lists inside two matched steps: outcomes by name, cases by condition
    (else by position), variants by name."""
    found: list[Change] = []
    for attr in _LISTS:
        key = attr.rstrip("_")
        found += _list_changes(
            getattr(a, attr, None) or [], getattr(b, attr, None) or [], f"the `{key}` of {parent}"
        )
    if isinstance(a, m.BranchStep) and isinstance(b, m.BranchStep):
        by_condition = {case.if_: case for case in b.branch}
        for i, case in enumerate(a.branch):
            other = by_condition.get(case.if_) or (b.branch[i] if i < len(b.branch) else None)
            found += _list_changes(
                case.then, other.then if other else [], f"case {i + 1} of {parent}"
            )
    if isinstance(a, m.SplitStep) and isinstance(b, m.SplitStep):
        variants = {v.variant: v for v in b.split}
        for v in a.split:
            other = variants.get(v.variant)
            found += _list_changes(
                v.then, other.then if other else [], f"variant {v.variant} of {parent}"
            )
        known = {v.variant for v in a.split}
        for v in b.split:
            if v.variant not in known:
                found += _list_changes([], v.then, f"variant {v.variant} of {parent}")
    return found


# --- template files ---------------------------------------------------------------


def sends(journey: m.Journey) -> dict[str, list[str]]:
    """The steps sending each template: {template: [step id, ...]}."""
    found: dict[str, list[str]] = {}
    for _, step in iter_steps(journey.steps, ("steps",)):
        if isinstance(step, m.SendStep):
            found.setdefault(step.send.template, []).append(str(step.id))
    return found


def template_edits(templates_dir: Path, names: Iterable[str], since: datetime) -> list[Change]:
    """Messages whose files on disk were modified after `since` (a version's deploy).

    A modification time is what the file system says: a fresh checkout marks every
    file new, so this names what *may* have changed, never hides what did.
    """
    found = []
    for name in sorted(set(names)):
        folder = templates_dir / name
        files = [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []
        newest = max((p.stat().st_mtime for p in files), default=None)
        if newest is not None and newest > since.timestamp():
            found.append(
                Change(
                    "template_files",
                    f"message {name}: files modified since the old version was deployed",
                    template=name,
                )
            )
    return found
