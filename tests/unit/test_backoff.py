"""Backoff: the waits of every retry loop, grown, capped, reset, jittered by an injected random
and spent through an injected sleep (no real sleeps here)."""

from __future__ import annotations

import asyncio
import random

import pytest

from conveyor.backoff import Backoff
from conveyor.errors import ConfigError


class _Fixed(random.Random):
    """A random source that always draws the same number."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def random(self) -> float:
        return self.value


def test_waits_double_from_first_up_to_most() -> None:
    backoff = Backoff(first=0.1, most=1.0)
    assert [round(backoff.next(), 3) for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


def test_defaults_start_at_a_fifth_of_a_second_and_stop_at_ten() -> None:
    backoff = Backoff()
    waits = [backoff.next() for _ in range(10)]
    assert waits[0] == 0.2
    assert max(waits) == 10.0


def test_reset_starts_over_from_the_shortest_wait() -> None:
    backoff = Backoff(first=0.5, most=8.0)
    backoff.next()
    backoff.next()
    backoff.reset()
    assert backoff.next() == 0.5


def test_factor_sets_the_growth() -> None:
    backoff = Backoff(first=1.0, most=100.0, factor=3.0)
    assert [backoff.next() for _ in range(4)] == [1.0, 3.0, 9.0, 27.0]


def test_jitter_takes_a_random_share_off_each_wait() -> None:
    backoff = Backoff(first=1.0, most=10.0, jitter=0.5, rng=_Fixed(0.5))
    # a quarter off (half of the half the jitter allows); the growth is not jittered
    assert [backoff.next() for _ in range(3)] == [0.75, 1.5, 3.0]


def test_no_jitter_draws_no_random_number() -> None:
    class _Refuses(random.Random):
        def random(self) -> float:
            raise AssertionError("drew a random number without jitter")

    assert Backoff(first=1.0, rng=_Refuses()).next() == 1.0


def test_sleep_spends_the_wait_through_the_injected_sleep() -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    async def retry_three_times() -> None:
        backoff = Backoff(first=0.1, sleep=fake_sleep)
        for _ in range(3):
            await backoff.sleep(backoff.next())

    asyncio.run(retry_three_times())
    assert [round(s, 3) for s in slept] == [0.1, 0.2, 0.4]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"first": 0}, "first must be more than 0"),
        ({"first": -1}, "first must be more than 0"),
        ({"first": float("nan")}, "first must be a finite number"),
        ({"first": "1"}, "first must be a finite number"),
        ({"most": True}, "most must be a finite number"),
        ({"first": 5, "most": 1}, r"most \(1\) must be at least first \(5\)"),
        ({"factor": 0.5}, "factor must be 1 or more"),
        ({"jitter": 1.5}, "jitter must be between 0 and 1"),
        ({"most": float("inf")}, "most must be a finite number"),
    ],
)
def test_bad_arguments_raise_config_error(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Backoff(**kwargs)  # type: ignore[arg-type]
