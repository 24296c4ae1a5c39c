"""What the hot USSD hops ask PostgreSQL, driven through ``POST /ussd`` as Africa's Talking sends it:
a session's first hop (one read) and a balance check with the right PIN (a keyed check value) are a
few lone statements, none of them in a transaction (`db.engine.autocommit`) and none taking a lock;
menu hops ask nothing. The outbox worker's own statements, which run beside them, are left out."""

from __future__ import annotations

from tests.statements import statements
from tests.ussd.ussd_world import PIN, customer


def _hops(seen: list[tuple[str, str | None]]) -> list[tuple[str, str | None]]:
    return [(sql, level) for sql, level in seen if "outbox_jobs" not in sql]


async def test_a_first_hop_and_a_balance_check_are_lone_statements(gw, phone_for):
    payer = await customer(gw, funds=1200)
    phone = phone_for(payer.phone)
    with statements(gw.engine) as seen:
        await phone.dial()
    # Who is calling, with their saved contacts for the send screen: one read.
    assert [level for _, level in _hops(seen)] == ["AUTOCOMMIT"]
    with statements(gw.engine) as seen:
        await phone.type("6")
        await phone.type("1")
    assert _hops(seen) == []  # menus come from the session store alone
    with statements(gw.engine) as seen:
        await phone.type(PIN)
    assert phone.ended and "1,200" in phone.screen
    hops = _hops(seen)
    # The user's row with the PIN's check value (compared there and then: no second read), the
    # balance, and how the session ended.
    assert [level for _, level in hops] == ["AUTOCOMMIT"] * 3, hops
    assert "pin_check" in hops[0][0]
    assert not any("FOR UPDATE" in sql or "UPDATE users" in sql for sql, _ in hops)
