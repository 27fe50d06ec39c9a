"""How a worker learns of new jobs: LISTEN on the database URL, LISTEN on a direct URL beside a
pooler, or polling when there is neither, said in one log line at start."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from conveyor.worker.config import WorkerConfig

if TYPE_CHECKING:
    from conveyor.app import Conveyor

log = logging.getLogger("conveyor.worker")


def pickup_mode(app: Conveyor, config: WorkerConfig) -> str | None:
    """The URL to LISTEN on, or None to poll every `config.pickup_poll_interval` seconds.

    Through PgBouncer in transaction mode a LISTEN is lost with its transaction's server
    connection, so the worker LISTENs only on `app.listen_url` (a direct connection); NOTIFY
    still works through the pooler (it is sent in the enqueue's transaction)."""
    if app.listen_url:
        mode = "PgBouncer transaction mode" if app.pgbouncer else "direct"
        log.info("pickup: LISTEN on the direct listen URL (%s connections)", mode)
        return app.listen_url
    if app.pgbouncer:
        log.info(
            "pickup: polling every %gs (PgBouncer transaction mode, no --listen-url): give"
            " --listen-url a direct URL to wake on NOTIFY instead",
            config.pickup_poll_interval,
        )
        return None
    log.info("pickup: LISTEN on the database URL (direct connections)")
    return app.database_url
