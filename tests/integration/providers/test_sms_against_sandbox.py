"""SMS through the official africastalking SDK (in a worker thread) into the local AT sandbox."""

from __future__ import annotations

import asyncio

import pytest

from payments.providers.errors import ProviderTimeout, ProviderUnavailable
from payments.providers.sms import InvalidRecipient, SmsError, SmsSender, SmsSettings


async def messages_to(http, sandboxes, number: str) -> list[dict]:
    async with http.get(f"{sandboxes.urls.africastalking}/_sandbox/messages", params={"to": number}) as resp:
        return (await resp.json())["messages"]


async def test_a_message_reaches_every_recipient_and_is_recorded(sms, http, sandboxes):
    receipt = await sms.send("Umepokea KES 1,500 kutoka kwa Mama.", ["+254712345678", "+221771234567"])
    assert receipt.all_accepted
    assert [r.number for r in receipt.recipients] == ["+254712345678", "+221771234567"]
    assert all(r.status_code == 101 and r.message_id for r in receipt.recipients)
    assert receipt.summary.startswith("Sent to 2/2")

    [recorded] = await messages_to(http, sandboxes, "+221771234567")
    assert recorded["message"] == "Umepokea KES 1,500 kutoka kwa Mama."
    assert recorded["from"] == "SAUTI"
    assert recorded["messageId"] == receipt.recipients[1].message_id


@pytest.mark.parametrize(("suffix", "code"), [("001", 405), ("003", 406), ("037", 407)])
async def test_per_recipient_failures_come_back_as_status_codes(sms, suffix, code):
    receipt = await sms.send("Hello", ["+254712345678", f"+254712345{suffix}"])
    ok, refused = receipt.recipients
    assert ok.accepted
    assert refused.status_code == code and not refused.accepted and refused.message_id is None
    assert not receipt.all_accepted


async def test_a_server_error_raises_sms_error(sms):
    with pytest.raises(SmsError):
        await sms.send("Hello", ["+254712345500"])


async def test_a_wrong_api_key_raises_sms_error(sandboxes):
    wrong = SmsSender(SmsSettings(username="sandbox", api_key="wrong", base_url=sandboxes.urls.africastalking))
    with pytest.raises(SmsError, match="authentication"):
        await wrong.send("Hello", ["+254712345678"])


async def test_a_slow_answer_times_out(sandboxes):
    impatient = SmsSender(
        SmsSettings(
            username=sandboxes.settings.at_username,
            api_key=sandboxes.settings.at_api_key,
            base_url=sandboxes.urls.africastalking,
            read_timeout_s=0.3,
        )
    )
    with pytest.raises(ProviderTimeout):
        await impatient.send("Hello", ["+254712345904"])


@pytest.mark.parametrize("recipients", [["0712345678"], ["254712345678"], [], "+254712345678"])
async def test_recipients_must_be_e164_before_anything_is_sent(sms, http, sandboxes, recipients):
    count = len(sandboxes.africastalking.messages)
    with pytest.raises(InvalidRecipient):
        await sms.send("Hello", recipients)
    assert len(sandboxes.africastalking.messages) == count


async def test_sends_reuse_one_kept_alive_connection(sandboxes):
    # The SDK alone opens a connection (with Africa's Talking, a TLS handshake) for every SMS. One
    # thread here, so that every send goes through the same thread's session.
    sender = SmsSender(SmsSettings(username=sandboxes.settings.at_username, api_key=sandboxes.settings.at_api_key,
                                   base_url=sandboxes.urls.africastalking), threads=1)
    for n in range(3):
        receipt = await sender.send(f"Receipt {n}", ["+254712345678"])
        assert receipt.all_accepted
    assert sender.connections_opened == 1
    sender.close()


async def test_sends_run_on_the_senders_own_threads_many_at_once(sandboxes):
    # asyncio's default executor has the cores plus four threads: receipts waiting on a slow
    # Africa's Talking queued behind them. Here 12 slow sends (the ...904 suffix answers late)
    # overlap on 12 threads.
    sender = SmsSender(SmsSettings(username=sandboxes.settings.at_username, api_key=sandboxes.settings.at_api_key,
                                   base_url=sandboxes.urls.africastalking), threads=12)
    slow = sandboxes.settings.slow_answer_s
    started = asyncio.get_running_loop().time()
    receipts = await asyncio.gather(*(sender.send("Slow", [f"+25471234{n:01d}904"]) for n in range(12)))
    took = asyncio.get_running_loop().time() - started
    assert all(r.all_accepted for r in receipts)
    assert took < 2 * slow  # one after another, or six at a time, would take 12 or 2 slow answers
    assert sender.connections_opened == 12
    sender.close()


async def test_a_closed_sender_refuses_to_send(sms, sandboxes):
    sms.close()
    count = len(sandboxes.africastalking.messages)
    with pytest.raises(ProviderUnavailable, match="closed"):
        await sms.send("Too late", ["+254712345678"])
    assert len(sandboxes.africastalking.messages) == count


def _sender(sandboxes) -> SmsSender:
    return SmsSender(SmsSettings(username=sandboxes.settings.at_username, api_key=sandboxes.settings.at_api_key,
                                 base_url=sandboxes.urls.africastalking, connect_timeout_s=2), threads=1)


async def test_the_environments_proxy_is_used(sandboxes, monkeypatch):
    # Read once per connection's session, not per request, but still read: a proxy that refuses
    # connections (port 9, discard) makes the send fail.
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    sender = _sender(sandboxes)
    with pytest.raises(ProviderUnavailable):
        await sender.send("Through the proxy", ["+254712345678"])
    sender.close()


async def test_no_proxy_lets_africas_talking_be_reached_directly(sandboxes, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    sender = _sender(sandboxes)
    assert (await sender.send("Straight there", ["+254712345678"])).all_accepted
    sender.close()
