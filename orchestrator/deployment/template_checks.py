"""Render every version of a message before launch, so a marketer sees problems, not customers.

For each channel a journey may send a message on, every locale version of
that message is rendered with sample data (`rendering/samples.py`). Missing
folders and parts are reported at the journey's send step; undefined
variables, syntax errors, CR/LF in subjects, SMS over the segment limit and
push payloads over 4 KB at the template's file:line; a partial a translation
falls back to the default language for, as a warning (`partial_translations.py`).

An undefined variable is named as written (`event.properties.colour`) at the line
that wrote it, and the advice says what makes *real* sends work: sample data only
stands in for what real sends have. So the sample never supplies keys a real send
lacks (a `contact` or `event` key no contact or event has, a `journey` key no step
before the send keeps): those are removed before rendering, and a template that
reads one is an error, not a pass. Nor does a real trigger carry every property the
sample gives it: each message a journey sends is rendered again without the
trigger's optional properties, and one it shows unguarded is a warning
(`_check_optional_properties`). A file of a message folder that is no part
(`email.preheder`) is an error: it would silently never be sent.

This sits above both the journey language and rendering: neither needs the other.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..dsl.context_check import journey_keys, unknown_key
from ..dsl.loader import LoadedJourney, iter_steps
from ..dsl.models import IDENTIFY, SendStep
from ..dsl.problems import Problem
from ..dsl.roots import CART_KEYS, TEMPLATE_JOURNEY_KEYS, free_keys, record_keys
from ..rendering.catalog import (
    BRAND_FILE,
    CHANNELS,
    PART_FILES,
    PARTS,
    SAMPLE_FILE,
    Message,
    Variant,
    part_meant,
)
from ..rendering.expressions import MissingValue
from ..rendering.renderer import Renderer, RenderError
from ..rendering.samples import SampleError, load_sample, sample_context
from ..services.spelling import closest_name
from ..store.context import products_of
from .event_properties import TriggerProperties
from .partial_translations import check_partial_translations, used_templates

# What every template sees besides the roots conditions have.
TEMPLATE_ROOTS = ("contact", "event", "cart", "journey", "recommendations", "message", "brand")


@dataclass(frozen=True)
class Sender:
    """Who sends a message: the journey, where, its trigger, what `journey` holds then."""

    journey: str  # the journey file
    line: int  # of its send step
    trigger: str  # the trigger's event name
    journey_keys: frozenset[str]  # under `journey` at every send of the message
    # What every trigger event carries (None: not known, so not checked).
    properties: TriggerProperties | None = None


@dataclass(frozen=True)
class _Facts:
    """What an undefined variable is explained with."""

    message: Message
    sender: Sender | None
    sample: dict[str, Any]  # the message's own sample.yaml


def check_message(
    renderer: Renderer,
    name: str,
    channels: Iterable[str],
    trigger_event: str | None = None,
    journey_id: str = "sample",
    sender: Sender | None = None,
) -> list[Problem]:
    """Problems of message `name` on `channels`, in every locale it has a version in.

    With `sender` (the journey that sends it), `journey` holds only what real sends
    have there; without (a message no journey sends yet), whatever the sample gives.
    """
    message = renderer.message(name)
    if not message.exists():
        return []  # the journey loader reports a missing folder at the send step
    try:
        base = _as_real(sample_context(message, trigger_event, journey_id), sender)
        facts = _Facts(message, sender, load_sample(message))
    except SampleError as exc:
        return [Problem(exc.file, exc.line, 1, exc.reason)]
    problems = [
        Problem.whole(
            folder,
            f"folder {folder.name!r} is not a locale tag "
            "(expected a language like ru, sr-Latn, ar or pt-BR); it is ignored",
        )
        for folder in message.stray_folders()
    ]
    problems += [_stray_file(file) for file in message.stray_files()]
    reported: set[tuple[str, str]] = set()
    for channel in (c for c in CHANNELS if c in set(channels)):
        for variant in message.variants():
            found = _check_variant(renderer, facts, variant, channel, base)
            if not found and variant.complete(channel):
                found = _check_optional_properties(renderer, facts, variant, channel, base)
                found += check_partial_translations(
                    variant, channel, renderer.default_locale, reported
                )
            problems += found
    return problems


def _stray_file(file: Path) -> Problem:
    """A file of a message folder that is no part: it would never be sent."""
    meant = part_meant(file.name)
    parts = f"{', '.join(PART_FILES)} and {SAMPLE_FILE}"
    if file.name == SAMPLE_FILE:  # in a translation folder
        return Problem.whole(
            file,
            f"a translation has no {SAMPLE_FILE} of its own, so it is never used: the "
            f"message's {file.parent.parent / SAMPLE_FILE} serves every version",
        )
    if meant:
        advice = f"did you mean {' or '.join(meant)}? (a message folder holds {parts})"
    else:
        advice = f"rename it to one of {parts}, or move it out of the message folder"
    return Problem.whole(file, f"not a part of a message, so it is never used: {advice}")


def _as_real(context: dict[str, Any], sender: Sender | None) -> dict[str, Any]:
    """The sample context without the keys no real send has: sample data may stand in
    for a value, never invent a key (`contact.vip`, or a coupon no step issued)."""
    out = dict(context)
    for root in ("contact", "event"):
        out[root] = {k: v for k, v in context[root].items() if k in record_keys(root)}
    out["cart"] = {k: v for k, v in context["cart"].items() if k in CART_KEYS}
    if sender is not None:
        out["journey"] = {k: v for k, v in context["journey"].items() if k in sender.journey_keys}
    return out


def _check_variant(
    renderer: Renderer, facts: _Facts, variant: Variant, channel: str, base: dict
) -> list[Problem]:
    message = facts.message
    if not variant.complete(channel):
        started = any(variant.has(channel, part) for part in PARTS[channel])
        if variant.locale is None or not started:
            return []  # the default version's gaps are the journey loader's to report
        missing = " and ".join(variant.missing(channel))
        return [
            Problem.whole(
                variant.folder,
                f"the {variant.locale} version of {message.name!r} has no {missing}: "
                f"{variant.locale} contacts would get the default {channel} instead",
            )
        ]
    tag = variant.locale or renderer.default_locale
    context = _variant_context(base, channel, tag)
    try:
        renderer.render_variant(variant, channel, context, tag)
        return []
    except RenderError as exc:
        errors = [exc]
    # Each part alone as well: a mistake in the text must not wait for the subject's fix.
    for part in (p for p in PARTS[channel] if variant.has(channel, p)):
        try:
            renderer.render_variant(variant, channel, context, tag, only=part)
        except RenderError as exc:
            errors.append(exc)
    problems: list[Problem] = []
    for error in errors:
        reason = error.reason
        if error.missing is not None and error.missing.expression is not None:
            reason = explain_missing(error.missing, facts, renderer, context)
        problem = Problem(error.file or str(variant.folder), error.line or 1, 1, reason)
        # Once per place: a part alone may word a whole-message check (size) otherwise.
        if (problem.file, problem.line) not in {(p.file, p.line) for p in problems}:
            problems.append(problem)
    return problems


def _variant_context(base: dict[str, Any], channel: str, tag: str) -> dict[str, Any]:
    return {
        **base,
        "contact": {**base["contact"], "locale": tag},
        "message": {
            "id": "00000000-0000-0000-0000-000000000000",
            "channel": channel,
            "unsubscribe_url": "https://example.com/u/sample",
            "preferences_url": "https://example.com/preferences/sample",
            "view_url": "https://example.com/m/sample",
            "survey_url": "https://example.com/s/sample",
        },
    }


def _check_optional_properties(
    renderer: Renderer, facts: _Facts, variant: Variant, channel: str, base: dict
) -> list[Problem]:
    """A warning for each optional trigger property the version shows without a guard.

    The sample gives the trigger every property (Segment's e-commerce shapes, and
    `sample.yaml`), but real events carry only what the storefront sends. So each part
    is rendered again without each optional property it names (its text or a partial's
    must name it to read it), the others present, and once more with none of them,
    adding back each whose absence fails it: every property it shows unguarded is
    reported where it is first written.
    """
    known = facts.sender.properties if facts.sender is not None else None
    full = base["event"].get("properties") or {}
    optional = [k for k in full if k not in known.required] if known is not None else []
    if known is None or not optional:
        return []
    tag = variant.locale or renderer.default_locale

    def render(part: str, properties: dict[str, Any]) -> RenderError | None:
        event = {**base["event"], "properties": properties, "products": products_of(properties)}
        context = _variant_context({**base, "event": event}, channel, tag)
        try:
            renderer.render_variant(variant, channel, context, tag, only=part)
        except RenderError as exc:
            return exc
        return None

    def warning(error: RenderError, prop: str | None) -> Problem:
        text = _optional_text(error, prop, known, optional)
        return Problem(error.file or str(variant.folder), error.line or 1, 1, text, "warning")

    problems: list[Problem] = []
    for part in (p for p in PARTS[channel] if variant.has(channel, p)):
        files = [variant.folder / f"{channel}.{part}"]
        files += used_templates(variant, channel, part, renderer.default_locale)
        source = "\n".join(f.read_text(encoding="utf-8", errors="replace") for f in files)
        for prop in (k for k in optional if k in source):  # one absent, the others there
            error = render(part, {k: v for k, v in full.items() if k != prop})
            if error is not None and _absent_property(error.missing, {prop}) == prop:
                problems.append(warning(error, prop))
        kept = {k: v for k, v in full.items() if k in known.required}
        for _ in range(len(full) + 1):  # all of them absent
            error = render(part, kept)
            if error is None:
                break
            prop = _absent_property(error.missing, set(full) - set(kept))
            problems.append(warning(error, prop))
            if prop is None:
                break
            kept[prop] = full[prop]
    return list(dict.fromkeys(problems))  # each once (a partial two parts use, both passes)


def _absent_property(missing: MissingValue | None, absent: set[str]) -> str | None:
    """Which of the `absent` trigger properties a failed render was missing, if it says."""
    chain = missing.chain if missing is not None else ()
    if chain[:2] == ("event", "properties") and len(chain) > 2 and chain[2] in absent:
        return str(chain[2])
    if chain[:2] == ("event", "products") and "products" in absent:
        return "products"
    if chain and isinstance(chain[-1], str) and chain[-1] in absent:
        return chain[-1]  # read through a name: `{% set p = event.properties %}{{ p.price }}`
    return None


def _optional_text(
    error: RenderError, prop: str | None, known: TriggerProperties, optional: list[str]
) -> str:
    if prop is None:
        absent = ", ".join(sorted(optional))
        return (
            f"fails to send when a {known.event!r} event lacks the properties it may lack "
            f"({absent}): {error.reason}"
        )
    written = error.missing.expression if error.missing is not None else None
    shown = f"event.properties.{prop}" if prop != "products" else "event.products"
    expression = written or shown
    about = "" if expression.startswith(shown) else f" (the trigger's {prop!r})"
    return (
        f"{expression}{about} may be missing: {known.why}, and this message fails to send "
        f"without it; guard it with `{{% if {expression} is defined %}}` or "
        f"`{expression} | default(…)`, {known.advice(prop)}"
    )


def _sibling_meant(
    chain: tuple[Any, ...], context: dict[str, Any] | None, sender: Sender | None
) -> str:
    """` (did you mean event.properties.name?)` when the sample data or the tracking
    plan has a key spelt close to the missing one, else nothing."""
    root, key, name = chain[0], chain[1], chain[2]
    if not isinstance(name, str):
        return ""
    data = ((context or {}).get(root) or {}).get(key)
    siblings = set(data) if isinstance(data, dict) else set()
    if root == "event" and sender is not None and sender.properties is not None:
        siblings |= sender.properties.required
    guess = closest_name(name, siblings - {name})
    return f" (did you mean {root}.{key}.{guess}?)" if guess else ""


def explained(renderer: Renderer, name: str, error: RenderError) -> str:
    """A render error of message `name` as `journeys validate` words it (`journeys
    preview` says the same): an undefined variable with the key probably meant."""
    reason = error.reason
    if error.missing is not None and error.missing.expression is not None:
        message = renderer.message(name)
        try:
            sample = load_sample(message)
        except SampleError:
            sample = {}
        reason = explain_missing(error.missing, _Facts(message, None, sample), renderer)
    return f"{error.file}:{error.line}: {reason}" if error.file and error.line else reason


def explain_missing(
    missing: MissingValue,
    facts: _Facts,
    renderer: Renderer,
    context: dict[str, Any] | None = None,
) -> str:
    """An undefined variable, and what makes real sends work (not only validation).
    `context` is what the message was rendered with: a misspelt property
    (`event.properties.nmae`) is told the one it has, before any other advice."""
    expression, chain = missing.expression, missing.chain
    if missing.shadowed:  # `x.items` where x has an 'items' key
        return f"{missing.what()}: {missing.hint()}"
    head = f"undefined variable {expression}"
    sample = f"{facts.message.folder / SAMPLE_FILE}"
    root = chain[0] if chain else None
    key = chain[1] if len(chain) > 1 and isinstance(chain[1], str) else None
    guard = f"guard it with `{{% if {expression} is defined %}}` or `{expression} | default(…)`"
    if root not in TEMPLATE_ROOTS:
        if len(chain) == 1:
            return (
                f"{head}: nothing named {root!r} is set here; set it before it is used "
                f"(`{{% set %}}`, or `{{% with {root}=… %}}` around the include), or {guard}"
            )
        return f"{head}: {guard}"
    if key is None:
        return f"{missing.what()} ({missing.hint()})"
    sender = facts.sender
    if root in ("contact", "event", "cart"):
        fixed = record_keys(root) or CART_KEYS
        if key not in fixed:
            text = unknown_key(
                key,
                expression or "",
                fixed,
                free=free_keys(root),
                at=[root],
                rest=list(chain[2:]),
                identify=root == "event" and sender is not None and sender.trigger == IDENTIFY,
            )
            return f"{head}: real sends never have it: {text}"
        free = free_keys(root)
        if key in free and len(chain) > 2:
            head += _sibling_meant(chain, context, facts.sender)
            what = f"the {sender.trigger!r} event" if root == "event" and sender else f"the {root}"
            every = (
                f"every {sender.trigger!r} event carries it"
                if root == "event" and sender
                else f"every {root} has it"
            )
            known = sender.properties if root == "event" and sender else None
            if known is not None and known.event != IDENTIFY and key == "properties":
                # A sample value alone would only move the failure to the optional pass.
                return (
                    f"{head}: the sample data has no {chain[2]!r} under {root}.{key}, and "
                    f"real sends fail where {what} lacks it: {guard}; or, if {every}, mark "
                    f"it required in {known.plan} ({known.event}: properties: {chain[2]}: "
                    f"{{required: true}}) and add it to {sample} so validate can render it"
                )
            return (
                f"{head}: the sample data has no {chain[2]!r} under {root}.{key}, and real "
                f"sends fail where {what} lacks it: {guard}; or, if {every}, add it to "
                f"{sample} so validate can render it"
            )
        return f"{head}: {guard}"
    if root == "journey":
        if sender is None:
            return (
                f"{head}: if the journey that sends this message keeps {key!r} in a step "
                f"before the send, give it a sample value under journey: in {sample}; "
                f"otherwise {guard}"
            )
        if key not in sender.journey_keys:
            kept = ", ".join(sorted(sender.journey_keys))
            return (
                f"{head}: no step of {sender.journey} before its send (line {sender.line}) "
                f"keeps {key!r}, so real sends would fail too (journey has: {kept}); keep it "
                "with an earlier step (issue_coupon, award_points, or save_as of a webhook "
                f"or wait_for), or {guard}"
            )
        if key not in facts.sample.get("journey", {}):
            return (
                f"{head}: real sends have it (an earlier step of {sender.journey} keeps it); "
                f"give validate a sample value under journey: in {sample}"
            )
        return f"{head}: {guard}"
    if root == "brand":
        brand = renderer.templates_dir / BRAND_FILE
        return f"{head}: add {key} to {brand} (every message reads the brand from there)"
    return f"{head}: {guard}"


def check_unsent_messages(renderer: Renderer, sent: set[str]) -> list[Problem]:
    """Messages no journey sends yet, checked on every channel they have with their samples.

    A marketer often writes the words before the journey; they should hear
    about a mistake then, not on launch day.
    """
    problems: list[Problem] = []
    folder = renderer.templates_dir
    names = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    for name in names:
        message = renderer.message(name)
        if name not in sent and message.exists():
            problems += check_message(renderer, name, message.channels())
    return problems


def check_journey_templates(
    item: LoadedJourney, renderer: Renderer, properties: TriggerProperties | None = None
) -> list[Problem]:
    """Each send's message exists, has the parts its channels need, and renders, also
    when the trigger lacks the properties it may lack (`properties`: what every trigger
    event of the journey carries; None: not checked)."""
    journey = item.journey
    problems: list[Problem] = []
    wanted: dict[str, set[str]] = {}
    senders: dict[str, Sender] = {}
    steps = list(iter_steps(journey.steps, ("steps",)))
    for path, step in steps:
        if not isinstance(step, SendStep):
            continue
        kept = frozenset({*TEMPLATE_JOURNEY_KEYS, *journey_keys(item.source, steps, path)})
        first = senders.get(step.send.template)
        senders[step.send.template] = Sender(
            str(item.path),
            first.line if first else item.source.position(path)[0],
            journey.trigger.name,
            kept & first.journey_keys if first else kept,  # what every send has
            properties,
        )
        name, channel = step.send.template, step.send.channel
        message = renderer.message(name)
        where = (*path, "send", "template")
        if not message.exists():
            message_text = f"template {name!r} not found: {message.missing()}"
            problems.append(item.problem(where, message_text))
            continue
        default = message.variants()[0]
        if channel == "preferred":
            usable = [c for c in CHANNELS if default.complete(c)]
            if not usable:
                problems.append(
                    item.problem(
                        where,
                        f"template {name!r} has no complete channel for channel preferred: "
                        f"{message.folder}/ needs email.subject with email.html or "
                        "email.text, or push.title with push.body, or sms.body",
                    )
                )
        else:
            usable = [channel] if isinstance(channel, str) else list(channel)
            for c in usable:
                if not default.complete(c):
                    problems.append(
                        item.problem(
                            where,
                            f"template {name!r} has no complete {c} part: missing "
                            f"{' and '.join(default.missing(c))} in {message.folder}/",
                        )
                    )
        wanted.setdefault(name, set()).update(c for c in usable if default.complete(c))
    for name, channels in wanted.items():
        problems += check_message(
            renderer, name, channels, journey.trigger.name, journey.id, senders[name]
        )
    return problems
