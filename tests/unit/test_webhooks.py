"""Webhook URLs as endpoints accept them, and deliveries' signatures as receivers check them."""

from __future__ import annotations

import pytest

from payments.providers.wave_signing import signature_header
from payments.webhook_delivery import OUR_SIDE, WebhookRejected, event_body, public_error, verify_delivery
from payments.webhook_endpoints import InvalidWebhookUrl, check_url

SECRET = "whsec_" + "k" * 43


@pytest.mark.parametrize("url", [
    "https://shop.example.com/hooks/sauti",
    "https://shop.example.com:8443/hooks?tenant=7",
    "  https://203.0.113.9.nip.io/x  ",  # a name: resolved only when sending
    "https://8.8.8.8/hooks",
])
def test_public_https_urls_are_taken_trimmed(url):
    assert check_url(url, allow_local=False) == url.strip()


@pytest.mark.parametrize(("url", "why"), [
    ("http://shop.example.com/hooks", "uses https"),
    ("https://localhost/hooks", "local or private"),
    ("https://api.localhost/hooks", "local or private"),
    ("https://127.0.0.1:8080/hooks", "local or private"),
    ("https://10.0.0.7/hooks", "local or private"),
    ("https://192.168.1.20/hooks", "local or private"),
    ("https://[::1]/hooks", "local or private"),
    ("https://[fd00::1]/hooks", "local or private"),
    ("https://169.254.169.254/latest/meta-data", "local or private"),
    ("https://0.0.0.0/hooks", "local or private"),
    ("https://[::ffff:127.0.0.1]/hooks", "local or private"),
    ("https://2130706433/hooks", "local or private"),  # 127.0.0.1, as resolvers read it
    ("https://127.1/hooks", "local or private"),
    ("https://0x7f.1/hooks", "local or private"),
    ("https://user:secret@shop.example.com/hooks", "user:password"),
    ("https://shop.example.com/hooks#top", "fragment"),
    ("https://shop.example.com:70000/hooks", "not a URL"),
    ("https://[::1/hooks", "not a URL"),
    ("ftp://shop.example.com/hooks", "starts with https"),
    ("javascript:alert(1)", "starts with https"),
    ("shop.example.com/hooks", "starts with https"),
    ("https://shop.example.com/a b", "absolute"),
    ("https://shop.example.com/\x00", "absolute"),
    ("https://shop.example.com/" + "x" * 2000, "absolute"),
    ("", "absolute"),
    (None, "absolute"),
    (17, "absolute"),
])
def test_other_urls_are_refused_saying_why(url, why):
    with pytest.raises(InvalidWebhookUrl, match=why):
        check_url(url, allow_local=False)


def test_tests_and_demos_may_use_http_and_local_addresses():
    assert check_url("http://127.0.0.1:9000/hooks", allow_local=True) == "http://127.0.0.1:9000/hooks"
    with pytest.raises(InvalidWebhookUrl):
        check_url("http://user:pw@127.0.0.1/hooks", allow_local=True)


def test_a_delivery_verifies_only_with_its_secret_its_body_and_a_recent_time():
    event = {"id": "evt_1", "type": "payment.succeeded", "data": {"payment": {"amount": "10.00", "note": "Aïda"}}}
    body = event_body(event)
    assert body == event_body(dict(event))  # the same bytes at every try
    header = signature_header([SECRET], 1_800_000_000, body)

    assert verify_delivery(body, header, SECRET, now=lambda: 1_800_000_100) == event
    for raw, sig, secret, now in ((body + b" ", header, SECRET, 1_800_000_000),  # body changed
                                  (body, header, "whsec_" + "j" * 43, 1_800_000_000),  # another secret
                                  (body, header, SECRET, 1_800_000_301),  # too old: a replay
                                  (body, None, SECRET, 1_800_000_000),
                                  (body, "t=1800000000", SECRET, 1_800_000_000)):
        with pytest.raises(WebhookRejected):
            verify_delivery(raw, sig, secret, now=lambda now=now: now)


def test_an_endpoint_s_owner_reads_why_a_try_failed_never_where_in_our_code():
    assert public_error(None) is None
    assert public_error("payments.webhook_delivery.DeliveryFailed: the endpoint answered HTTP 502: 'bad gateway' "
                        "(at /srv/sauti/payments/webhook_delivery.py:139 in deliver)") == \
        "the endpoint answered HTTP 502: 'bad gateway'"
    assert public_error("payments.outbox.PermanentJobError: the endpoint's URL is refused now: 10.0.0.7 is a local "
                        "or private address (at /srv/payments/webhook_delivery.py:128 in deliver)") == \
        "the endpoint's URL is refused now: 10.0.0.7 is a local or private address"
    for ours in ("sqlalchemy.exc.OperationalError: could not connect to 10.1.2.3:5432 (at /srv/x.py:9 in run)",
                 "the lease of worker gw-3:4121:9f2a ran out", "", "DeliveryFailed: spoofed"):
        assert public_error(ours) == OUR_SIDE
