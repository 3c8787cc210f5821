"""Goal mistakes `journeys validate` catches before a journey ships.

- `goal.after: last_message` in a journey that sends nothing: no run would ever convert
  (an error).
- A `wait` as the journey's last step when it has a goal: before conversions counted
  after the run ended, journeys kept runs alive this way to catch late orders. Now it
  only holds the contact in the journey, which blocks its next entry while it waits (a
  warning: a deliberate cool-down is `entry.re_entry: after …`).
"""

from __future__ import annotations

from collections.abc import Iterable

from ..dsl.durations import format_duration
from ..dsl.loader import LoadedJourney, iter_steps
from ..dsl.models import SendStep, WaitStep
from ..dsl.problems import Problem


def check_goals(journeys: Iterable[LoadedJourney]) -> list[Problem]:
    problems = []
    for item in journeys:
        journey, source = item.journey, item.source
        goal = journey.goal
        if goal is None:
            continue
        sends = any(isinstance(s, SendStep) for _, s in iter_steps(journey.steps, ("steps",)))
        if goal.after == "last_message" and not sends:
            problems.append(
                source.problem(
                    ("goal", "after"),
                    "goal.after is last_message, but this journey sends no message, so no "
                    "run would ever convert: use `after: entry` (the default)",
                )
            )
        last = journey.steps[-1]
        if isinstance(last, WaitStep) and len(journey.steps) > 1:
            line, column = source.position(("steps", len(journey.steps) - 1))
            text = (
                f"the journey ends with `wait: {format_duration(last.wait)}`, which only keeps "
                "the contact in the journey (and out of its next entry): a goal event within "
                f"goal.within ({format_duration(goal.within)}) converts the run even after "
                "it ended; remove the wait (for a pause between entries use "
                "`entry.re_entry: after …`)"
            )
            problems.append(Problem(source.file, line, column, text, "warning"))
    return problems
