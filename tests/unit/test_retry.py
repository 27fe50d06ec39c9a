"""RetryPolicy: exponential backoff, capped, with jitter drawn from an injectable random."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.errors import ConfigError
from conveyor.retry import RetryPolicy, as_policy


class ScriptedRandom(random.Random):
    """A random.Random whose random() returns the given values in turn."""

    def __init__(self, *values: float) -> None:
        super().__init__(0)
        self._values = list(values)

    def random(self) -> float:
        return self._values.pop(0)


def _seconds(policy: RetryPolicy, attempt: int, draw: float) -> float:
    return policy.delay(attempt, ScriptedRandom(draw)).total_seconds()


def _capped(policy: RetryPolicy, attempt: int) -> float:
    """The un-jittered delay, computed step by step (never overflows, unlike factor**n)."""
    delay = min(policy.base, policy.max_delay)
    for _ in range(attempt - 1):
        delay = min(delay * policy.factor, policy.max_delay)
    return delay


def test_backoff_schedule_without_jitter_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy(base=1.0, factor=2.0, max_delay=60.0, jitter=0.0)
    delays = [_seconds(policy, attempt, 0.5) for attempt in range(1, 10)]
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60]


def test_gentle_factor_keeps_growing_after_many_attempts() -> None:
    policy = RetryPolicy(base=1.0, factor=1.1, max_delay=3600.0, jitter=0.0)
    assert _seconds(policy, 65, 0.0) == pytest.approx(1.1**64)
    assert _seconds(policy, 80, 0.0) == pytest.approx(1.1**79)
    assert _seconds(policy, 100, 0.0) == 3600.0


def test_zero_base_means_no_wait_at_any_attempt() -> None:
    policy = RetryPolicy(base=0.0, factor=10.0)
    assert [_seconds(policy, attempt, 0.0) for attempt in (1, 400, 10_000)] == [0, 0, 0]


def test_jittered_schedule_follows_the_injected_random() -> None:
    policy = RetryPolicy(base=2.0, factor=3.0, max_delay=100.0, jitter=0.5)
    draws = [0.0, 0.5, 0.25, 0.9, 0.1]
    rng = ScriptedRandom(*draws)
    delays = [policy.delay(attempt, rng).total_seconds() for attempt in range(1, 6)]
    # capped: 2, 6, 18, 54, 100; each shortened by capped * jitter * draw
    assert delays == pytest.approx([2.0, 4.5, 15.75, 29.7, 95.0])


def test_same_seed_gives_the_same_schedule_and_another_seed_does_not() -> None:
    policy = RetryPolicy(jitter=0.5)

    def schedule(seed: int) -> list[timedelta]:
        rng = random.Random(seed)
        return [policy.delay(attempt, rng) for attempt in range(1, 11)]

    assert schedule(42) == schedule(42)
    assert schedule(42) != schedule(43)


def test_default_policy_starts_near_one_second_and_caps_at_an_hour() -> None:
    policy = RetryPolicy()
    assert timedelta(seconds=0.5) <= policy.delay(1) <= timedelta(seconds=1)
    assert timedelta(minutes=30) <= policy.delay(10_000) <= timedelta(hours=1)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"jitter": 2}, "jitter must be between 0 and 1"),
        ({"jitter": -0.1}, "jitter must be between 0 and 1"),
        ({"base": -1}, "base must be >= 0"),
        ({"factor": 0.5}, "factor must be >= 1"),
        ({"base": 10, "max_delay": 5}, r"max_delay \(5\) must be >= base \(10\)"),
    ],
)
def test_bad_policy_is_rejected_with_the_rule_it_breaks(
    options: dict[str, float], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        RetryPolicy(**options)


def test_backoff_accepts_a_policy_a_number_of_seconds_or_none() -> None:
    policy = RetryPolicy(base=3)
    assert as_policy(policy) is policy
    assert as_policy(None) == RetryPolicy()
    assert as_policy(5).base == 5.0
    assert as_policy(7200).max_delay == 7200.0, "a base above the default cap raises the cap"
    with pytest.raises(ConfigError, match="backoff must be a RetryPolicy or a number"):
        as_policy("fast")  # type: ignore[arg-type]


# -- properties -------------------------------------------------------------------------------

policies = st.builds(
    lambda base, factor, extra, jitter: RetryPolicy(
        base=base, factor=factor, max_delay=base + extra, jitter=jitter
    ),
    base=st.floats(min_value=0, max_value=100),
    factor=st.floats(min_value=1, max_value=10),
    extra=st.floats(min_value=0, max_value=86_400),
    jitter=st.floats(min_value=0, max_value=1),
)
attempts = st.integers(min_value=1, max_value=10_000)


@given(
    policy=policies, attempt=attempts, draw=st.floats(min_value=0, max_value=1, exclude_max=True)
)
def test_delay_stays_within_the_jittered_window_of_the_capped_delay(
    policy: RetryPolicy, attempt: int, draw: float
) -> None:
    capped = _capped(policy, attempt)
    delay = _seconds(policy, attempt, draw)
    tolerance = 1e-6 * max(1.0, capped)
    assert capped * (1 - policy.jitter) - tolerance <= delay <= capped + tolerance
    assert delay <= policy.max_delay + tolerance


@given(policy=policies, attempt=attempts, seed=st.integers())
def test_delay_never_exceeds_max_delay(policy: RetryPolicy, attempt: int, seed: int) -> None:
    assert policy.delay(attempt, random.Random(seed)).total_seconds() <= policy.max_delay + 1e-6


@given(policy=policies, first=attempts, second=attempts)
def test_upper_bound_never_decreases_with_the_attempt(
    policy: RetryPolicy, first: int, second: int
) -> None:
    earlier, later = sorted((first, second))
    # a draw of 0 takes nothing off: the delay is the window's upper bound
    assert _seconds(policy, earlier, 0.0) <= _seconds(policy, later, 0.0)
