"""`payments.plain_text`: control characters out of text from outside, strings nested in decoded
JSON included (keys too), everything else untouched."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from payments.plain_text import CONTROL, plain, without_controls


def test_control_characters_are_dropped_and_nothing_else():
    assert without_controls("07\x00123\x1b[0m\x7f\x85 Wanjiku\tKamau\n") == "07123[0m WanjikuKamau"
    assert without_controls("Ndèye Fàll 😀 ٠٧١ \u202e") == "Ndèye Fàll 😀 ٠٧١ \u202e"
    # Half a surrogate pair (JSON "\ud800" decodes to it): no character, and PostgreSQL refuses it.
    assert without_controls("half a pair \ud800!") == "half a pair !"


def test_decoded_json_is_cleaned_all_the_way_down():
    payload = {"Body\x00": {"Item": [{"Name": "Receipt\x00", "Value": "QX1\x00"}, {"Value": 5}], "n": None},
               "amount": Decimal("10.50"), "ok": True}
    assert plain(payload) == {"Body": {"Item": [{"Name": "Receipt", "Value": "QX1"}, {"Value": 5}], "n": None},
                              "amount": Decimal("10.50"), "ok": True}


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=20))
def test_no_control_character_survives_and_clean_values_are_kept(value):
    cleaned = plain(value)

    def strings(v):
        if isinstance(v, str):
            yield v
        elif isinstance(v, dict):
            for key, item in v.items():
                yield key
                yield from strings(item)
        elif isinstance(v, list):
            for item in v:
                yield from strings(item)

    assert not any(CONTROL.search(s) for s in strings(cleaned))
    if not any(CONTROL.search(s) for s in strings(value)):
        assert cleaned == value
