"""The JSON payments API and `sauti reconcile` as operators and merchants meet them: the gateway
`sauti serve` builds (its own orchestrator, worker and in-process sandboxes) on a real TCP port, an
API key made by `sauti apikey create`, a payout made and read back over HTTP, then the day
reconciled by `sauti reconcile` in another process, against the same sandboxes' books."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from payments.money import Currency, Money
from payments.sandbox.runner import free_port_base
from payments.states import PaymentStatus
from payments.webhook_delivery import SIGNATURE_HEADER, WebhookRejected, verify_delivery
from tests.e2e.gateway_payments_world import SECRET, Gateway, free_port, gateway_settings, running_gateway, wait_for
from tests.http_servers import serve_app

KES = Currency.KES
ROOT = Path(__file__).resolve().parents[2]
PEPPER = "e2e-api-pepper"


@pytest.fixture(scope="module")
async def gw(new_database) -> AsyncIterator[Gateway]:
    settings = gateway_settings(await new_database(), free_port(), api={"key_pepper": PEPPER},
                                providers={"sandbox": {"port_base": free_port_base()}},
                                webhooks={"allow_local_urls": True})  # the merchant's server is on this machine
    async with running_gateway(settings) as gateway:
        yield gateway


async def sauti(gw: Gateway, *args: str) -> tuple[int, str, str]:
    """The `sauti` command against the running gateway's database and sandboxes. Run without
    blocking: the sandboxes it talks to answer from this test's own event loop."""
    urls = gw.runtime.sandbox_urls
    assert urls is not None
    env = {**os.environ, "DATABASE_URL": gw.engine.url.render_as_string(hide_password=False),
           "SAUTI_API_KEY_PEPPER": PEPPER, "SAUTI__PROVIDERS__MODE": "sandbox",
           "SAUTI__PROVIDERS__SANDBOX__PORT_BASE": urls.daraja.rsplit(":", 1)[1],
           "SAUTI__PAYMENTS__CALLBACK_SECRET": SECRET, "SAUTI__WEBHOOKS__ALLOW_LOCAL_URLS": "true"}
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway.cli", *args, cwd=ROOT, env=env,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    return process.returncode, out.decode(), err.decode()


async def test_a_merchant_pays_out_through_the_api_and_the_day_reconciles(gw: Gateway):
    start = datetime.now(UTC)
    customer = await gw.user()
    await gw.fund(customer, Money.of(2000, KES))
    code, out, err = await sauti(gw, "apikey", "create", "--name", "e2e shop", "--user", customer.phone)
    assert code == 0, err
    key = out.strip().splitlines()[-1]
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "payout-1"}

    status, created = await gw.post("/v1/payments", json.dumps({"kind": "withdraw", "amount": "500",
                                                                 "currency": "KES"}), headers)
    assert status == 201 and created["status"] == "pending", created
    done = await wait_for(gw, created["public_id"])
    assert done.status is PaymentStatus.SUCCEEDED
    async with aiohttp.ClientSession() as http, http.get(f"{gw.url}/v1/payments/{created['public_id']}",
                                                          headers={"Authorization": f"Bearer {key}"}) as resp:
        read = await resp.json()
    assert resp.status == 200 and read["status"] == "succeeded" and read["provider"]["receipt"]
    status, replay = await gw.post("/v1/payments", json.dumps({"kind": "withdraw", "amount": "500",
                                                                "currency": "KES"}), headers)
    assert status == 200 and replay["public_id"] == created["public_id"]
    assert await gw.wallet(customer) == Money.of(2000 - 505, KES)

    end = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    code, out, err = await sauti(gw, "reconcile", "--from", start.isoformat(), "--to", end, "--json")

    assert code == 0, out + err
    answer = json.loads(out)
    assert answer["ok"] and [m["public_id"] for m in answer["matched"]] == [created["public_id"]]
    assert len(answer["sources"]) == 2  # M-Pesa (the sandbox's books) and Wave (its API)
    await gw.assert_ledger_ok()


