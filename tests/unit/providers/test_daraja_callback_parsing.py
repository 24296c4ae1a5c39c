"""Parsing what Daraja POSTs to us: the contract's examples, its quirks, and malformed input."""

from __future__ import annotations

import copy
import json
from datetime import datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from payments.money import Money
from payments.providers.daraja_callbacks import (
    MalformedCallback,
    c2b_validation_answer,
    parse_account_balances,
    parse_c2b_payment,
    parse_queue_timeout,
    parse_result,
    parse_stk_callback,
)
from payments.providers.daraja_credentials import NAIROBI

STK_PAID = {
    "Body": {
        "stkCallback": {
            "MerchantRequestID": "19465-780693-1",
            "CheckoutRequestID": "ws_CO_27072017154747416",
            "ResultCode": 0,
            "ResultDesc": "The service request is processed successfully.",
            "CallbackMetadata": {
                "Item": [
                    {"Name": "Amount", "Value": 1},
                    {"Name": "MpesaReceiptNumber", "Value": "LGR7OWQX0R"},
                    {"Name": "Balance"},
                    {"Name": "TransactionDate", "Value": 20170727154800},
                    {"Name": "PhoneNumber", "Value": 254721566839},
                ]
            },
        }
    }
}

STK_CANCELLED = {
    "Body": {
        "stkCallback": {
            "MerchantRequestID": "29115-34620561-1",
            "CheckoutRequestID": "ws_CO_191220191020363925",
            "ResultCode": 1032,
            "ResultDesc": "Request cancelled by user.",
        }
    }
}

B2C_RESULT = {
    "Result": {
        "ResultType": 0,
        "ResultCode": 0,
        "ResultDesc": "The service request is processed successfully.",
        "OriginatorConversationID": "10571-7910404-1",
        "ConversationID": "AG_20191219_00004e48cf7e3533f581",
        "TransactionID": "NLJ41HAY6Q",
        "ResultParameters": {
            "ResultParameter": [
                {"Key": "TransactionAmount", "Value": 10},
                {"Key": "TransactionReceipt", "Value": "NLJ41HAY6Q"},
                {"Key": "B2CRecipientIsRegisteredCustomer", "Value": "Y"},
                {"Key": "ReceiverPartyPublicName", "Value": "254708374149 - John Doe"},
                {"Key": "TransactionCompletedDateTime", "Value": "19.12.2019 11:45:50"},
                {"Key": "B2CUtilityAccountAvailableFunds", "Value": 10116.00},
                {"Key": "B2CWorkingAccountAvailableFunds", "Value": 900000.00},
            ]
        },
        "ReferenceData": {"ReferenceItem": {"Key": "QueueTimeoutURL", "Value": "https://example.com/timeout"}},
    }
}

C2B_CONFIRMATION = {
    "TransactionType": "Pay Bill",
    "TransID": "RKTQDM7W6S",
    "TransTime": "20191122063845",
    "TransAmount": "10.00",
    "BusinessShortCode": "600638",
    "BillRefNumber": "invoice008",
    "InvoiceNumber": "",
    "OrgAccountBalance": "49197.00",
    "ThirdPartyTransID": "",
    "MSISDN": "2547 ***** 126",
    "FirstName": "John",
    "MiddleName": "",
    "LastName": "Doe",
}


def test_a_paid_stk_callback_from_the_contract():
    callback = parse_stk_callback(json.dumps(STK_PAID).encode())
    assert callback.succeeded
    assert callback.amount == Money.of("1", "KES")
    assert callback.receipt == "LGR7OWQX0R"
    assert callback.phone == "+254721566839"
    assert callback.transaction_date == datetime(2017, 7, 27, 15, 48, tzinfo=NAIROBI)
    assert callback.metadata["Balance"] is None
    assert callback.checkout_request_id == "ws_CO_27072017154747416"


