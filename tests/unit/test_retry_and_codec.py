"""Backoff schedule and payload codec, including property-based checks."""

from __future__ import annotations

import json
import random
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.codec import encode_args
from conveyor.errors import ConfigError, PayloadError
from conveyor.retry import RetryPolicy


def test_default_backoff_schedule_with_a_seeded_random() -> None:
    policy = RetryPolicy(base=1.0, factor=2.0, max_delay=60.0, jitter=0.0)
    delays = [policy.delay(n, random.Random(1)).total_seconds() for n in range(1, 9)]
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60]


def test_jitter_is_drawn_from_the_injected_random() -> None:
    policy = RetryPolicy(base=10.0, jitter=0.5)
    first = [policy.delay(3, random.Random(42)) for _ in range(2)]
    assert first[0] == first[1]
    assert timedelta(seconds=20) <= first[0] <= timedelta(seconds=40)


def test_bad_policy_names_the_fix() -> None:
    with pytest.raises(ConfigError, match="jitter must be between 0 and 1"):
        RetryPolicy(jitter=2)


@given(
    attempt=st.integers(min_value=1, max_value=10_000),
    base=st.floats(min_value=0, max_value=100),
    jitter=st.floats(min_value=0, max_value=1),
    seed=st.integers(),
)
def test_delay_stays_within_the_jittered_capped_window(
    attempt: int, base: float, jitter: float, seed: int
) -> None:
    policy = RetryPolicy(base=base, max_delay=max(base, 3600.0), jitter=jitter)
    delay = policy.delay(attempt, random.Random(seed)).total_seconds()
    capped = min(base * 2.0 ** min(attempt - 1, 64), policy.max_delay)
    assert capped * (1 - jitter) - 1e-6 <= delay <= capped + 1e-6
    assert delay <= policy.max_delay + 1e-6


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text().filter(lambda s: "\x00" not in s),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text().filter(lambda s: "\x00" not in s), children, max_size=4)
    ),
    max_leaves=20,
)


@given(st.dictionaries(st.text(min_size=1).filter(lambda s: "\x00" not in s), json_values))
def test_any_json_value_round_trips(args: dict[str, Any]) -> None:
    assert json.loads(encode_args(args, max_bytes=10**7)) == args


@given(st.sets(st.integers(), min_size=1) | st.binary() | st.complex_numbers())
def test_values_json_cannot_hold_are_rejected(value: Any) -> None:
    with pytest.raises(PayloadError, match="argument 'x'"):
        encode_args({"x": value})
