"""The Firebase push adapter, through the real firebase-admin SDK against a loopback FCM.

Configuration only: credentials are a generated service-account file whose token_uri is
the fake (so the SDK's real OAuth JWT flow runs), and FCM's address comes from the
adapter's JOURNEYS_FCM_BASE_URL setting. Two tests wait for the SDK's own retries
(4 x Retry-After: 1 s, about 4 s each); everything else is quick.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fakes import fcm
from fakes.fcm import FakeFCM
from fakes.server import RESET, Reply
from firebase_admin import messaging

from channels.base import OutgoingMessage
from channels.errors import ChannelConfigError, PermanentChannelError, TransientChannelError
from channels.firebase import FirebaseChannel, FirebaseSettings
from channels.registry import adapter_class

pytestmark = pytest.mark.filterwarnings("ignore:Message.token is deprecated:DeprecationWarning")

PHONE, TABLET, LAPTOP = "tok-phone-1", "tok-tablet-2", "tok-laptop-3"
MakeAdapter = Callable[..., FirebaseChannel]
GOOGLE_FCM_URL = "https://fcm.googleapis.com/v1/projects/{0}/messages:send"


@pytest.fixture(autouse=True)
def fcm_url_untouched() -> Iterator[None]:
    """The adapter sets the SDK's FCM URL only while its app first sends, then restores it."""
    before = messaging._MessagingService.FCM_URL
    yield
    after = messaging._MessagingService.FCM_URL
    messaging._MessagingService.FCM_URL = before
    assert after == before, "the FCM URL class constant leaked out of the adapter"


@pytest.fixture(scope="module")
def fcm_server() -> Iterator[FakeFCM]:
    # One server per module: stopping one waits out its 0.5 s poll interval.
    with FakeFCM() as server:
        assert isinstance(server, FakeFCM)
        yield server


@pytest.fixture
def fake(fcm_server: FakeFCM) -> FakeFCM:
    fcm_server.reset()
    fcm_server.register(PHONE, TABLET, LAPTOP)
    return fcm_server


@pytest.fixture
def service_account(fake: FakeFCM, tmp_path: Path) -> Path:
    return fake.service_account(tmp_path / "service-account.json")


@pytest.fixture
def make_adapter(fake: FakeFCM, service_account: Path) -> Iterator[MakeAdapter]:
    made: list[FirebaseChannel] = []

    def make(**overrides: object) -> FirebaseChannel:
        values: dict[str, object] = {
            "credentials": service_account,
            "fcm_base_url": fake.url,
            "timeout": 2,
            **overrides,
        }
        adapter = FirebaseChannel.from_settings(FirebaseSettings(**values))
        made.append(adapter)
        return adapter

    yield make
    for adapter in made:
        adapter.close()


@pytest.fixture
def adapter(make_adapter: MakeAdapter) -> FirebaseChannel:
    return make_adapter()


def push(*devices: str, **fields: object) -> OutgoingMessage:
    values: dict[str, object] = {
        "message_id": "msg-123",
        "channel": "push",
        "to": devices[0] if devices else "",
        "content": {"title": "Your cart misses you", "body": "3 items are waiting"},
        "metadata": {"journey": "abandoned-cart", "step": "reminder"},
        "devices": devices,
        **fields,
    }
    return OutgoingMessage(**values)  # type: ignore[arg-type]


# --- the happy path ----------------------------------------------------------


def test_the_sdk_gets_an_oauth_token_from_the_service_account_and_uses_it(
    fake: FakeFCM, adapter: FirebaseChannel
) -> None:
    receipt = adapter.send(push(PHONE))

    assert receipt.provider_message_id.startswith("projects/journeys-test/messages/")
    assert receipt.dead_devices == ()
    (grant,) = fake.token_requests
    assert grant.form()["grant_type"] == fcm.JWT_BEARER  # signature checked by the fake
    (send,) = fake.send_requests
    assert send.path == "/v1/projects/journeys-test/messages:send"
    issued = send.headers["authorization"].removeprefix("Bearer ")
    assert issued in fake.access_tokens
    assert len(fake.messages_to(PHONE)) == 1
    assert messaging._MessagingService.FCM_URL == GOOGLE_FCM_URL


