"""How long an SMS is, counted the way carriers and Twilio bill it: in segments.

A single character outside the GSM 03.38 alphabet (a Cyrillic letter, "č", an emoji)
switches the whole message to UCS-2 and cuts a segment from 160 to 70 characters,
so authors need to see the encoding and the segment count, not just a length.
"""

from __future__ import annotations

from dataclasses import dataclass

# Twilio refuses a message body longer than this many characters (error 21617), whatever
# the encoding; Twilio recommends staying under 320 for deliverability.
MAX_SMS_CHARACTERS = 1600

GSM_7 = "GSM-7"
UCS_2 = "UCS-2"

# GSM 03.38 default alphabet: one septet each.
GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
    " !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# GSM 03.38 extension table: sent as ESC + character, so two septets each.
GSM_EXTENSION = frozenset("^{}\\[~]|€\f")

# Per-segment capacity. A multipart message spends 6 bytes of each segment on the
# concatenation header (UDH), leaving 153 septets or 67 UTF-16 code units.
GSM_SINGLE, GSM_MULTI = 160, 153
UCS_SINGLE, UCS_MULTI = 70, 67


@dataclass(frozen=True)
class SmsLength:
    """Encoding and size of an SMS body; `units` are what `per_segment` counts."""

    encoding: str  # "GSM-7" or "UCS-2"
    units: int  # GSM-7 septets (extension-table chars count 2) or UTF-16 code units
    segments: int
    per_segment: int

    def describe(self) -> str:
        """One line for authors, e.g. "2 segments (UCS-2, 95 characters, 67 per segment)"."""
        segments = "segment" if self.segments == 1 else "segments"
        characters = "character" if self.units == 1 else "characters"
        return (
            f"{self.segments} {segments} ({self.encoding}, {self.units} {characters}, "
            f"{self.per_segment} per segment)"
        )


def sms_length(text: str) -> SmsLength:
    """Encoding, size and segment count of `text`; empty text is 0 segments."""
    if all(ch in GSM_BASIC or ch in GSM_EXTENSION for ch in text):
        widths = [2 if ch in GSM_EXTENSION else 1 for ch in text]
        encoding, single, multi = GSM_7, GSM_SINGLE, GSM_MULTI
    else:
        # UTF-16: characters outside the Basic Multilingual Plane take a surrogate pair.
        widths = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
        encoding, single, multi = UCS_2, UCS_SINGLE, UCS_MULTI
    units = sum(widths)
    if units == 0:
        return SmsLength(encoding, 0, 0, single)
    if units <= single:
        return SmsLength(encoding, units, 1, single)
    return SmsLength(encoding, units, _segments(widths, multi), multi)


def _segments(widths: list[int], capacity: int) -> int:
    """Segments needed when an escape pair or a surrogate pair may not straddle two."""
    segments, free = 1, capacity
    for width in widths:
        if width > free:
            segments, free = segments + 1, capacity
        free -= width
    return segments