@pytest.mark.parametrize("raw_amount", [b"1.00", b"1.0", b'"1.00"', b"1"])
def test_the_amount_may_be_written_with_decimals(raw_amount):
    text = json.dumps(STK_PAID).replace('"Value": 1}', '"Value": AMOUNT}').replace("AMOUNT", raw_amount.decode())
    assert parse_stk_callback(text.encode()).amount == Money.of("1", "KES")


def test_an_already_decoded_payload_is_accepted_too():
    paid = copy.deepcopy(STK_PAID)
    paid["Body"]["stkCallback"]["CallbackMetadata"]["Item"][0]["Value"] = 1.1
    assert parse_stk_callback(paid).amount == Money.of("1.10", "KES")


def test_a_failed_stk_callback_has_no_metadata():
    callback = parse_stk_callback(STK_CANCELLED)
    assert (callback.result_code, callback.succeeded) == (1032, False)
    assert callback.amount is None and callback.receipt is None and callback.phone is None
    assert callback.metadata == {}


def test_a_lone_metadata_item_is_read_like_a_list_of_one():
    failed = copy.deepcopy(STK_CANCELLED)
    failed["Body"]["stkCallback"]["CallbackMetadata"] = {"Item": {"Name": "Balance"}}
    assert parse_stk_callback(failed).metadata == {"Balance": None}


def _without_item(name: str) -> dict:
    paid = copy.deepcopy(STK_PAID)
    items = paid["Body"]["stkCallback"]["CallbackMetadata"]["Item"]
    paid["Body"]["stkCallback"]["CallbackMetadata"]["Item"] = [i for i in items if i["Name"] != name]
    return paid


def _with(path: tuple, value) -> dict:
    paid = copy.deepcopy(STK_PAID)
    node = paid
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return paid


CB = ("Body", "stkCallback")


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not json",
        b"[]",
        b"\xff\xfe",
        {},
        {"Body": None},
        {"Body": {"stkCallback": "nope"}},
        _with((*CB, "ResultCode"), None),
        _with((*CB, "ResultCode"), "abc"),
        _with((*CB, "ResultCode"), True),
        _with((*CB, "CheckoutRequestID"), ""),
        _with((*CB, "CallbackMetadata"), None),
        _with((*CB, "CallbackMetadata", "Item"), "x"),
        _with((*CB, "CallbackMetadata", "Item"), [{"Value": 1}]),
        _with((*CB, "CallbackMetadata", "Item", 0, "Value"), "one shilling"),
        _with((*CB, "CallbackMetadata", "Item", 0, "Value"), 1.001),
        _with((*CB, "CallbackMetadata", "Item", 3, "Value"), 2017),
        _with((*CB, "CallbackMetadata", "Item", 4, "Value"), "+2547abc"),
        _without_item("Amount"),
        _without_item("MpesaReceiptNumber"),
        json.dumps(STK_PAID).replace("1}", "1e999999}").encode(),
    ],
)
def test_malformed_stk_callbacks_raise_malformed_callback(payload):
    with pytest.raises(MalformedCallback):
        parse_stk_callback(payload)


def test_a_b2c_result_from_the_contract():
    result = parse_result(json.dumps(B2C_RESULT))
    assert result.succeeded and result.is_final
    assert result.originator_conversation_id == "10571-7910404-1"
    assert result.amount == Money.of("10", "KES")
    assert result.receipt == "NLJ41HAY6Q"
    assert result.completed_at == datetime(2019, 12, 19, 11, 45, 50, tzinfo=NAIROBI)
    assert result.parameters["B2CUtilityAccountAvailableFunds"] == Decimal("10116.00")
    assert result.reference_data == {"QueueTimeoutURL": "https://example.com/timeout"}


def test_a_failed_result_has_no_parameters_and_more_may_follow():
    failed = copy.deepcopy(B2C_RESULT)
    del failed["Result"]["ResultParameters"]
    failed["Result"].update(ResultCode=2001, ResultType=1, ResultDesc="The initiator information is invalid.")
    result = parse_result(failed)
    assert (result.result_code, result.succeeded, result.is_final) == (2001, False, False)
    assert result.parameters == {} and result.amount is None
    assert result.receipt == "NLJ41HAY6Q"  # falls back to TransactionID


