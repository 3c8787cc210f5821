"""Render every version of a message before launch, so a marketer sees problems, not customers.

For each channel a journey may send a message on, every locale version of
that message is rendered with sample data (`rendering/samples.py`). Missing
folders and parts are reported at the journey's send step; undefined
variables, syntax errors, CR/LF in subjects, SMS over the segment limit and
push payloads over 4 KB at the template's file:line.

This sits above both the journey language and rendering: neither needs the other.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..dsl.loader import LoadedJourney, iter_steps
from ..dsl.models import SendStep
from ..dsl.problems import Problem
from ..rendering.catalog import CHANNELS, PARTS, Message, Variant
from ..rendering.renderer import Renderer, RenderError
from ..rendering.samples import SampleError, sample_context


def check_message(
    renderer: Renderer,
    name: str,
    channels: Iterable[str],
    trigger_event: str | None = None,
    journey_id: str = "sample",
) -> list[Problem]:
    """Problems of message `name` on `channels`, in every locale it has a version in."""
    message = renderer.message(name)
    if not message.exists():
        return []  # the journey loader reports a missing folder at the send step
    try:
        base = sample_context(message, trigger_event, journey_id)
    except SampleError as exc:
        return [Problem(exc.file, exc.line, 1, exc.reason)]
    problems = [
        Problem(
            str(folder),
            1,
            1,
            f"folder {folder.name!r} is not a locale tag "
            "(expected a language like ru, sr-Latn, ar or pt-BR); it is ignored",
        )
        for folder in message.stray_folders()
    ]
    for channel in (c for c in CHANNELS if c in set(channels)):
        for variant in message.variants():
            problems += _check_variant(renderer, message, variant, channel, base)
    return problems


def _check_variant(
    renderer: Renderer, message: Message, variant: Variant, channel: str, base: dict
) -> list[Problem]:
    if not variant.complete(channel):
        started = any(variant.has(channel, part) for part in PARTS[channel])
        if variant.locale is None or not started:
            return []  # the default version's gaps are the journey loader's to report
        missing = " and ".join(variant.missing(channel))
        return [
            Problem(
                str(variant.folder),
                1,
                1,
                f"the {variant.locale} version of {message.name!r} has no {missing}: "
                f"{variant.locale} contacts would get the default {channel} instead",
            )
        ]
    tag = variant.locale or renderer.default_locale
    context = {
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
    try:
        renderer.render_variant(variant, channel, context, tag)
    except RenderError as exc:
        return [Problem(exc.file or str(variant.folder), exc.line or 1, 1, exc.reason)]
    return []


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


def check_journey_templates(item: LoadedJourney, renderer: Renderer) -> list[Problem]:
    """Each send's message exists, has the parts its channels need, and renders."""
    journey = item.journey
    problems: list[Problem] = []
    wanted: dict[str, set[str]] = {}
    for path, step in iter_steps(journey.steps, ("steps",)):
        if not isinstance(step, SendStep):
            continue
        name, channel = step.send.template, step.send.channel
        message = renderer.message(name)
        where = (*path, "send", "template")
        if not message.exists():
            message_text = f"template {name!r} not found: no folder {message.folder}/"
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
        problems += check_message(renderer, name, channels, journey.trigger.name, journey.id)
    return problems