def test_the_message_carries_notification_data_and_platform_overrides(
    fake: FakeFCM, adapter: FirebaseChannel
) -> None:
    message = push(
        PHONE,
        content={
            "title": "Back in stock",
            "body": "The blue mug is back",
            "image": "https://cdn.example.com/mug.png",
            "link": "https://shop.example.com/p/mug",
        },
        options={
            "analytics_label": "restock",
            "android": {"priority": "high", "click_action": "OPEN_PRODUCT", "channel_id": "promo"},
            "apns": {"badge": 1, "sound": "default", "headers": {"apns-priority": "10"}},
            "webpush": {"headers": {"Urgency": "high"}},
        },
    )
    adapter.send(message)

    (sent,) = fake.messages_to(PHONE)
    assert sent["token"] == PHONE
    assert sent["notification"] == {
        "title": "Back in stock",
        "body": "The blue mug is back",
        "image": "https://cdn.example.com/mug.png",
    }
    assert sent["data"] == {
        "msg_id": "msg-123",
        "link": "https://shop.example.com/p/mug",
        "journey": "abandoned-cart",
        "step": "reminder",
    }
    assert sent["android"] == {
        "priority": "high",
        "notification": {"click_action": "OPEN_PRODUCT", "channel_id": "promo"},
    }
    assert sent["apns"]["payload"]["aps"] == {"badge": 1, "sound": "default", "mutable-content": 1}
    assert sent["apns"]["fcm_options"] == {"image": "https://cdn.example.com/mug.png"}
    assert sent["apns"]["headers"] == {"apns-priority": "10"}
    assert sent["webpush"] == {
        "headers": {"Urgency": "high"},
        "fcm_options": {"link": "https://shop.example.com/p/mug"},
    }
    assert sent["fcm_options"] == {"analytics_label": "restock"}


def test_without_a_label_the_journey_id_is_used_fitted_to_fcm_pattern(
    fake: FakeFCM, adapter: FirebaseChannel
) -> None:
    adapter.send(push(PHONE, metadata={"journey": "Spring sale / 2025!", "step": "s1"}))

    (sent,) = fake.messages_to(PHONE)
    assert sent["fcm_options"] == {"analytics_label": "Spring_sale___2025_"}
    assert "webpush" not in sent and "apns" not in sent  # nothing to override


def test_an_app_deep_link_goes_in_data_not_in_the_https_only_web_link(
    fake: FakeFCM, adapter: FirebaseChannel
) -> None:
    adapter.send(push(PHONE, content={"title": "Hi", "body": "x", "link": "myshop://cart"}))

    (sent,) = fake.messages_to(PHONE)
    assert sent["data"]["link"] == "myshop://cart"
    assert "webpush" not in sent


def test_every_registered_device_gets_the_message_once(
    fake: FakeFCM, adapter: FirebaseChannel
) -> None:
    receipt = adapter.send(push(PHONE, TABLET, LAPTOP, PHONE))

    assert [len(fake.messages_to(t)) for t in (PHONE, TABLET, LAPTOP)] == [1, 1, 1]
    assert len(fake.send_requests) == 3
    assert len(fake.token_requests) == 1  # one OAuth token for the fan-out, not one each
    assert receipt.provider_message_id.startswith("projects/journeys-test/messages/")


def test_without_a_device_list_the_single_address_is_used(
    fake: FakeFCM, adapter: FirebaseChannel
) -> None:
    adapter.send(push(to=TABLET, devices=()))

    assert len(fake.messages_to(TABLET)) == 1


def test_a_contact_without_a_token_is_an_invalid_recipient(adapter: FirebaseChannel) -> None:
    with pytest.raises(PermanentChannelError) as caught:
        adapter.send(push(to="", devices=()))
    assert caught.value.reason == "invalid_recipient"


def test_dry_run_validates_without_delivering(fake: FakeFCM, make_adapter: MakeAdapter) -> None:
    adapter = make_adapter()
    adapter.dry_run = True

    receipt = adapter.send(push(PHONE))

    assert receipt.provider_message_id.endswith("/fake_message_id")
    assert fake.validated and not fake.delivered


# --- dead tokens -------------------------------------------------------------


def test_gone_devices_are_reported_while_the_others_receive_it(
    fake: FakeFCM, adapter: FirebaseChannel
) -> None:
    fake.unregister(TABLET)  # app uninstalled
    fake.fail_token(LAPTOP, fcm.sender_id_mismatch())
    malformed = "not a token!"

    receipt = adapter.send(push(PHONE, TABLET, LAPTOP, malformed))

    assert receipt.dead_devices == (TABLET, LAPTOP, malformed)
    assert receipt.provider_message_id.startswith("projects/journeys-test/messages/")
    assert len(fake.messages_to(PHONE)) == 1
    assert len(fake.send_requests) == 4  # no retries for dead tokens


