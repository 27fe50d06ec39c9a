"""Listener: one LISTEN connection that survives reconnects and hands notifications on."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import psycopg

from conveyor.backoff import Backoff

log = logging.getLogger("conveyor.listener")

JOBS_CHANNEL = "conveyor_jobs"
CANCEL_CHANNEL = "conveyor_cancel"
QUEUE_CHANNEL = "conveyor_queue"

OnNotify = Callable[[str, str], None]


class Listener:
    """Delivers (channel, payload) to `on_notify`; after a reconnect, calls `on_reconnect`
    because notifications sent while it was away are lost and everything must be re-polled."""

    def __init__(
        self,
        database_url: str,
        on_notify: OnNotify,
        on_reconnect: Callable[[], None],
        *,
        channels: tuple[str, ...] = (JOBS_CHANNEL, CANCEL_CHANNEL, QUEUE_CHANNEL),
        max_backoff: float = 10.0,
    ) -> None:
        self._url = database_url
        self._on_notify = on_notify
        self._on_reconnect = on_reconnect
        self._channels = channels
        self._max_backoff = max_backoff
        self.connected = asyncio.Event()

    async def run(self) -> None:
        """Listen until cancelled, reconnecting with backoff whenever the connection drops."""
        backoff = Backoff(first=0.1, most=self._max_backoff)
        first = True
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True, application_name="conveyor-listener"
                )
            except psycopg.OperationalError as exc:
                delay = backoff.next()
                log.warning("listener cannot connect (%s); retrying in %.1fs", exc, delay)
                await backoff.sleep(delay)
                continue
            try:
                async with conn:
                    for channel in self._channels:
                        await conn.execute(
                            psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(channel))
                        )
                    self.connected.set()
                    if not first:
                        log.info("listener reconnected")
                        self._on_reconnect()
                    first = False
                    backoff.reset()
                    async for note in conn.notifies():
                        self._on_notify(note.channel, note.payload)
            except psycopg.Error as exc:
                self.connected.clear()
                log.warning("listener lost its connection (%s); reconnecting", exc)
                self._on_reconnect()
                await backoff.sleep(backoff.next())
