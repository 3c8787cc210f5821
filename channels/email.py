"""What every email adapter shares: sender defaults, RFC 8058 unsubscribe headers, and
what a recipient address may be.

`address_problem` is the one check of an email address: the API refuses an identify
whose `traits.email` fails it. `header_problem` is its part that matters to a sender:
a line break (or another control character) in an address could add mail headers,
and an RFC 2047 encoded word (`=?utf-8?q?...?=`) is shown decoded by mail programs
(`=?utf-8?q?ceo=40bank.example=2C_cfo=40bank.example?=@evil.example` reads as
"ceo@bank.example, cfo@bank.example@evil.example"), so the send pipeline and every email
adapter refuse such an address, also one stored before ingestion checked it.
"""

from __future__ import annotations

import re
import unicodedata

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .base import OutgoingMessage
from .errors import PermanentChannelError


class EmailSettings(BaseSettings):
    """`JOURNEYS_EMAIL_FROM` is required by real email adapters; a journey may override it."""

    model_config = SettingsConfigDict(
        env_prefix="JOURNEYS_EMAIL_", extra="ignore", populate_by_name=True
    )

    from_: str | None = Field(default=None, validation_alias=AliasChoices("JOURNEYS_EMAIL_FROM"))
    reply_to: str | None = None
    # Second List-Unsubscribe target for mailbox providers that prefer mail: unsubscribe@…
    unsubscribe_mailto: str | None = None


MAX_ADDRESS = 254  # RFC 5321's path limit (256) without its angle brackets
MAX_LOCAL = 64
# RFC 5322 atext; non-ASCII letters pass too (RFC 6531 addresses).
_LOCAL_CHARACTER = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]|[^\x00-\x7f]")
_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def unsafe_characters(value: str) -> str | None:
    """Why `value` cannot go into a mail header as it is (line break, control or invisible
    formatting character), or None. Never quotes the value: it is personal data."""
    for char in value:
        if char in "\r\n\u2028\u2029\x85":
            return "it contains a line break (CR/LF), which could add mail headers"
        if unicodedata.category(char) in ("Cc", "Cf"):
            return f"it contains the invisible or control character U+{ord(char):04X}"
    return None


def header_problem(value: str) -> str | None:
    """Why the email address `value` cannot go into a mail header as it is, or None: a line
    break or control character (`unsafe_characters`), or an RFC 2047 encoded word, which
    is for display names and text, never part of an address (RFC 2047 section 5), and which
    mail programs would show decoded, as other addresses for one. Never quotes the value."""
    if (unsafe := unsafe_characters(value)) is not None:
        return unsafe
    if "=?" in value:
        return (
            "it contains an encoded word ('=?', RFC 2047), which mail programs show "
            "decoded, as other addresses for one"
        )
    return None


def address_problem(value: object) -> str | None:
    """Why `value` is not one plain email address such as ann@example.com, or None: the
    fact alone, so that the caller's advice (what to send instead) is said once.

    Strict on purpose: one addr-spec, no display name, a dotted domain of host-name
    labels (international ones in their Unicode or xn-- form), no quoted local parts or
    IP literals, which shops do not send and mail services reject. Surrounding
    whitespace is the caller's to strip.
    """
    if not isinstance(value, str):
        return "it is not text"
    if (unsafe := header_problem(value)) is not None:
        return unsafe
    if any(char in value for char in ",;<>"):
        return "it is more than one address, or has a name"
    if any(char.isspace() for char in value):
        return "it contains a space"
    if value.count("@") != 1:
        return "it needs exactly one @"
    if len(value) > MAX_ADDRESS:
        return f"it is longer than {MAX_ADDRESS} characters"
    local, domain = value.split("@")
    return _local_problem(local) or _domain_problem(domain)


def _local_problem(local: str) -> str | None:
    if not local or len(local) > MAX_LOCAL:
        return f"the part before @ must be 1 to {MAX_LOCAL} characters"
    if local.startswith(".") or local.endswith(".") or ".." in local:
        return "the part before @ has a dot at its start or end, or two in a row"
    wrong = [c for c in local if c != "." and not _LOCAL_CHARACTER.fullmatch(c)]
    if wrong:
        return f"the part before @ may not contain {wrong[0]!r}"
    return None


def _domain_problem(domain: str) -> str | None:
    if not domain:
        return "there is no domain after @"
    labels = domain.split(".")
    if len(labels) < 2:
        return "the domain after @ needs a dot, as in example.com"
    for label in labels:
        try:
            ascii_label = label.encode("idna").decode("ascii") if not label.isascii() else label
        except UnicodeError:
            return "the domain after @ is not a valid host name"
        if not _LABEL.match(ascii_label):
            return (
                "the domain after @ is not a host name (letters, digits and inner hyphens "
                "between dots)"
            )
    if labels[-1].isdigit():
        return "the domain after @ ends in a number, not a top-level domain"
    return None


def recipient(message: OutgoingMessage, provider: str) -> str:
    """The address to send to, or `invalid_recipient` when it could inject headers or show
    as something else: an adapter never hands a provider a line break or an encoded word
    in an address."""
    problem = header_problem(message.to)
    if problem is not None:
        raise PermanentChannelError(
            f"the recipient address cannot be used: {problem}",
            provider=provider,
            reason="invalid_recipient",
        )
    return message.to.strip()


def sender(message: OutgoingMessage, settings: EmailSettings, provider: str) -> str:
    """The From address: the journey's `from`, else JOURNEYS_EMAIL_FROM."""
    value = message.options.get("from") or settings.from_
    if not value:
        raise PermanentChannelError(
            "no sender address: set JOURNEYS_EMAIL_FROM or `sender: {email: {from: ...}}` "
            "in the journey",
            provider=provider,
            reason="bad_payload",
        )
    return str(value)


def reply_to(message: OutgoingMessage, settings: EmailSettings) -> str | None:
    value = message.options.get("reply_to") or settings.reply_to
    return str(value) if value else None


def list_unsubscribe_headers(message: OutgoingMessage, mailto: str | None) -> dict[str, str]:
    """RFC 8058 one-click headers, on marketing mail only (transactional mail is exempt).

    One-click needs an HTTPS URI: over plain HTTP (local development) only the
    `List-Unsubscribe` header is sent, so mailbox providers fall back to opening it.
    """
    url = message.links.get("unsubscribe_url")
    if not message.is_marketing or not (url or mailto):
        return {}
    targets = []
    if url:
        targets.append(f"<{url}>")
    if mailto:
        targets.append(f"<mailto:{mailto}?subject=unsubscribe>")
    headers = {"List-Unsubscribe": ", ".join(targets)}
    if url and url.startswith("https://"):
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    return headers
