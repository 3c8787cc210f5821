"""The send policy's rules on their own: quiet-hour windows (midnight, DST), caps, consent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from orchestrator.dsl.models import JourneyPolicy
from orchestrator.services.policy import (
    Cap,
    QuietHours,
    cap_release,
    consent_refusal,
    normalize_address,
)
from orchestrator.services.zones import zone_of

NEW_YORK = ZoneInfo("America/New_York")
TOKYO = ZoneInfo("Asia/Tokyo")


def at(zone: ZoneInfo, text: str, fold: int = 0) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=zone, fold=fold)


@pytest.mark.parametrize(
    ("local", "released_at"),
    [
        ("2026-06-10 20:59", None),  # just before the window
        ("2026-06-10 21:00", "2026-06-11 08:00"),  # the start is inside
        ("2026-06-10 23:30", "2026-06-11 08:00"),  # across midnight
        ("2026-06-11 03:00", "2026-06-11 08:00"),
        ("2026-06-11 07:59", "2026-06-11 08:00"),
        ("2026-06-11 08:00", None),  # the end is outside: send now
    ],
)
def test_default_window_spans_midnight(local: str, released_at: str | None) -> None:
    window = QuietHours.parse("21:00-08:00")
    assert window is not None
    release = window.release(at(TOKYO, local), TOKYO)
    expected = at(TOKYO, released_at).astimezone(UTC) if released_at else None
    assert release == expected


def test_a_daytime_window_does_not_wrap() -> None:
    window = QuietHours.parse("12:00-14:00")
    assert window is not None
    assert window.release(at(TOKYO, "2026-06-10 11:59"), TOKYO) is None
    assert window.release(at(TOKYO, "2026-06-10 13:00"), TOKYO) == at(
        TOKYO, "2026-06-10 14:00"
    ).astimezone(UTC)
    assert window.release(at(TOKYO, "2026-06-10 23:00"), TOKYO) is None


def test_the_repeated_hour_when_clocks_go_back_releases_at_the_second_end() -> None:
    """New York, 2026-11-01: 01:00-02:00 happens twice. At 01:10 the second time (EST),
    the first 01:30 (EDT) has passed; the release is the 01:30 still to come."""
    window = QuietHours.parse("21:00-01:30")
    assert window is not None
    first_pass = at(NEW_YORK, "2026-11-01 01:10", fold=0)
    second_pass = at(NEW_YORK, "2026-11-01 01:10", fold=1)
    assert window.release(first_pass, NEW_YORK) == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)
    assert window.release(second_pass, NEW_YORK) == datetime(2026, 11, 1, 6, 30, tzinfo=UTC)


def test_an_end_inside_the_spring_gap_releases_after_the_jump_never_before() -> None:
    """New York, 2026-03-08: 02:00-03:00 does not exist."""
    window = QuietHours.parse("21:00-02:30")
    assert window is not None
    now = at(NEW_YORK, "2026-03-08 01:10")
    release = window.release(now, NEW_YORK)
    assert release is not None
    jump = datetime(2026, 3, 8, 7, 0, tzinfo=UTC)  # 02:00 EST became 03:00 EDT
    assert jump <= release <= jump + timedelta(hours=1)
    assert window.release(release, NEW_YORK) is None  # outside the window then


@pytest.mark.parametrize("text", ["none", "off", "", None, "NONE"])
def test_no_quiet_hours(text: str | None) -> None:
    assert QuietHours.parse(text) is None


@pytest.mark.parametrize("text", ["9pm-8am", "21:00", "25:00-08:00", "21:00-21:00", "21-08"])
def test_bad_windows_say_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match=r"HH:MM-HH:MM|the same time"):
        QuietHours.parse(text)


def test_yaml_off_is_no_quiet_hours() -> None:
    policy = JourneyPolicy.model_validate({"quiet_hours": {"push": False, "sms": "22:00-09:00"}})
    assert policy.quiet_hours.push == "none"
    assert policy.quiet_hours.email is None  # left out: the default applies


def test_caps_parse_and_release_when_the_oldest_leaves_the_window() -> None:
    cap = Cap.parse("3/24h")
    assert cap == Cap(3, 86_400)
    assert Cap.parse("none") is None
    for bad in ("3 per day", "0/24h", "3/soon"):
        with pytest.raises(ValueError):
            Cap.parse(bad)
    now = datetime(2026, 6, 10, 12, tzinfo=UTC)
    sent = [now - timedelta(hours=h) for h in (20, 5, 1)]
    assert cap_release(sent[1:], cap, now) is None  # two in the window: one more fits
    assert cap_release(sent, cap, now) == sent[0] + timedelta(hours=24, milliseconds=1)
    old = [now - timedelta(hours=30), *sent[1:]]
    assert cap_release(old, cap, now) is None  # the 30 h old one no longer counts


@pytest.mark.parametrize(
    ("consent", "category", "explicit", "refused"),
    [
        ({}, "marketing", False, None),
        ({}, "marketing", True, "no marketing consent"),
        ({"email": {"marketing": True}}, "marketing", True, None),
        ({"email": True}, "marketing", True, None),
        ({"email": {"marketing": False}}, "marketing", False, "opted out of marketing"),
        ({"email": {"marketing": False}}, "transactional", False, None),
        ({"email": False}, "transactional", False, "opted out of email"),
        ({"email": {"transactional": False}}, "transactional", False, "opted out of email"),
        ({"sms": False}, "marketing", False, None),  # another channel
    ],
)
def test_consent(
    consent: dict[str, object], category: str, explicit: bool, refused: str | None
) -> None:
    reason = consent_refusal(consent, "email", category, explicit)
    assert (reason is None) == (refused is None)
    if refused:
        assert refused in (reason or "")


def test_addresses_and_zones_are_normalized() -> None:
    assert normalize_address("email", " Ann@Example.COM ") == "ann@example.com"
    assert normalize_address("sms", "+1 (555) 010-1010") == "+15550101010"
    assert normalize_address("push", "Tok-En") == "Tok-En"
    assert zone_of("Mars/Olympus", "Asia/Tokyo").key == "Asia/Tokyo"
    assert zone_of(None, None).key == "UTC"
    # A folder of the zone database is no zone (ZoneInfo raises IsADirectoryError).
    assert zone_of("America", "../../etc/passwd", "Europe/Lisbon").key == "Europe/Lisbon"