async def test_a_merchant_s_webhook_added_with_sauti_hears_of_a_payment_to_it(gw: Gateway):
    """`sauti webhook add` for the merchant's key, a customer's app paying the merchant through the
    API, the gateway's own worker delivering `payment.received`, signed, to the merchant's server;
    then `sauti webhook deliveries`, `test`, `list` and `disable` as an operator types them."""
    merchant, customer = await gw.user(name="Duka"), await gw.user(name="Wanjiru")
    await gw.fund(customer, Money.of(1000, KES))
    heard: list[tuple[bytes, str | None]] = []
    arrived = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        heard.append((await request.read(), request.headers.get(SIGNATURE_HEADER)))
        arrived.set()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/sauti-events", hook)
    async with serve_app(app) as base:
        url = f"{base}/sauti-events"
        code, out, err = await sauti(gw, "apikey", "create", "--name", "duka", "--user", merchant.phone)
        assert code == 0, err
        merchant_prefix = out.splitlines()[0].split()[2]
        code, out, err = await sauti(gw, "webhook", "add", merchant_prefix, url)
        assert code == 0, err
        endpoint, secret = out.split()[2], out.strip().splitlines()[-1]
        assert endpoint.startswith("we_") and secret.startswith("whsec_") and "shown only this once" in err
        code, out, _ = await sauti(gw, "apikey", "create", "--name", "wanjiru's app", "--user", customer.phone)
        customer_key = out.strip().splitlines()[-1]

        status, paid = await gw.post("/v1/payments", json.dumps({"kind": "p2p", "recipient": merchant.phone,
                                                                  "amount": "250", "currency": "KES"}),
                                     {"Authorization": f"Bearer {customer_key}", "Idempotency-Key": "lunch"})
        assert status == 201 and paid["status"] == "succeeded"
        await asyncio.wait_for(arrived.wait(), timeout=15)

        [(body, signature)] = heard
        event = verify_delivery(body, signature, secret)
        assert event["type"] == "payment.received" and event["data"]["payment"]["public_id"] == paid["public_id"]
        assert event["data"]["payment"]["amount"] == "250.00" and event["data"]["payment"]["payer"] == customer.phone
        code, out, err = await sauti(gw, "webhook", "deliveries", "--endpoint", endpoint)
        assert code == 0 and "payment.received" in out and paid["public_id"] in out and " done " in out, out + err
        code, out, err = await sauti(gw, "webhook", "test", endpoint)
        assert code == 0 and "test event evt_" in out, out + err
        await wait_until(lambda: len(heard) == 2)
        assert verify_delivery(*heard[1], secret)["type"] == "webhook.test"
        # The merchant's secret leaked: a new one, the old one signing beside it for an hour.
        code, out, err = await sauti(gw, "webhook", "roll", endpoint, "--keep-previous-hours", "1")
        assert code == 0 and "the one before signs until" in out and "shown only this once" in err, out + err
        rolled = out.strip().splitlines()[-1]
        assert rolled.startswith("whsec_") and rolled != secret
        code, out, _ = await sauti(gw, "webhook", "test", endpoint)
        await wait_until(lambda: len(heard) == 3)
        for either in (rolled, secret):
            assert verify_delivery(*heard[2], either)["type"] == "webhook.test"
        code, out, err = await sauti(gw, "webhook", "roll", endpoint, "--keep-previous-hours", "0")
        assert code == 0 and "the one before signs no longer" in out, out + err
        newest = out.strip().splitlines()[-1]
        code, out, _ = await sauti(gw, "webhook", "test", endpoint)
        await wait_until(lambda: len(heard) == 4)
        verify_delivery(*heard[3], newest)
        for stale in (secret, rolled):
            with pytest.raises(WebhookRejected):
                verify_delivery(*heard[3], stale)
        for hours in ("200", "-1", "nan", "inf", "a day"):
            code, _, err = await sauti(gw, "webhook", "roll", endpoint, "--keep-previous-hours", hours)
            assert code == 2 and "--keep-previous-hours" in err and "Traceback" not in err, (hours, err)
        code, out, _ = await sauti(gw, "webhook", "list", "--key", merchant_prefix)
        assert endpoint in out and "active" in out and url in out
        code, out, _ = await sauti(gw, "webhook", "disable", endpoint)
        assert code == 0 and "disabled" in out
        code, _, err = await sauti(gw, "webhook", "test", endpoint)
        assert code != 0 and "is disabled" in err
        code, out, err = await sauti(gw, "webhook", "add", merchant_prefix, "ftp://example.com")
        assert code != 0 and "https" in err and "Traceback" not in err