def test_when_every_device_is_gone_the_send_fails_with_dead_token(
    fake: FakeFCM, adapter: FirebaseChannel
) -> None:
    fake.unregister(PHONE, TABLET)

    with pytest.raises(PermanentChannelError) as caught:
        adapter.send(push(PHONE, TABLET))

    assert caught.value.reason == "dead_token"
    assert caught.value.dead_devices == (PHONE, TABLET)
    assert caught.value.code == "UNREGISTERED"
    assert len(fake.send_requests) == 2


# --- refused messages ----------------------------------------------------------


def test_a_payload_over_4096_bytes_is_a_bad_payload(
    fake: FakeFCM, adapter: FirebaseChannel
) -> None:
    body = "x" * 5000

    with pytest.raises(PermanentChannelError) as caught:
        adapter.send(push(PHONE, TABLET, content={"title": "Big", "body": body}))

    assert caught.value.reason == "bad_payload"
    assert caught.value.code == "INVALID_ARGUMENT"
    assert caught.value.dead_devices == ()  # the tokens are fine: keep them
    assert len(fake.send_requests) == 2 and not fake.delivered


def test_an_unknown_platform_option_fails_before_anything_is_sent(
    fake: FakeFCM, adapter: FirebaseChannel
) -> None:
    with pytest.raises(PermanentChannelError) as caught:
        adapter.send(push(PHONE, options={"android": {"priorty": "high"}}))

    assert caught.value.reason == "bad_payload"
    assert "priorty" in str(caught.value)
    assert fake.requests == []


def test_an_option_the_sdk_rejects_is_a_bad_payload(
    fake: FakeFCM, adapter: FirebaseChannel
) -> None:
    with pytest.raises(PermanentChannelError) as caught:
        adapter.send(push(PHONE, options={"android": {"priority": "urgent"}}))

    assert caught.value.reason == "bad_payload"
    assert fake.send_requests == []


def test_third_party_auth_error_is_an_auth_failure_not_retried_by_us(
    fake: FakeFCM, adapter: FirebaseChannel
) -> None:
    fake.fail_token(PHONE, fcm.third_party_auth())

    with pytest.raises(PermanentChannelError) as caught:
        adapter.send(push(PHONE))

    assert caught.value.reason == "auth"
    assert caught.value.code == "THIRD_PARTY_AUTH_ERROR"
    # The SDK's OAuth session treats any 401 as an expired token: 2 refreshes, 3 sends.
    assert len(fake.send_requests) == 3
    assert len(fake.token_requests) == 3


def test_a_refused_service_account_key_is_an_auth_failure(
    fake: FakeFCM, adapter: FirebaseChannel
) -> None:
    fake.fail_next(Reply(400, {"error": "invalid_grant", "error_description": "Invalid JWT"}))

    with pytest.raises(PermanentChannelError) as caught:
        adapter.send(push(PHONE))

    assert caught.value.reason == "auth"
    assert fake.send_requests == []


def test_an_unreachable_oauth_endpoint_is_transient(
    fake: FakeFCM, service_account: Path, make_adapter: MakeAdapter
) -> None:
    info = json.loads(service_account.read_text())
    info["token_uri"] = "http://127.0.0.1:9/token"  # nothing listens on the discard port
    service_account.write_text(json.dumps(info))

    with pytest.raises(TransientChannelError, match="OAuth"):
        make_adapter().send(push(PHONE))

    assert fake.requests == []


def test_an_expired_access_token_is_renewed_and_the_message_sent_once(
    fake: FakeFCM, adapter: FirebaseChannel
) -> None:
    adapter.send(push(PHONE))
    fake.revoke_access_tokens()

    adapter.send(push(TABLET))

    assert len(fake.token_requests) == 2
    assert len(fake.messages_to(TABLET)) == 1


# --- transient failures and the SDK's own retries -----------------------------


