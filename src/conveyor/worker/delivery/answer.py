"""What an HTTP answer (or its absence) makes of a delivery attempt.

2xx completes (a JSON body up to the result limit becomes the job's result); 410 cancels;
429 and 503 retry at `Retry-After` when given, else with backoff; redirects (not followed) and
other 4xx fail at once unless the endpoint retries 4xx; 5xx, timeouts and connection errors
retry with backoff. Every failed attempt records its status, time taken and the answer's first
bytes in the job's errors.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from conveyor import codec
from conveyor.endpoints import Endpoint
from conveyor.job import Job
from conveyor.retry import RetryPolicy
from conveyor.worker.outcome import Failed, Outcome, Succeeded

#: How much of an answer's body the job's error keeps.
ERROR_BODY_BYTES = 1024
#: The longest Retry-After honoured; a longer one is cut to this.
MAX_RETRY_AFTER = 24 * 3600.0
#: Attempts an endpoint's job has when it does not say (set when a worker claims it).
DELIVERY_MAX_ATTEMPTS = 10


@dataclass(frozen=True)
class Answer:
    """What came back: the status, the headers that matter, the first bytes of the body."""

    status: int
    body: bytes
    #: True when the body was longer than what was read.
    truncated: bool
    content_type: str = ""
    retry_after: str | None = None
    location: str | None = None


class Decide:
    """Turns an answer, or an error in its place, into the attempt's outcome."""

    def __init__(self, retry_policy: RetryPolicy, rng: random.Random, max_result_bytes: int):
        self._policy = retry_policy
        self._rng = rng
        self._max_result = max_result_bytes

    def answered(self, job: Job, endpoint: Endpoint, answer: Answer, seconds: float) -> Outcome:
        status = answer.status
        if 200 <= status < 300:
            return Succeeded(self._result(answer))
        error = self.record(job, f"HTTP {status}", _status_message(answer), seconds, answer)
        if status == 410:
            return Failed(error, None, cancel=True)
        if status in (429, 503):
            after = retry_after(answer.retry_after)
            return self._retry(job, error, after)
        if 300 <= status < 500 and not endpoint.retry_4xx:
            return Failed(error, None)
        return self._retry(job, error)

    def failed(
        self, job: Job, kind: str, message: str, seconds: float, *, final: bool = False
    ) -> Outcome:
        error = self.record(job, kind, message, seconds)
        return Failed(error, None) if final else self._retry(job, error)

    def record(
        self, job: Job, kind: str, message: str, seconds: float, answer: Answer | None = None
    ) -> dict[str, Any]:
        """The job's error record of one attempt."""
        body = None
        if answer is not None:
            text = answer.body[:ERROR_BODY_BYTES].decode("utf-8", "replace")
            body = codec.storable_text(text) + ("…" if answer.truncated else "")
        return {
            "type": f"conveyor.delivery.{kind.replace(' ', '')}",
            "message": codec.storable_text(message)[:2000],
            "traceback": None,
            "attempt": job.attempt,
            "status": None if answer is None else answer.status,
            "duration_ms": round(seconds * 1000, 1),
            "body": body,
        }

    def _retry(self, job: Job, error: dict[str, Any], after: float | None = None) -> Failed:
        if job.attempt >= (job.max_attempts or DELIVERY_MAX_ATTEMPTS):
            return Failed(error, None)
        if after is None:
            after = self._policy.delay(job.attempt, self._rng).total_seconds()
        return Failed(error, after)

    def _result(self, answer: Answer) -> str | None:
        if answer.truncated or "json" not in answer.content_type or not answer.body:
            return None
        if len(answer.body) > self._max_result:
            return None
        try:
            return codec.encode_result(json.loads(answer.body))
        except (ValueError, RecursionError):
            return None  # a body that is not JSON after all: the delivery still succeeded


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a `Retry-After` header asks to wait (delay-seconds or an HTTP date), or None."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    wait = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(wait, 0.0), MAX_RETRY_AFTER)


def _status_message(answer: Answer) -> str:
    status = answer.status
    if status == 410:
        return "the endpoint answered 410 Gone: the job is cancelled"
    if 300 <= status < 400:
        where = f" to {answer.location}" if answer.location else ""
        return (
            f"the endpoint answered a redirect ({status}){where}; redirects are not followed:"
            " set the endpoint's URL to the final address (conveyor endpoint set NAME --url ...)"
        )
    if status in (429, 503):
        hint = f"Retry-After: {answer.retry_after}" if answer.retry_after else "no Retry-After"
        return f"the endpoint answered {status} ({hint})"
    return f"the endpoint answered {status}"
