"""Which routing failures are an event's own, and how they are written down.

Only an event's own failures count towards its dead letter: counting an outage would
turn a whole backlog into dead letters during a Temporal or database restart. So a
failure is the event's own only when it is none of these:

- Temporal unreachable or overloaded: an `RPCError` other than INVALID_ARGUMENT,
  FAILED_PRECONDITION and OUT_OF_RANGE (UNAVAILABLE, DEADLINE_EXCEEDED,
  RESOURCE_EXHAUSTED, UNAUTHENTICATED...: every event would fail alike), except the
  RESOURCE_EXHAUSTED of a request larger than the server takes, which is the payload's;
  the client's "Failed client connect" (a `RuntimeError`);
- the database unreachable, busy or out of step with the code: SQLAlchemy's
  `OperationalError`, `InterfaceError`, `ProgrammingError`, its pool timeout;
- the network: `OSError` (`ConnectionError`, `TimeoutError`).

Everything else (Temporal refusing the request as invalid: a payload or id too large;
a payload the router cannot read; a bug met by one event) is the event's own. The
router also asks Temporal whether it answers before counting (`Router._own_failure`):
an own-looking failure while it does not is not counted.

The error kept is the exception's type and message without personal data (`scrub`),
cut to 300 characters: the dead-letter table and the log hold none.
"""

from __future__ import annotations

import re

from sqlalchemy import exc as sa_exc
from temporalio.service import RPCError, RPCStatusCode

from ..feedback.types import storable

# The event's own: Temporal refused this request, not every request.
OWN_STATUSES = frozenset(
    {RPCStatusCode.INVALID_ARGUMENT, RPCStatusCode.FAILED_PRECONDITION, RPCStatusCode.OUT_OF_RANGE}
)
# gRPC's words for a request over the server's size limit (4 MB by default).
TOO_LARGE = ("larger than max", "exceeds maximum size")
DATABASE_DOWN = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.ProgrammingError,  # a schema out of step: every event fails alike
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,  # the connection pool is exhausted
)
MAX_ERROR = 300

# An address, its @ also percent-encoded (in a URL) or fullwidth or small (U+FF20,
# U+FE6B: pasted text), its dots also fullwidth (U+FF0E).
EMAIL = re.compile(r"[\w.+%!#$*^`{|}~-]+(?:@|%40|\uff20|\ufe6b)[\w-]+(?:[.\uff0e][\w-]+)*")
# 9 digits or more however written (`+1 (555) 123-4567`, `0555.123.456`): a phone, a card...
NUMBER = re.compile(r"\+?(?:\(\s*)?\d(?:[ .()-]{0,3}\d){8,}")
PLACEHOLDER = r"<(?:address|number|contact)>"
# A contact id as a whole token: not part of a longer word (`ann` is not in `Ann-Marie`,
# `anne` or `ann.lee`); a short one (`an`, common inside words) only standing alone:
# after a space, quote, bracket, `:`, `=` or `/` and before a space, quote, bracket, `/`
# or the sentence's punctuation (`journey:j:an`, `'an'`, `for an.`).
WHOLE = r"(?<![\w-])(?<!\w[.@+]){}(?![\w-])(?![.@+]\w)"
ALONE = r"(?<![^\s'\"(\[{{<:=/]){}(?=$|[\s'\")\]}}>/]|[.,;:!?](?:\s|$))"
SHORT_ID = 3


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` says Temporal, the database or the network is down (or overloaded)
    rather than that this event cannot be routed."""
    if isinstance(exc, RPCError):
        if exc.status == RPCStatusCode.RESOURCE_EXHAUSTED:
            return not any(words in exc.message for words in TOO_LARGE)
        return exc.status not in OWN_STATUSES
    if isinstance(exc, (*DATABASE_DOWN, OSError)):
        return True
    return isinstance(exc, RuntimeError) and str(exc).startswith("Failed client connect")


def error_text(exc: BaseException, known: tuple[str, ...] = ()) -> str:
    """`Type: message` without personal data (`scrub`), cut to fit the table."""
    if isinstance(exc, RPCError):
        text = f"RPCError({exc.status.name if exc.status else 'unknown'}): {exc.message}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return scrub(text, known)[:MAX_ERROR]


def scrub(text: str, known: tuple[str, ...] = ()) -> str:
    """`text` on one line with email addresses as `<address>`, phone-like numbers as
    `<number>`, then `known` (the contact's ids) as `<contact>`. Addresses go first so an
    id that is an address leaves no domain behind; ids match whole tokens only, so they
    do not garble other words."""
    text = NUMBER.sub("<number>", EMAIL.sub("<address>", text))
    ids = sorted({k for k in known if k}, key=len, reverse=True)
    if ids:
        tokens = [
            (ALONE if len(value) < SHORT_ID else WHOLE).format(re.escape(value)) for value in ids
        ]
        pattern = re.compile("|".join([PLACEHOLDER, *tokens]), re.IGNORECASE)
        text = pattern.sub(_contact, text)
    return storable(" ".join(text.split()))


def _contact(match: re.Match[str]) -> str:
    """A placeholder already there stays; an id becomes `<contact>`."""
    return match[0] if re.fullmatch(PLACEHOLDER, match[0]) else "<contact>"
