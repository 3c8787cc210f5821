"""Payloads exchanged between workflows, activities and the router.

Plain dataclasses (one input per workflow/activity so fields can be added
later). They carry ids, never personal data: activities load the contact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TASK_QUEUE = "journeys"

# Activity names: workflows refer to activities by name so that workflow code
# never imports the modules that touch SQL, Jinja or provider SDKs.
ENTER_RUN = "enter_run"
RECORD_STEP = "record_step"
FINISH_RUN = "finish_run"
RECORD_CONVERSION = "record_conversion"
CHECK_CONDITION = "check_condition"
NEXT_LOCAL_TIME = "next_local_time"
SEND_MESSAGE = "send_message"  # prepare + deliver in one: runs started before channel queues
PREPARE_MESSAGE = "prepare_message"
DELIVER_MESSAGE = "deliver_message"
GIVE_UP_MESSAGE = "give_up_message"
UPDATE_CONTACT = "update_contact"
RUN_ACTION = "run_action"  # award_points, issue_coupon, webhook, track
SAVE_EVENT = "save_event"  # `wait_for: {save_as: ...}`: the matched event onto the run


MESSAGE_WORKFLOW = "TransactionalMessageWorkflow"


def channel_queue(task_queue: str, channel: str) -> str:
    """The task queue a channel's deliveries run on: its rate limit is the provider's quota."""
    return f"{task_queue}-{channel}"


@dataclass
class EventSignal:
    """A stored event delivered to a run; `event_id` dedupes redelivery."""

    event_id: int
    name: str
    received_at: str | None = None  # workflow time of arrival, stamped by the run


@dataclass
class EngagementSignal:
    """Engagement with a message this run sent (opened, clicked, ...)."""

    signal_id: str  # unique per engagement, dedupes redelivery
    step_id: str
    kind: str
    entry_seq: int = 0  # which entry sent the message; 0 = unknown


@dataclass
class RunState:
    """What a run carries across continue-as-new."""

    entry_seq: int
    entered_at: str | None = None  # ISO; the goal's attribution window starts here
    cursor: list[Any] = field(default_factory=list)  # path to the wait to resume
    deadline: str | None = None  # ISO time the resumed wait ends
    converted: bool = False
    sent: dict[str, str] = field(default_factory=dict)  # step id -> message id
    engagements: dict[str, list[str]] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)  # recent signal ids
    pending: list[EventSignal] = field(default_factory=list)  # not yet processed


@dataclass
class JourneyInput:
    journey: dict[str, Any]  # the frozen, validated spec of one version
    version: int
    contact_id: str
    trigger: EventSignal
    state: RunState | None = None  # set when continuing as new
    history_limit: int = 10_000  # continue-as-new past this many events


@dataclass
class EnterRequest:
    workflow_id: str
    journey_id: str
    version: int
    contact_id: str
    trigger_event_id: int
    re_entry: str  # never | always | after
    re_entry_after: int | None
    entry_if: str | None
    now: str = ""  # ISO, workflow time: re-entry windows are measured in it
    # The step the run starts on, recorded with the entry: one store write, not two.
    first_step: str | None = None


@dataclass
class EnterResult:
    allowed: bool
    entry_seq: int
    reason: str | None = None


@dataclass
class Decision:
    """What a run decided and why: a branch case, a split variant, how a wait ended,
    what became of a send. Carried to the store by the next step's (or the exit's) record,
    so recording the trail adds no command to the workflow's history."""

    kind: str  # branch | split | wait | send
    step_id: str
    outcome: str  # "case 1", "else", a variant, "event:Order Completed", "timeout", "sent"…
    at: str  # workflow time, ISO
    reason: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunUpdate:
    workflow_id: str
    entry_seq: int
    step_id: str | None = None
    status: str | None = None  # completed | exited | failed | skipped
    reason: str | None = None
    at: str | None = None  # workflow time, ISO (None from runs started before the trail)
    decisions: list[Decision] = field(default_factory=list)


@dataclass
class ConversionRequest:
    workflow_id: str
    entry_seq: int
    event_id: int
    now: str | None = None  # workflow time: the goal window is measured in journey time


@dataclass
class ConditionRequest:
    expression: str
    contact_id: str
    trigger_event_id: int | None
    event_id: int | None = None  # the event under test (where: clauses)
    journey: dict[str, Any] = field(default_factory=dict)
    workflow_id: str = ""  # with entry_seq: the run whose data is the `journey` root
    entry_seq: int = 0
    now: str | None = None  # ISO, from workflow.now(): what `today()` reads (None: the clock)


