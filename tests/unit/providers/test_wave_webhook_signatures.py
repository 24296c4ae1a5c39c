"""Verifying Wave webhooks: signatures over the raw body, rotated secrets, the five-minute window,
tampering, the shared-secret strategy, and the event envelope."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payments.providers.wave_signing import (
    InvalidSignatureHeader,
    compute_signature,
    parse_signature_header,
    signature_header,
)
from payments.providers.wave_webhooks import (
    MalformedWebhook,
    SharedSecret,
    SigningSecret,
    WebhookRejected,
    parse_event,
    verify_shared_secret,
    verify_signature,
    verify_webhook,
)

SECRET = "wave_sn_WHS_xz4m6g8rjs9bshxy05xkfn2qcs"
NOW = 1_639_081_943
BODY = json.dumps(
    {"id": "EV_QvEZuDSQbLdI", "type": "merchant.payment_received", "data": {"amount": "100", "currency": "XOF"}}
).encode()


def at(moment: float):
    return lambda: moment


def wave_header(secrets: list[str], timestamp: int = NOW, body: bytes = BODY) -> str:
    # Computed here by hand, independently of the code under test.
    parts = [f"t={timestamp}"]
    for secret in secrets:
        parts.append("v1=" + hmac.new(secret.encode(), f"{timestamp}".encode() + body, hashlib.sha256).hexdigest())
    return ",".join(parts)


def test_a_valid_signature_passes():
    verify_signature(BODY, wave_header([SECRET]), [SECRET], now=at(NOW))


def test_the_signing_helpers_agree_with_a_hand_computation():
    assert signature_header([SECRET], NOW, BODY) == wave_header([SECRET])
    assert (
        compute_signature(SECRET, NOW, b"") == hmac.new(SECRET.encode(), str(NOW).encode(), hashlib.sha256).hexdigest()
    )


def test_any_v1_may_match_during_a_rotation():
    header = wave_header(["old-secret", SECRET])
    verify_signature(BODY, header, [SECRET], now=at(NOW))
    verify_signature(BODY, header, ["old-secret"], now=at(NOW))
    verify_signature(BODY, wave_header([SECRET]), ["newer-secret", SECRET], now=at(NOW))


def test_no_matching_secret_is_rejected():
    with pytest.raises(WebhookRejected, match="no signature matches"):
        verify_signature(BODY, wave_header(["someone-else"]), [SECRET], now=at(NOW))


@pytest.mark.parametrize("skew", [301, -301, 3600])
def test_timestamps_outside_five_minutes_are_rejected(skew):
    with pytest.raises(WebhookRejected, match="window"):
        verify_signature(BODY, wave_header([SECRET]), [SECRET], now=at(NOW + skew))


@pytest.mark.parametrize("skew", [0, 299, -299])
def test_timestamps_inside_the_window_pass(skew):
    verify_signature(BODY, wave_header([SECRET]), [SECRET], now=at(NOW + skew))


@pytest.mark.parametrize(
    "tampered",
    [BODY.replace(b'"100"', b'"900"'), BODY + b" ", json.dumps(json.loads(BODY), indent=2).encode(), b""],
)
def test_any_change_to_the_raw_body_is_rejected(tampered):
    with pytest.raises(WebhookRejected):
        verify_signature(tampered, wave_header([SECRET]), [SECRET], now=at(NOW))


def test_a_replayed_signature_with_a_new_timestamp_is_rejected():
    original = wave_header([SECRET])
    forged = original.replace(f"t={NOW}", f"t={NOW + 1000}")
    with pytest.raises(WebhookRejected):
        verify_signature(BODY, forged, [SECRET], now=at(NOW + 1000))


@pytest.mark.parametrize("header", [None, "", "garbage", "t=abc,v1=00", "v1=00", f"t={NOW}", f"t={NOW},t={NOW},v1=00",
                                    # No timestamps: int() refuses 4,300 digits; 400 overflow the arithmetic.
                                    "t=" + "9" * 5000 + ",v1=00", "t=" + "9" * 400 + ",v1=00"])
def test_missing_or_unreadable_headers_are_rejected(header):
    with pytest.raises(WebhookRejected):
        verify_signature(BODY, header, [SECRET], now=at(NOW))


def test_header_parsing():
    parsed = parse_signature_header(f"t={NOW}, v1=aa, v0=ignored, v1=bb")
    assert (parsed.timestamp, parsed.signatures) == (NOW, ("aa", "bb"))
    with pytest.raises(InvalidSignatureHeader):
        parse_signature_header("t=１２３,v1=aa")  # non-ASCII digits


@given(st.text(max_size=80))
def test_header_parsing_never_fails_other_than_invalid_header(header):
    try:
        parse_signature_header(header)
    except InvalidSignatureHeader:
        pass


def test_event_data_nested_too_deeply_to_clean_is_malformed():
    nested = '{"id": "EV_1", "type": "checkout.session.completed", "data": ' + '{"a": ' * 900 + "1" + "}" * 901
    with pytest.raises(MalformedWebhook):
        parse_event(nested.encode())


def test_verify_webhook_with_the_signing_strategy_parses_the_event():
    headers = {"wave-signature": wave_header([SECRET]), "Content-Type": "application/json"}
    event = verify_webhook(BODY, headers, SigningSecret((SECRET,)), now=at(NOW))
    assert (event.id, event.type, event.data["amount"]) == ("EV_QvEZuDSQbLdI", "merchant.payment_received", "100")


def test_the_shared_secret_strategy():
    verify_shared_secret("Bearer wave_sn_WHS_shared", "wave_sn_WHS_shared")
    event = verify_webhook(BODY, {"Authorization": "Bearer wave_sn_WHS_shared"}, SharedSecret("wave_sn_WHS_shared"))
    assert event.id == "EV_QvEZuDSQbLdI"
    for wrong in (None, "", "Bearer other", "Basic wave_sn_WHS_shared", "wave_sn_WHS_shared"):
        with pytest.raises(WebhookRejected):
            verify_shared_secret(wrong, "wave_sn_WHS_shared")


def test_a_signed_but_malformed_envelope_is_malformed_not_rejected():
    for body in (
        b"[]",
        b"{}",
        b'{"id": "EV_1", "type": "x", "data": []}',
        b'{"id": "", "type": "x", "data": {}}',
        b"\xff",
    ):
        with pytest.raises(MalformedWebhook):
            verify_webhook(
                body, {"Wave-Signature": wave_header([SECRET], body=body)}, SigningSecret((SECRET,)), now=at(NOW)
            )


def test_checkout_events_hold_a_session():
    data = {
        "id": "cos-18qq25rgr100a",
        "amount": "1000",
        "checkout_status": "complete",
        "client_reference": "1f31dfd7-aec8-4adf-84ff-4a9c1981be2a",
        "currency": "XOF",
        "error_url": "https://example.com/error",
        "last_payment_error": None,
        "business_name": "Annie's Apples",
        "payment_status": "succeeded",
        "success_url": "https://example.com/success",
        "wave_launch_url": "https://pay.wave.com/c/cos-18qq25rgr100a",
        "when_completed": "2021-12-08T10:15:32Z",
        "when_created": "2021-12-08T10:13:04Z",
        "when_expires": "2021-12-09T10:13:04Z",
        "transaction_id": "TCN7G3Z5E3Y6P4F2",
    }
    event = parse_event(json.dumps({"id": "EV_1", "type": "checkout.session.completed", "data": data}))
    session = event.checkout_session()
    assert session.succeeded and session.transaction_id == "TCN7G3Z5E3Y6P4F2"
    assert session.when_completed.isoformat() == "2021-12-08T10:15:32+00:00"
    with pytest.raises(MalformedWebhook):
        parse_event(
            json.dumps({"id": "EV_2", "type": "checkout.session.completed", "data": {"id": "cos-1"}})
        ).checkout_session()
    with pytest.raises(MalformedWebhook):
        parse_event(json.dumps({"id": "EV_3", "type": "test.test_event", "data": {}})).checkout_session()


def test_strategies_refuse_empty_secrets():
    with pytest.raises(ValueError):
        SigningSecret(())
    with pytest.raises(ValueError):
        SigningSecret(("",))
    with pytest.raises(ValueError):
        SharedSecret("")
