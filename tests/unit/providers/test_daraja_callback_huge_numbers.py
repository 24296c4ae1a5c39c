"""Daraja callbacks holding numbers no Daraja field can hold (``1e5000``, ``1e1000000``, a code of 5,000
digits): each is refused as a `MalformedCallback` (the routes' 400), at once. Read as Decimal, such a
number once became an int str() refuses (a 500 at the route, or when the delivery was recorded), or
one that took seconds of the event loop to build."""

from __future__ import annotations

import json

import pytest

from payments.providers.daraja_callbacks import (
    MalformedCallback,
    parse_c2b_payment,
    parse_queue_timeout,
    parse_result,
    parse_stk_callback,
)

HUGE = "1e5000"  # an int of it has 5,001 digits: over Python's 4,300-digit str() limit
VAST = "1e1000000"  # an int of it takes seconds to build


def literal_numbers(body: dict, numbers: dict[str, str]) -> bytes:
    """`body` as JSON, each ``"#name"`` string replaced by the JSON number ``numbers[name]`` as written:
    no Python value encodes as 1e5000 (a float overflows to inf, an int dumps every digit)."""
    text = json.dumps(body)
    for name, number in numbers.items():
        text = text.replace(f'"#{name}"', number)
    return text.encode()


def stk(result_code: str = "1032", **items: str) -> bytes:
    body = {"MerchantRequestID": "m", "CheckoutRequestID": "c", "ResultCode": "#ResultCode", "ResultDesc": "x",
            "CallbackMetadata": {"Item": [{"Name": name, "Value": f"#{name}"} for name in items]}}
    return literal_numbers({"Body": {"stkCallback": body}}, {"ResultCode": result_code, **items})


def result(result_type: str = "0", result_code: str = "0", completed: str | None = None) -> bytes:
    body: dict = {"ResultType": "#ResultType", "ResultCode": "#ResultCode", "ResultDesc": "x",
                  "OriginatorConversationID": "a", "ConversationID": "b"}
    numbers = {"ResultType": result_type, "ResultCode": result_code}
    if completed is not None:
        body["ResultParameters"] = {"ResultParameter": [{"Key": "TransCompletedTime", "Value": "#completed"}]}
        numbers["completed"] = completed
    return literal_numbers({"Result": body}, numbers)


def c2b(trans_time: str) -> bytes:
    body = {"TransID": "X1", "TransTime": "#TransTime", "TransAmount": "10", "BusinessShortCode": "600000",
            "MSISDN": "254700000000"}
    return literal_numbers(body, {"TransTime": trans_time})


@pytest.mark.parametrize(
    ("parse", "body"),
    [
        (parse_stk_callback, stk(PhoneNumber=HUGE)),
        (parse_stk_callback, stk(PhoneNumber=VAST)),
        (parse_stk_callback, stk(PhoneNumber=str(10**18))),
        (parse_stk_callback, stk(PhoneNumber="1e-1000000")),
        (parse_stk_callback, stk(TransactionDate=HUGE)),
        (parse_stk_callback, stk(TransactionDate=VAST)),
        (parse_stk_callback, stk(result_code=HUGE)),
        (parse_stk_callback, stk(result_code=VAST)),
        (parse_stk_callback, stk(result_code=str(10**18))),
        (parse_stk_callback, stk(result_code=f'"{"1" * 5000}"')),  # int() refuses 4,300 digits too
        (parse_result, result(result_code=HUGE)),
        (parse_result, result(result_code=f'"{"9" * 5000}"')),
        (parse_result, result(result_type=HUGE)),
        (parse_result, result(result_type=VAST)),
        (parse_result, result(completed=HUGE)),
        (parse_result, result(completed=VAST)),
        (parse_queue_timeout, result(result_code=HUGE)),
        (parse_queue_timeout, result(result_code=VAST)),
        (parse_c2b_payment, c2b(HUGE)),
        (parse_c2b_payment, c2b(VAST)),
    ],
)
def test_numbers_too_big_for_daraja_are_refused_as_malformed(parse, body):
    with pytest.raises(MalformedCallback):
        parse(body)


def test_an_already_decoded_int_beyond_str_limits_is_refused_as_malformed_too():
    # Only a decoded payload can hold one (json.loads refuses so many digits): its str() raises ValueError.
    huge = 10**5000
    for name in ("PhoneNumber", "TransactionDate"):
        decoded = json.loads(stk(**{name: "1"}))
        decoded["Body"]["stkCallback"]["CallbackMetadata"]["Item"][0]["Value"] = huge
        with pytest.raises(MalformedCallback):
            parse_stk_callback(decoded)
    decoded = json.loads(stk())
    decoded["Body"]["stkCallback"]["MerchantRequestID"] = huge
    with pytest.raises(MalformedCallback):
        parse_stk_callback(decoded)
    decoded = json.loads(result())
    decoded["Result"]["ConversationID"] = huge
    with pytest.raises(MalformedCallback):
        parse_result(decoded)


def test_a_body_nested_too_deeply_to_clean_is_refused_as_malformed():
    depth = 900  # json.loads reads it; cleaning it of control characters recursed out of stack
    raw = ('{"Result":' + '{"a":' * depth + "1" + "}" * depth + "}").encode()
    with pytest.raises(MalformedCallback):
        parse_result(raw)


def test_whole_numbers_as_daraja_writes_them_still_parse():
    callback = parse_stk_callback(stk(result_code="1032.0", PhoneNumber="2.54700000001E+11",
                                      TransactionDate="20191219102115"))
    assert (callback.result_code, callback.phone) == (1032, "+254700000001")
    assert callback.transaction_date is not None and callback.transaction_date.year == 2019
    assert parse_result(result(result_code="999999999999999999")).result_code == 10**18 - 1
    assert parse_result(result(result_code='"2001"')).result_code == 2001
    assert parse_c2b_payment(c2b("20191122063845")).trans_time.day == 22