@pytest.mark.parametrize(
    ("reply", "code"),
    [(fcm.quota_exceeded(retry_after=1), "QUOTA_EXCEEDED"), (fcm.unavailable(1), "UNAVAILABLE")],
)
def test_429_and_503_are_transient_after_the_sdk_retried_them_4_times(
    fake: FakeFCM, adapter: FirebaseChannel, reply: Reply, code: str
) -> None:
    """About 4 s each: the SDK sleeps Retry-After before each of its 4 retries."""
    fake.fail_sends(*[reply] * 5)
    started = time.monotonic()

    with pytest.raises(TransientChannelError) as caught:
        adapter.send(push(PHONE))

    assert caught.value.retry_after == 1.0
    assert caught.value.code == code
    assert len(fake.send_requests) == 5  # 1 + the SDK's 4; Temporal retries on top of that
    assert time.monotonic() - started >= 4
    assert not fake.delivered


def test_quota_exceeded_without_retry_after_comes_back_at_once(
    fake: FakeFCM, adapter: FirebaseChannel
) -> None:
    fake.fail_sends(fcm.quota_exceeded())

    with pytest.raises(TransientChannelError) as caught:
        adapter.send(push(PHONE))

    assert caught.value.retry_after is None
    assert len(fake.send_requests) == 1  # the SDK retries a 429 only when told when


def test_a_single_503_is_absorbed_by_the_sdk_and_delivered_once(
    fake: FakeFCM, adapter: FirebaseChannel
) -> None:
    fake.fail_sends(fcm.unavailable())

    receipt = adapter.send(push(PHONE))

    assert receipt.provider_message_id
    assert len(fake.send_requests) == 2
    assert len(fake.messages_to(PHONE)) == 1


def test_when_no_device_got_it_the_largest_retry_after_wins(
    fake: FakeFCM, adapter: FirebaseChannel
) -> None:
    # 502 is not in the SDK's retry list, so this one comes back at once.
    fake.fail_token(PHONE, fcm.fcm_error(502, "UNAVAILABLE", "bad gateway", retry_after=7))
    fake.fail_token(TABLET, fcm.fcm_error(502, "UNAVAILABLE", "bad gateway", retry_after=30))
    fake.unregister(LAPTOP)

    with pytest.raises(TransientChannelError) as caught:
        adapter.send(push(PHONE, TABLET, LAPTOP))

    assert caught.value.retry_after == 30.0


def test_devices_that_got_it_are_not_resent_when_others_failed_for_now(
    fake: FakeFCM, adapter: FirebaseChannel
) -> None:
    fake.fail_token(TABLET, fcm.quota_exceeded())

    receipt = adapter.send(push(PHONE, TABLET))

    assert receipt.dead_devices == ()
    assert len(fake.messages_to(PHONE)) == 1
    assert fake.messages_to(TABLET) == []


def test_a_reset_connection_is_transient_after_one_sdk_retry(
    fake: FakeFCM, adapter: FirebaseChannel
) -> None:
    adapter.send(push(PHONE))  # the OAuth token is fetched; only sends are reset now
    fake.fail_next(RESET, RESET)

    with pytest.raises(TransientChannelError):
        adapter.send(push(TABLET))

    assert len(fake.send_requests) == 3
    assert fake.messages_to(TABLET) == []


def test_a_slow_fcm_times_out_as_transient(fake: FakeFCM, make_adapter: MakeAdapter) -> None:
    adapter = make_adapter(timeout=0.3)
    adapter.send(push(PHONE))

    def slow(request: object) -> None:
        time.sleep(0.6)

    fake.faults = slow
    with pytest.raises(TransientChannelError):
        adapter.send(push(TABLET))


# --- concurrency and isolation ------------------------------------------------


def test_concurrent_sends_share_one_token_and_each_device_gets_one_message(
    fake: FakeFCM, adapter: FirebaseChannel
) -> None:
    tokens = [f"tok-concurrent-{i}" for i in range(16)]
    fake.register(*tokens)
    errors: list[BaseException] = []

    def send(token: str) -> None:
        try:
            adapter.send(push(token))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(t,)) for t in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert [len(fake.messages_to(t)) for t in tokens] == [1] * 16
    assert len(fake.token_requests) == 1


def test_two_adapters_send_to_their_own_fcm(
    fake: FakeFCM, make_adapter: MakeAdapter, tmp_path: Path
) -> None:
    with FakeFCM(project_id="second-project") as other:
        assert isinstance(other, FakeFCM)
        other.register(PHONE)
        first = make_adapter()
        second = make_adapter(
            credentials=other.service_account(tmp_path / "second.json"), fcm_base_url=other.url
        )
        second.send(push(PHONE))
        first.send(push(PHONE))

        assert len(other.messages_to(PHONE)) == 1
        assert len(fake.messages_to(PHONE)) == 1


