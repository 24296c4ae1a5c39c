"""Who is signing in: the connecting address, unless it is a trusted proxy, whose X-Forwarded-For
names the client (only the part our proxies appended: the rest is the client's own say)."""

from __future__ import annotations

from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from gateway.sign_in_limits import client_address

PROXIES = ("10.0.0.2", "10.0.0.3")


def request(remote: str, forwarded: str | None = None):
    headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}
    req = make_mocked_request("POST", "/v1/devices", headers=headers)
    return req.clone(remote=remote)


def test_without_trusted_proxies_the_connecting_address_is_the_client():
    assert client_address(request("198.51.100.4", "1.2.3.4"), ()) == "198.51.100.4"
    assert client_address(request("198.51.100.4", "1.2.3.4"), PROXIES) == "198.51.100.4"


def test_behind_trusted_proxies_the_last_address_they_did_not_add_is_the_client():
    assert client_address(request("10.0.0.2", "203.0.113.9"), PROXIES) == "203.0.113.9"
    # The client wrote "6.6.6.6" itself; our two proxies appended the rest.
    assert client_address(request("10.0.0.2", "6.6.6.6, 203.0.113.9, 10.0.0.3"), PROXIES) == "203.0.113.9"
    assert client_address(request("10.0.0.2", ""), PROXIES) == "10.0.0.2"
    assert client_address(request("10.0.0.2"), PROXIES) == "10.0.0.2"


def test_every_forwarded_line_counts_as_one_list_so_a_forged_first_line_is_not_believed():
    # A proxy that adds its own X-Forwarded-For line (HAProxy's option forwardfor) rather than
    # appending to the client's: the client's forged line comes first, the proxy's last.
    headers = CIMultiDict([("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "203.0.113.9")])
    req = make_mocked_request("POST", "/v1/devices", headers=headers).clone(remote="10.0.0.2")
    assert client_address(req, PROXIES) == "203.0.113.9"


def test_addresses_are_compared_in_their_canonical_spelling():
    assert client_address(request("::1", "203.0.113.9"), ("0:0:0:0:0:0:0:1",)) == "203.0.113.9"
    assert client_address(request("10.0.0.2", "2001:DB8::7, 10.0.0.3"), PROXIES) == "2001:db8::7"