async def wait_until(condition, within_s: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "not within the time"
        await asyncio.sleep(0.05)


async def test_an_operator_key_from_sauti_reads_a_payment_and_signs_in_to_the_dashboard(gw: Gateway):
    """`sauti apikey create --operator` as an operator types it, then the running gateway's operator
    API and dashboard (mounted by the app factory, templates and all) with that key."""
    payer, payee = await gw.user(), await gw.user()
    await gw.fund(payer, Money.of(500, KES))
    code, out, err = await sauti(gw, "apikey", "create", "--name", "Njeri (support)", "--operator")
    assert code == 0, err
    assert "operator key" in out
    key = out.strip().splitlines()[-1]
    code, _, err = await sauti(gw, "apikey", "create", "--name", "x", "--operator", "--user", payer.phone)
    assert code != 0 and "not both" in err
    code, out, _ = await sauti(gw, "apikey", "list", "--active")
    assert any("operator" in line and "Njeri (support)" in line for line in out.splitlines())

    code, out, _ = await sauti(gw, "apikey", "create", "--name", "wallet app", "--user", payer.phone)
    app_key = out.strip().splitlines()[-1]
    status, paid = await gw.post("/v1/payments", json.dumps({"kind": "p2p", "recipient": payee.phone, "amount": "50",
                                                             "currency": "KES"}),
                                 {"Authorization": f"Bearer {app_key}", "Idempotency-Key": "ops-e2e"})
    assert status == 201, paid
    # unsafe: keep cookies from an IP address (the gateway's 127.0.0.1), as browsers do.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(f"{gw.url}/v1/ops/payments/{paid['reference']}",
                            headers={"Authorization": f"Bearer {key}"}) as resp:
            record = await resp.json()
        assert resp.status == 200 and record["public_id"] == paid["public_id"] and record["transfers"]
        async with http.get(f"{gw.url}/v1/payments/{paid['public_id']}",
                            headers={"Authorization": f"Bearer {key}"}) as resp:
            assert resp.status == 403  # an operator's key is not an app's
        async with http.get(f"{gw.url}/ops/sign-in") as resp:
            token = re.search(r'name="sign_in_token" value="([^"]+)"', await resp.text()).group(1)
        async with http.post(f"{gw.url}/ops/sign-in", data={"key": key, "sign_in_token": token}) as resp:
            page = await resp.text()
        assert resp.status == 200 and paid["reference"] in page and "Njeri (support)" in page
        async with http.get(f"{gw.url}/ops/suspense") as resp:
            assert resp.status == 200 and "Nothing waits." in await resp.text()
        async with http.get(f"{gw.url}/v1/ops/suspense", headers={"Authorization": f"Bearer {key}"}) as resp:
            assert resp.status == 200 and (await resp.json())["open"] == {"count": 0, "total": None}

    code, out, err = await sauti(gw, "apikey", "create", "--name", "Baraka (help desk)", "--support")
    assert code == 0 and "support key" in out, err
    support = out.strip().splitlines()[-1]
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{gw.url}/v1/ops/payments/{paid['public_id']}",
                            headers={"Authorization": f"Bearer {support}"}) as resp:
            assert resp.status == 200
        async with http.post(f"{gw.url}/v1/ops/payments/{paid['public_id']}/refund", json={"reason": "x"},
                             headers={"Authorization": f"Bearer {support}"}) as resp:
            assert resp.status == 403 and (await resp.json())["error"]["code"] == "read_only_key"
    code, out, _ = await sauti(gw, "apikey", "list", "--active")
    assert any("support" in line and "Baraka (help desk)" in line for line in out.splitlines())