# --- configuration --------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in (
        "GOOGLE_APPLICATION_CREDENTIALS",
        "JOURNEYS_FIREBASE_PROJECT_ID",
        "JOURNEYS_FCM_BASE_URL",
        "JOURNEYS_FIREBASE_TIMEOUT",
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_it_is_the_installed_firebase_adapter() -> None:
    assert adapter_class("firebase") is FirebaseChannel
    assert FirebaseChannel.serves == ("push",)


def test_it_is_configured_from_the_environment(
    fake: FakeFCM, service_account: Path, clean_env: pytest.MonkeyPatch
) -> None:
    info = json.loads(service_account.read_text())
    info["project_id"] = "somewhere-else"
    service_account.write_text(json.dumps(info))
    clean_env.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(service_account))
    clean_env.setenv("JOURNEYS_FIREBASE_PROJECT_ID", "journeys-test")
    clean_env.setenv("JOURNEYS_FCM_BASE_URL", fake.url)
    clean_env.setenv("JOURNEYS_FIREBASE_TIMEOUT", "3")

    adapter = FirebaseChannel.from_settings(object())
    try:
        adapter.send(push(PHONE))
    finally:
        adapter.close()

    assert adapter.project_id == "journeys-test" and adapter.timeout == 3
    assert len(fake.messages_to(PHONE)) == 1


def test_a_missing_credential_names_the_setting(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ChannelConfigError, match="GOOGLE_APPLICATION_CREDENTIALS"):
        FirebaseChannel.from_settings(object())


def test_an_unreadable_credential_file_names_the_path(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere.json"
    clean_env.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(missing))
    with pytest.raises(ChannelConfigError, match=r"nowhere\.json"):
        FirebaseChannel.from_settings(object())


def test_an_invalid_credential_file_says_why(tmp_path: Path) -> None:
    bad = tmp_path / "key.json"
    bad.write_text(json.dumps({"type": "authorized_user", "client_id": "x"}))
    with pytest.raises(ChannelConfigError) as caught:
        FirebaseChannel(bad)
    assert str(bad) in str(caught.value)
    assert "service_account" in str(caught.value)


def test_a_credential_without_project_names_the_project_setting(
    fake: FakeFCM, service_account: Path
) -> None:
    info = json.loads(service_account.read_text())
    del info["project_id"]
    service_account.write_text(json.dumps(info))
    with pytest.raises(ChannelConfigError, match="JOURNEYS_FIREBASE_PROJECT_ID"):
        FirebaseChannel(service_account)


def test_an_invalid_timeout_names_the_setting(
    service_account: Path, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(service_account))
    clean_env.setenv("JOURNEYS_FIREBASE_TIMEOUT", "soon")
    with pytest.raises(ChannelConfigError, match="JOURNEYS_FIREBASE_TIMEOUT"):
        FirebaseChannel.from_settings(object())


def test_without_firebase_admin_the_error_says_what_to_install(
    service_account: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "firebase_admin", None)
    with pytest.raises(
        ChannelConfigError, match=r"pip install 'journeys-orchestrator\[firebase\]'"
    ):
        FirebaseChannel(service_account)


# --- live ---------------------------------------------------------------------------


@pytest.mark.skipif(
    not (
        os.environ.get("JOURNEYS_LIVE_FIREBASE") == "1"
        and os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
        and os.environ.get("JOURNEYS_LIVE_PUSH_TOKEN")
    ),
    reason="live FCM test: set JOURNEYS_LIVE_FIREBASE=1, GOOGLE_APPLICATION_CREDENTIALS "
    "and JOURNEYS_LIVE_PUSH_TOKEN",
)
def test_live_fcm_accepts_the_message_in_a_dry_run() -> None:
    settings = FirebaseSettings()
    adapter = FirebaseChannel(
        settings.credentials, project_id=settings.project_id, timeout=10, dry_run=True
    )
    try:
        receipt = adapter.send(push(os.environ["JOURNEYS_LIVE_PUSH_TOKEN"]))
    finally:
        adapter.close()
    assert receipt.provider_message_id.startswith("projects/")
