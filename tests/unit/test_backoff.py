"""The outbox's retry backoff: exponential, capped, jittered within [ceiling/2, ceiling], and never
overflowing however many attempts a job has had; the settings refuse a cap below the base."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.settings import ConfigError, load_settings
from payments.outbox import RetryPolicy

bases = st.floats(min_value=0.001, max_value=3600, allow_nan=False)
attempts = st.integers(min_value=1, max_value=10**9)
units = st.floats(min_value=0.0, max_value=1.0)


@st.composite
def policies(draw) -> RetryPolicy:
    base = draw(bases)
    return RetryPolicy(base_s=base, max_s=base * draw(st.floats(min_value=1.0, max_value=10_000)))


def test_first_retries_double_from_the_base():
    policy = RetryPolicy(base_s=2.0, max_s=600.0)
    assert [policy.ceiling(n) for n in range(1, 7)] == [2.0, 4.0, 8.0, 16.0, 32.0, 64.0]
    assert policy.ceiling(9) == 512.0 and policy.ceiling(10) == 600.0 and policy.ceiling(500) == 600.0


def test_jitter_spans_the_upper_half():
    policy = RetryPolicy(base_s=2.0, max_s=600.0)
    assert policy.delay(3, unit=0.0) == 4.0
    assert policy.delay(3, unit=1.0) == 8.0
    assert policy.delay(3, unit=0.5) == 6.0


@given(policies(), attempts, units)
def test_delay_is_positive_bounded_and_within_the_jitter_range(policy, attempt, unit):
    delay = policy.delay(attempt, unit)
    ceiling = policy.ceiling(attempt)
    assert math.isfinite(delay)
    assert 0 < ceiling / 2 <= delay <= ceiling <= policy.max_s


@given(policies(), attempts)
def test_ceiling_never_shrinks_and_reaches_the_cap(policy, attempt):
    assert policy.ceiling(attempt) <= policy.ceiling(attempt + 1)
    assert policy.ceiling(attempt) >= min(policy.base_s, policy.max_s)
    # Doubling from the base reaches any cap within log2(cap / base) + 1 attempts.
    assert policy.ceiling(math.ceil(math.log2(policy.max_s / policy.base_s)) + 1) == policy.max_s


@given(policies(), attempts)
def test_random_jitter_stays_in_range(policy, attempt):
    ceiling = policy.ceiling(attempt)
    for _ in range(20):
        assert ceiling / 2 <= policy.delay(attempt) <= ceiling


def test_random_jitter_spreads_retries():
    policy = RetryPolicy(base_s=1.0, max_s=60.0)
    assert len({policy.delay(4) for _ in range(50)}) > 10


@pytest.mark.parametrize(("base", "cap"), [(0.0, 1.0), (-1.0, 1.0), (5.0, 1.0)])
def test_a_policy_needs_a_positive_base_under_its_cap(base, cap):
    with pytest.raises(ValueError, match="backoff"):
        RetryPolicy(base_s=base, max_s=cap)


def test_settings_refuse_a_cap_below_the_base(tmp_path):
    bad = tmp_path / "config.yml"
    bad.write_text("outbox:\n  backoff_base_s: 30\n  backoff_max_s: 5\n")
    with pytest.raises(ConfigError, match=r"outbox.*backoff_max_s"):
        load_settings(bad, env={})
