"""Everything `journeys validate` checks, and `deploy` refuses on: one set of rules.

The journey language (`dsl`) checks each file on its own terms; this layer adds
what needs more than the language: every message a journey sends is rendered in
every locale, triggers are checked against the segments of `segments.yaml`, and
event names against what can arrive (`event_names.py`). A directory brings its own
`segments.yaml`, `events.yaml` and `invariants.yaml` (what `journeys simulate` checks),
so validating a folder and deploying it can never disagree.

Errors stop a deploy; warnings (an event name nothing is known to send, a property the
tracking plan does not list, an optional property a message shows unguarded, a partial
a translation falls back on) are printed and only fail `journeys validate --strict`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..dsl.invariants import INVARIANTS_FILE, read_invariants
from ..dsl.loader import (
    SKIPPED_FILES,
    LoadedJourney,
    journey_files,
    load_journeys,
    referenced_templates,
)
from ..dsl.models import Journey, Trigger
from ..dsl.problems import JourneyError, Problem, sorted_problems
from ..dsl.scenario import SCENARIOS_FOLDER, load_scenario
from ..rendering import Renderer
from ..segments.loader import SEGMENTS_FILE, LoadedSegment, load_segments
from .campaign_checks import check_campaigns
from .event_names import KnownEvents, check_event_names, tracked_events
from .event_properties import (
    check_condition_properties,
    check_template_properties,
    trigger_properties,
)
from .goal_checks import check_goals
from .template_checks import check_journey_templates, check_unsent_messages
from .tracking_plan import TRACKING_PLAN, load_tracking_plan, tracking_plan_files


@dataclass
class Validation:
    """The journeys and segments that passed, every error (`problems`) and every warning."""

    journeys: list[LoadedJourney] = field(default_factory=list)
    segments: list[LoadedSegment] = field(default_factory=list)
    segment_files: list[Path] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    events: KnownEvents = field(default_factory=KnownEvents)


def validate(
    targets: Iterable[Path],
    renderer: Renderer,
    *,
    unsent: bool = False,
    read_received_events: Callable[[], set[str] | None] | None = None,
    expect_journeys: bool = False,
    default_zone: str = "UTC",
) -> Validation:
    """Check journey files and folders, their `segments.yaml` and `events.yaml`, and the
    messages they send.

    A folder's `segments.yaml` (present or not) decides which segment triggers are
    valid; a `segments.yaml` named on its own is checked too. With `unsent`, messages
    no journey sends yet are rendered as well (a marketer often writes them first).
    `read_received_events` reads the event names the store has received (None: no
    store to consult), known besides the spec's, ours, the tracking plan's and
    `track`'s; it is called only if a name needs it.
    With `expect_journeys` (no Python journey is configured), a folder with no journey
    file (nor segments.yaml or events.yaml) is an error naming it: a mistaken path
    (`journeys validate docs`) must not pass as a clean project. `default_zone` is the
    zone of campaigns that name none (JOURNEYS_DEFAULT_TIMEZONE).
    """
    targets = list(targets)
    result = Validation()
    result.events.read_store = read_received_events
    result.events.plans = tracking_plan_files(targets)
    for file in result.events.plans:
        planned, problems = load_tracking_plan(file)
        result.events.planned.update(planned)
        result.problems += problems
    segment_files = [p for p in targets if p.is_file() and p.name == SEGMENTS_FILE]
    rule_files = [p for p in targets if p.is_file() and p.name == INVARIANTS_FILE]
    rule_files += [p / INVARIANTS_FILE for p in targets if (p / INVARIANTS_FILE).is_file()]
    for file in rule_files:
        result.problems += read_invariants(file)[1]
    scenario_files = [p for p in targets if p.is_file() and p.parent.name == SCENARIOS_FOLDER]
    for file in scenario_files:
        result.problems += _scenario_problems(file)
    journey_targets = [
        p
        for p in targets
        if p not in segment_files + result.events.plans + rule_files + scenario_files
    ]
    # The segments a journey's trigger may name are those of the segments.yaml of the
    # folder it is deployed from: the folder validated, or the folder of a file validated
    # on its own (present or not, as `journeys deploy` of that folder would see it).
    scopes = {p if p.is_dir() else p.parent for p in journey_targets}
    scopes |= {p.parent for p in segment_files}
    result.segment_files = [p / SEGMENTS_FILE for p in sorted(scopes)]
    result.segment_files = [p for p in result.segment_files if p.is_file()]
    names: dict[Path, set[str] | None] = {folder: set() for folder in scopes}
    for file in result.segment_files:
        found, problems = load_segments(file)
        result.segments += found
        result.problems += problems
        # A broken segments.yaml is reported; its triggers are not checked against it.
        names[file.parent] = None if problems else {s.name for s in found}
    folders = [p for p in journey_targets if p.is_dir()]

    def segments_of(file: Path) -> set[str] | None:
        """The segment names of the folder `file` is deployed from."""
        scope = next((f for f in folders if f in file.parents), file.parent)
        return names.get(scope)

    journeys, problems = (
        load_journeys(journey_targets, segments_of) if journey_targets else ([], [])
    )
    if expect_journeys:
        problems += [_no_journey(folder) for folder in folders if _not_journeys(folder)]
    for item in journeys:
        plan = result.events.plan_file(item.path.parent)
        found = check_journey_templates(
            item, renderer, trigger_properties(item.journey.trigger, result.events, plan)
        )
        problems += sorted_problems(found, str(item.path))
        if not any(not p.is_warning for p in found):
            result.journeys.append(item)
    if unsent:
        problems += check_unsent_messages(renderer, referenced_templates(targets))
    for folder in folders:
        problems += _folder_scenarios(folder, {j.journey.id for j in journeys})
    result.events.tracked = tracked_events(journeys)
    problems += check_event_names(journeys, result.segment_files, result.events)
    problems += check_condition_properties(journeys, result.events)
    problems += check_goals(journeys)
    problems += check_campaigns(journeys, default_zone)
    problems += check_template_properties(journeys, renderer, result.events)
    everything = [*problems, *result.problems]
    result.problems = [p for p in everything if not p.is_warning]
    result.warnings = [p for p in everything if p.is_warning]
    return result


def _scenario_problems(file: Path) -> list[Problem]:
    try:
        load_scenario(file)
    except JourneyError as exc:
        return exc.problems
    return []


def _folder_scenarios(folder: Path, journey_ids: set[str]) -> list[Problem]:
    """`scenarios/<journey>.yaml` (what `journeys simulate` runs each journey on): valid,
    and named after a journey of the folder, else it would silently never be used."""
    problems = []
    for file in sorted((folder / SCENARIOS_FOLDER).glob("*.y*ml")):
        problems += _scenario_problems(file)
        if file.stem not in journey_ids:
            known = ", ".join(sorted(journey_ids)) or "none"
            problems.append(
                Problem(
                    str(file),
                    1,
                    1,
                    f"scenario for no journey: {file.stem!r} is no journey id of {folder} "
                    f"(journeys: {known}); name the file after the journey it is for",
                )
            )
    return problems


def senders_of(message: str, journeys_dir: Path) -> list[Journey]:
    """The journeys of the folder that send `message`, in file order."""
    loaded, _ = load_journeys([journeys_dir]) if journeys_dir.is_dir() else ([], [])
    return [item.journey for item in loaded if message in referenced_templates([item.path])]


def _not_journeys(folder: Path) -> bool:
    """A folder with no journey, segments.yaml, events.yaml or invariants.yaml: a
    mistaken path."""
    return not any(journey_files([folder])) and not any(
        (folder / name).is_file() for name in SKIPPED_FILES
    )


def _no_journey(folder: Path) -> Problem:
    return Problem.whole(
        folder,
        "no journey in this folder: a journey is a .yaml or .yml file with id, name, "
        "trigger and steps (and a journeys folder may hold "
        f"{SEGMENTS_FILE} and {TRACKING_PLAN})",
    )


def trigger_of(message: str, journeys_dir: Path) -> Trigger | None:
    """The trigger of the first journey that sends `message` (in file order)."""
    senders = senders_of(message, journeys_dir)
    return senders[0].trigger if senders else None


def trigger_event_of(message: str, journeys_dir: Path) -> str | None:
    """The trigger event of the first journey that sends `message`: the default sample event."""
    trigger = trigger_of(message, journeys_dir)
    return trigger.name if trigger is not None else None