def test_string_and_alphanumeric_result_codes():
    as_text = _result_with(ResultCode="0")
    assert parse_result(as_text).result_code == 0
    assert parse_result(_result_with(ResultCode="R000001")).result_code == "R000001"


def test_b2b_and_status_times_are_stamps():
    b2b = _result_with(
        ResultParameters={
            "ResultParameter": [
                {"Key": "Amount", "Value": "1500.00"},
                {"Key": "TransCompletedTime", "Value": 20240101120000},
            ]
        }
    )
    result = parse_result(b2b)
    assert result.amount == Money.of("1500", "KES")
    assert result.completed_at == datetime(2024, 1, 1, 12, tzinfo=NAIROBI)


def _result_with(**fields) -> dict:
    result = copy.deepcopy(B2C_RESULT)
    result["Result"].update(fields)
    return result


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"Result": []},
        _result_with(OriginatorConversationID=None),
        _result_with(ConversationID=""),
        _result_with(ResultCode=None),
        _result_with(ResultType="final"),
        _result_with(ResultParameters={"ResultParameter": [{"Value": 1}]}),
        _result_with(ResultParameters={"ResultParameter": [{"Key": "TransactionAmount", "Value": "ten"}]}),
        _result_with(ResultParameters={"ResultParameter": [{"Key": "TransCompletedTime", "Value": "yesterday"}]}),
        _result_with(ResultParameters=[]),
    ],
)
def test_malformed_results_raise_malformed_callback(payload):
    with pytest.raises(MalformedCallback):
        parse_result(payload)


def test_queue_timeouts_in_an_envelope_or_flat():
    wrapped = parse_queue_timeout(
        {"Result": {"OriginatorConversationID": "p-1", "ResultCode": 1, "ResultDesc": "late"}}
    )
    flat = parse_queue_timeout(b'{"OriginatorConversationID": "p-1"}')
    assert wrapped.originator_conversation_id == flat.originator_conversation_id == "p-1"
    assert (wrapped.result_code, flat.result_code, flat.conversation_id) == (1, None, None)
    with pytest.raises(MalformedCallback):
        parse_queue_timeout(b'{"Result": {}}')


def test_account_balances():
    text = "Working Account|KES|700000.00|700000.00|0.00|0.00&Utility Account|KES|228037.00|228037.00|0.00|0.00"
    working, utility = parse_account_balances(text)
    assert working.name == "Working Account" and working.available == Money.of("700000", "KES")
    assert utility.current == Money.of("228037", "KES")
    for bad in ("", "Working Account|KES|1", "Working Account|USD|1|1|0|0", "W|KES|x|1|0|0"):
        with pytest.raises(MalformedCallback):
            parse_account_balances(bad)


def test_c2b_confirmation_with_a_masked_msisdn():
    payment = parse_c2b_payment(json.dumps(C2B_CONFIRMATION).encode())
    assert payment.trans_id == "RKTQDM7W6S"
    assert payment.amount == Money.of("10", "KES")
    assert payment.trans_time == datetime(2019, 11, 22, 6, 38, 45, tzinfo=NAIROBI)
    assert payment.msisdn == "2547 ***** 126"
    assert payment.org_account_balance == Decimal("49197.00")
    assert payment.bill_ref_number == "invoice008"


def test_control_characters_are_dropped_from_every_string():
    raw = json.dumps({**C2B_CONFIRMATION, "BillRefNumber": "invoice\u0000008\u001b", "FirstName": "J\u0007ohn"})
    payment = parse_c2b_payment(raw.encode())
    assert (payment.bill_ref_number, payment.first_name) == ("invoice008", "John")
    assert parse_c2b_payment({**C2B_CONFIRMATION, "TransID": "RKTQDM7W6S\x00"}).trans_id == "RKTQDM7W6S"


