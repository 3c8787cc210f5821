"""SMS length in segments, counted the way carriers and Twilio bill it.

Authors see the segment count before a journey goes live: a single "č" or emoji
turns a 1-segment GSM-7 message into a 3-segment UCS-2 one, and each segment is paid.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.deployment import trigger_event_of
from orchestrator.rendering import Renderer
from orchestrator.rendering.catalog import message_names
from orchestrator.rendering.samples import sample_context
from orchestrator.rendering.sms import (
    GSM_BASIC,
    GSM_EXTENSION,
    MAX_SMS_CHARACTERS,
    SmsLength,
    sms_length,
)

CYRILLIC = "Привет"  # 6 letters, all outside GSM-7


def cyrillic(n: int) -> str:
    return (CYRILLIC * (n // len(CYRILLIC) + 1))[:n]


@pytest.mark.parametrize(
    ("length", "segments", "per_segment"),
    [(1, 1, 160), (160, 1, 160), (161, 2, 153), (306, 2, 153), (307, 3, 153)],
)
def test_plain_ascii_is_gsm7(length: int, segments: int, per_segment: int) -> None:
    assert sms_length("a" * length) == SmsLength("GSM-7", length, segments, per_segment)


def test_empty_text_is_no_segment() -> None:
    assert sms_length("") == SmsLength("GSM-7", 0, 0, 160)


def test_whole_basic_alphabet_is_one_septet_each() -> None:
    alphabet = "".join(sorted(GSM_BASIC))
    assert len(alphabet) == 127  # 128 codes, one of which is the escape to the extension table
    assert sms_length(alphabet) == SmsLength("GSM-7", 127, 1, 160)
    for text in ("@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ", "¤¡ÄÖÑÜ§¿äöñüà", "Hello!\r\n"):
        assert sms_length(text).encoding == "GSM-7", text


def test_extension_table_characters_count_two() -> None:
    assert sms_length("€") == SmsLength("GSM-7", 2, 1, 160)
    assert sms_length("".join(GSM_EXTENSION)).units == 20
    assert sms_length("^{}\\[~]|€\f") == SmsLength("GSM-7", 20, 1, 160)
    assert sms_length("a" * 158 + "€") == SmsLength("GSM-7", 160, 1, 160)
    assert sms_length("a" * 159 + "€") == SmsLength("GSM-7", 161, 2, 153)


def test_escape_pair_is_not_split_across_segments() -> None:
    # 152 septets leave one free in the first segment: "€" (ESC + e) moves whole to the next,
    # so 306 septets need 3 segments where 306 / 153 would suggest 2.
    text = "a" * 152 + "€" + "a" * 152
    assert sms_length(text) == SmsLength("GSM-7", 306, 3, 153)
    # Landing exactly on the boundary needs no extra segment.
    assert sms_length("a" * 151 + "€" + "a" * 153) == SmsLength("GSM-7", 306, 2, 153)


@pytest.mark.parametrize(
    ("length", "segments", "per_segment"),
    [(70, 1, 70), (71, 2, 67), (134, 2, 67), (135, 3, 67)],
)
def test_russian_is_ucs2(length: int, segments: int, per_segment: int) -> None:
    assert sms_length(cyrillic(length)) == SmsLength("UCS-2", length, segments, per_segment)


def test_one_character_outside_gsm_switches_the_whole_message() -> None:
    assert sms_length("a" * 100).segments == 1
    assert sms_length("a" * 99 + "ж") == SmsLength("UCS-2", 100, 2, 67)


@pytest.mark.parametrize(
    "text",
    [
        "Vaša porudžbina je poslata iz Čačka.",  # Serbian Latin: č, ž
        "Ćao! Đak je stigao u Niš.",  # Serbian Latin: ć, đ, š
        "طلبك في الطريق إليك",  # Arabic, right to left
        "Dein Warenkorb wartet 🛒",  # emoji
        "\u201csmart quotes\u201d and an en dash \u2013",  # typographic punctuation is not GSM-7
    ],
)
def test_non_gsm_scripts_are_ucs2(text: str) -> None:
    assert sms_length(text).encoding == "UCS-2"


def test_arabic_counts_one_unit_per_letter() -> None:
    text = "مرحبا بك"
    assert sms_length(text) == SmsLength("UCS-2", len(text), 1, 70)


def test_emoji_counts_two_units() -> None:
    assert sms_length("😀") == SmsLength("UCS-2", 2, 1, 70)
    assert sms_length("a" * 68 + "😀") == SmsLength("UCS-2", 70, 1, 70)
    assert sms_length("a" * 69 + "😀") == SmsLength("UCS-2", 71, 2, 67)


def test_surrogate_pair_is_not_split_across_segments() -> None:
    # 66 units leave one free in the first segment: the emoji's pair moves to the next.
    text = "a" * 66 + "😀" + "a" * 66
    assert sms_length(text) == SmsLength("UCS-2", 134, 3, 67)
    assert sms_length("a" * 65 + "😀" + "a" * 67) == SmsLength("UCS-2", 134, 2, 67)


def test_describe() -> None:
    assert sms_length("a" * 42).describe() == "1 segment (GSM-7, 42 characters, 160 per segment)"
    assert (
        sms_length(cyrillic(95)).describe() == "2 segments (UCS-2, 95 characters, 67 per segment)"
    )
    assert sms_length("").describe() == "0 segments (GSM-7, 0 characters, 160 per segment)"
    assert sms_length("€").describe() == "1 segment (GSM-7, 2 characters, 160 per segment)"
    assert sms_length("!").describe() == "1 segment (GSM-7, 1 character, 160 per segment)"


def test_twilio_body_cap() -> None:
    assert MAX_SMS_CHARACTERS == 1600


# --- the shipped messages keep the length their comments promise -----------------------------

ROOT = Path(__file__).resolve().parent.parent


def shipped_sms() -> list[tuple[str, str | None]]:
    renderer = Renderer(ROOT / "templates")
    return [
        (name, variant.locale)
        for name in message_names(ROOT / "templates")
        for variant in renderer.message(name).variants()
        if variant.has("sms", "body")
    ]


@pytest.mark.parametrize(("name", "locale"), shipped_sms(), ids=lambda v: str(v))
def test_shipped_sms_fit_the_segments_their_comments_promise(name: str, locale: str | None) -> None:
    """Every shipped SMS says it fits one GSM-7 segment (the default version) or two
    UCS-2 ones (translations). `cart_reminder/sr-Latn` said two and previewed at three;
    a cart of a dozen items and a long recovery link must fit too."""
    renderer = Renderer(ROOT / "templates")
    message = renderer.message(name)
    variant = next(v for v in message.variants() if v.locale == locale)
    context = sample_context(message, trigger_event_of(name, ROOT / "journeys"))
    carts = [context["cart"]]
    if context["cart"]["products"]:  # the longest plural forms, the sample's long link
        carts.append({**context["cart"], "item_count": 12, "url": "https://" + "x" * 47})
    for cart in carts:
        rendered = renderer.render_variant(variant, "sms", {**context, "cart": cart}, locale)
        assert rendered.sms is not None
        promised = 1 if locale is None else 2
        assert rendered.sms.segments <= promised, (rendered.parts["body"], rendered.sms.describe())
