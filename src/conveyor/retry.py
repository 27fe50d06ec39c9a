"""RetryPolicy: how long to wait before the next attempt of a failed job."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import timedelta

from conveyor.durations import Seconds, to_seconds
from conveyor.errors import ConfigError


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: base * factor**(attempt-1), capped, then jittered.

    With the defaults a job waits about 1 s, 2 s, 4 s, 8 s ... up to 1 hour. `jitter` spreads
    each delay uniformly over [delay * (1 - jitter), delay], so retries of many jobs that failed
    together do not hit the recovering service at the same instant.
    """

    #: The first delay and the cap: float seconds or a timedelta, read back as float seconds.
    base: Seconds = Seconds(1.0, label="backoff base")
    factor: float = 2.0
    max_delay: Seconds = Seconds(3600.0, label="backoff max_delay")
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not math.isfinite(self.factor) or not math.isfinite(self.jitter):
            raise ConfigError("backoff factor and jitter must be finite numbers")
        if self.factor < 1:
            raise ConfigError(f"backoff factor must be >= 1, got {self.factor}")
        if self.max_delay < self.base:
            raise ConfigError(
                f"backoff max_delay ({self.max_delay:g}) must be >= base ({self.base:g})"
            )
        if not 0 <= self.jitter <= 1:
            raise ConfigError(f"backoff jitter must be between 0 and 1, got {self.jitter}")

    def delay(self, attempt: int, rng: random.Random | None = None) -> timedelta:
        """Return the wait after failed attempt number `attempt` (1-based)."""
        exponent = max(attempt - 1, 0)
        try:
            raw = self.base * self.factor**exponent if self.base else 0.0
        except OverflowError:
            # factor**exponent is past any float, so far past the cap (no fixed exponent cap:
            # with a factor near 1 the delay is still growing at attempt 64)
            raw = self.max_delay
        capped = min(raw, self.max_delay)
        spread = capped * self.jitter * (rng or random).random()
        return timedelta(seconds=capped - spread)


def as_policy(backoff: RetryPolicy | float | timedelta | None) -> RetryPolicy:
    """Accept a RetryPolicy, a base delay (seconds or a timedelta), or None for the default."""
    if backoff is None:
        return RetryPolicy()
    if isinstance(backoff, RetryPolicy):
        return backoff
    if isinstance(backoff, int | float | timedelta) and not isinstance(backoff, bool):
        base = to_seconds(backoff, "backoff")
        return RetryPolicy(base=base, max_delay=max(3600.0, base))
    raise ConfigError(
        "backoff must be a RetryPolicy or a number of seconds (or a timedelta), got"
        f" {type(backoff).__name__}"
    )
