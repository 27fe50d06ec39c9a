"""Startup retries registration with backoff, and stop() cuts its waits short (no database:
the registration is a stand-in that fails)."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from conveyor.worker.startup import Startup


async def test_registration_is_retried_until_it_works(caplog: pytest.LogCaptureFixture) -> None:
    calls = 0

    async def register() -> None:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise OSError("connection refused")

    startup = Startup("postgresql://unused/db", asyncio.Event())
    with caplog.at_level(logging.WARNING, logger="conveyor.worker"):
        assert await startup.register(register)
    assert calls == 3
    assert [r.getMessage() for r in caplog.records] == [
        "cannot register worker (connection refused); retrying in 0.2s",
        "cannot register worker (connection refused); retrying in 0.4s",
    ]


async def test_stop_ends_a_registration_wait_at_once() -> None:
    stop = asyncio.Event()

    async def register() -> None:
        stop.set()  # stop() arrives while the first try fails
        raise OSError("connection refused")

    startup = Startup("postgresql://unused/db", stop)
    started = time.monotonic()
    assert not await startup.register(register)
    assert time.monotonic() - started < 0.15


async def test_a_stopped_worker_does_not_check_the_schema() -> None:
    stop = asyncio.Event()
    stop.set()
    assert not await Startup("postgresql://unused/db", stop).check_schema()