@dataclass
class LocalTimeRequest:
    contact_id: str
    now: str  # ISO, from workflow.now()
    time: str  # HH:MM
    weekdays: list[str] | None
    default_timezone: str | None


@dataclass
class SendRequest:
    workflow_id: str
    entry_seq: int
    step_id: str
    journey_id: str
    contact_id: str
    channel: str | list[str]
    template: str
    category: str
    trigger_event_id: int | None
    now: str = ""  # ISO workflow time: quiet hours and caps are judged in it
    policy: dict[str, Any] = field(default_factory=dict)  # the journey's `policy:` block
    sender: dict[str, Any] = field(default_factory=dict)  # the journey's `sender:` block
    deferrals: int = 0  # how many times this send was deferred already
    to: str | None = None  # transactional: the address the request named (email or sms)


@dataclass
class MessageInput:
    """A transactional message (`POST /v1/messages`): its ledger row and request exist."""

    message_id: str
    contact_id: str
    template: str
    channel: str | list[str]
    request_event_id: int  # the stored request: its properties are `event.properties`
    to: str | None = None  # the back end's address for it, instead of the contact's


@dataclass
class DateTriggerInput:
    journey_id: str
    contact_id: str


@dataclass
class DatePlanRequest:
    journey_id: str
    contact_id: str
    after: str  # ISO: the first moment strictly after it


@dataclass
class DatePlan:
    at: str | None = None  # ISO UTC moment the date is due; None: never (and why)
    day: str | None = None  # the contact's local day it is due on
    reason: str | None = None


@dataclass
class DateFireRequest:
    journey_id: str
    contact_id: str
    at: str
    day: str


@dataclass
class CampaignWave:
    at: str  # ISO UTC: when its members are released
    zones: list[str] = field(default_factory=list)
    unzoned: bool = False  # and members whose zone has no wave (none, or not `planned`)
    everyone: bool = False  # every member (not in local time)
    planned: list[str] | None = None  # with `unzoned`: the zones that have a wave


@dataclass
class CampaignPlan:
    dispatch_id: str | None = None  # None: nothing to send (reason)
    waves: list[CampaignWave] = field(default_factory=list)
    reason: str | None = None


@dataclass
class CampaignInput:
    journey_id: str
    # Set when continuing as new: the plan, and where its release stopped.
    plan: CampaignPlan | None = None
    wave: int = 0
    cursor: str | None = None
    chunks_per_run: int = 200  # then continue as new (tests make it small)


@dataclass
class OpenCampaignRequest:
    journey_id: str
    fired_at: str  # ISO: when the schedule was due (the firing's local time is the dispatch's)


@dataclass
class ReleaseRequest:
    dispatch_id: str
    wave: CampaignWave
    cursor: str | None = None  # the last contact released of this wave
    index: int = 0  # the wave's place in the plan


@dataclass
class ReleaseResult:
    status: str  # released | waiting (paused, the router behind) | cancelled
    cursor: str | None = None
    done: bool = False  # the wave is released
    wait: float = 0.0  # seconds before the next chunk (the throttle's pace, or a pause)
    released: int = 0


@dataclass
class SendResult:
    message_id: str | None
    status: str  # sent | failed | suppressed | skipped  (prepare also: ready | deferred)
    channel: str | None = None
    error: str | None = None  # why it was not sent
    retry_at: str | None = None  # deferred: ISO time to try again


@dataclass
class DeliverRequest:
    message_id: str
    options: dict[str, Any] = field(default_factory=dict)  # the journey's sender for the channel
    policy: dict[str, Any] | None = None  # the journey's policy: quiet hours re-checked


@dataclass
class GiveUpRequest:
    message_id: str
    reason: str


@dataclass
class UpdateContactRequest:
    contact_id: str
    idempotency_key: str
    set: dict[str, Any] = field(default_factory=dict)
    increment: dict[str, float] = field(default_factory=dict)
    unset: list[str] = field(default_factory=list)
    tag: list[str] = field(default_factory=list)
    untag: list[str] = field(default_factory=list)


@dataclass
class ActionRequest:
    """One `action` step; `action` is its spec (`type` and options) from the journey."""

    workflow_id: str
    entry_seq: int
    step_id: str
    journey_id: str
    contact_id: str
    trigger_event_id: int | None
    action: dict[str, Any]
    now: str = ""  # ISO workflow time: expiries and windows are measured in it


@dataclass
class ActionResult:
    ok: bool
    error: str | None = None  # why not, when not ok
    saved: list[str] = field(default_factory=list)  # `journey.*` keys the action stored


@dataclass
class SaveEventRequest:
    workflow_id: str
    entry_seq: int
    key: str
    event_id: int