def test_c2b_validation_has_an_empty_balance():
    assert parse_c2b_payment({**C2B_CONFIRMATION, "OrgAccountBalance": ""}).org_account_balance is None


@pytest.mark.parametrize(
    "change",
    [{"TransID": ""}, {"TransTime": "2019-11-22"}, {"TransAmount": "ten"}, {"MSISDN": None}, {"TransAmount": "1.001"},
     {"TransID": "R" * 101}],  # longer than any Daraja id, and than the keys an id becomes
)
def test_malformed_c2b_payloads(change):
    with pytest.raises(MalformedCallback):
        parse_c2b_payment({**C2B_CONFIRMATION, **change})


def test_validation_answers():
    assert c2b_validation_answer(accept=True) == {"ResultCode": "0", "ResultDesc": "Accepted"}
    assert c2b_validation_answer(accept=False, rejection_code="C2B00012")["ResultCode"] == "C2B00012"
    with pytest.raises(ValueError):
        c2b_validation_answer(accept=False, rejection_code="nope")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
# Payloads that look like Daraja's, with any value anywhere: the parsers' hardest inputs.
stk_like = st.fixed_dictionaries(
    {
        "Body": st.fixed_dictionaries(
            {
                "stkCallback": st.fixed_dictionaries(
                    {
                        "MerchantRequestID": json_values,
                        "CheckoutRequestID": json_values,
                        "ResultCode": st.sampled_from([0, 1032, "0", None, 1.5]) | json_values,
                        "CallbackMetadata": st.fixed_dictionaries(
                            {
                                "Item": st.lists(
                                    st.fixed_dictionaries(
                                        {
                                            "Name": st.sampled_from(
                                                [
                                                    "Amount",
                                                    "MpesaReceiptNumber",
                                                    "TransactionDate",
                                                    "PhoneNumber",
                                                    "Balance",
                                                ]
                                            ),
                                            "Value": json_values,
                                        }
                                    ),
                                    max_size=6,
                                )
                            }
                        ),
                    }
                )
            }
        )
    }
)
result_like = st.fixed_dictionaries(
    {
        "Result": st.fixed_dictionaries(
            {
                "ResultType": json_values,
                "ResultCode": json_values,
                "OriginatorConversationID": json_values,
                "ConversationID": json_values,
                "ResultParameters": st.fixed_dictionaries(
                    {
                        "ResultParameter": st.lists(
                            st.fixed_dictionaries(
                                {
                                    "Key": st.sampled_from(
                                        [
                                            "Amount",
                                            "TransactionAmount",
                                            "TransCompletedTime",
                                            "TransactionCompletedDateTime",
                                        ]
                                    ),
                                    "Value": json_values,
                                }
                            ),
                            max_size=4,
                        )
                    }
                )
                | json_values,
            }
        )
    }
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(json_values, stk_like))
def test_stk_parsing_only_ever_raises_malformed_callback(payload):
    for form in (payload, json.dumps(payload).encode()):
        try:
            parse_stk_callback(form)
        except MalformedCallback:
            pass


@settings(max_examples=300, deadline=None)
@given(st.one_of(json_values, result_like), st.dictionaries(st.sampled_from(list(C2B_CONFIRMATION)), json_values))
def test_result_and_c2b_parsing_only_ever_raise_malformed_callback(payload, c2b_changes):
    for parse, value in (
        (parse_result, payload),
        (parse_queue_timeout, payload),
        (parse_c2b_payment, {**C2B_CONFIRMATION, **c2b_changes}),
    ):
        for form in (value, json.dumps(value).encode()):
            try:
                parse(form)
            except MalformedCallback:
                pass


@given(st.binary(max_size=200))
def test_arbitrary_bytes_only_ever_raise_malformed_callback(raw):
    for parse in (parse_stk_callback, parse_result, parse_queue_timeout, parse_c2b_payment):
        try:
            parse(raw)
        except MalformedCallback:
            pass
