"""WorkerConfig: how a worker claims, runs, renews and shuts down."""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
from dataclasses import dataclass
from typing import Any

from conveyor.envflags import env_flag
from conveyor.errors import ConfigError
from conveyor.http_auth import Credentials, check_bind

#: Set to 1 to commit the worker's own transitions without waiting for the WAL flush.
RELAXED_TRANSITIONS_ENV = "CONVEYOR_RELAXED_TRANSITIONS"


def relaxed_transitions_from_env() -> bool:
    """CONVEYOR_RELAXED_TRANSITIONS as a flag; a value that is neither yes nor no is refused."""
    return env_flag(
        RELAXED_TRANSITIONS_ENV,
        yes="set it to 1 to commit the worker's own transitions without waiting for the WAL flush",
        no="0 (or unset) to keep them durable",
    )


@dataclass(frozen=True)
class WorkerConfig:
    """Defaults suit most apps; tests shorten the intervals."""

    queues: tuple[str, ...] = ("default",)
    concurrency: int = 10
    #: Most jobs claimed per statement.
    batch_size: int = 100
    #: Fallback poll when no NOTIFY arrives (LISTEN is the normal wake-up).
    poll_interval: float = 2.0
    #: The poll that replaces LISTEN behind PgBouncer in transaction mode when no direct
    #: listen URL is given (the pick-up latency of a job then).
    pickup_poll_interval: float = 0.2
    #: A running job's lease; renewed every lease_seconds / 3 while the job runs. The
    #: maintenance leader's lease is as long: a crashed leader is replaced within it.
    lease_seconds: float = 30.0
    #: SIGTERM/SIGINT: how long running jobs may take to finish before they are put back.
    shutdown_grace: float = 30.0
    #: How often due scheduled/retryable jobs are made available.
    promote_interval: float = 1.0
    #: How often the leader rescues expired leases.
    rescue_interval: float = 5.0
    #: How often the leader prunes finished jobs.
    prune_interval: float = 60.0
    #: How often every worker looks for due cron slots (the latency of a cron job).
    cron_interval: float = 1.0
    #: The worker's own claims, completions, failures and lease renewals wait for their WAL
    #: flush. False (CONVEYOR_RELAXED_TRANSITIONS=1) commits them without waiting: drains go
    #: faster, and a Postgres crash can lose the last ~0.6 s of them, whose jobs then run
    #: again. Handlers' own transactions and enqueues keep their durability. docs/worker.md.
    durable_transitions: bool = True
    #: Run the maintenance services (only the elected leader does).
    maintenance: bool = True
    #: Serve Prometheus metrics at http://metrics_host:metrics_port/metrics (None: don't).
    metrics_port: int | None = None
    #: Where the metrics endpoint listens; beyond loopback it needs metrics_credentials.
    metrics_host: str = "127.0.0.1"
    #: Token and/or basic auth a scrape must present (None: none needed on loopback).
    metrics_credentials: Credentials | None = None
    #: /healthz fails when the event loop has not turned for this long (a handler blocking
    #: it); served on the metrics port.
    health_stall_seconds: float = 10.0
    #: /healthz fails when the database has not answered for this long.
    health_database_seconds: float = 60.0
    #: How often the leader reads queue depths for the metrics.
    gauge_interval: float = 10.0
    #: Networks (CIDRs) deliveries may reach although they are not public: loopback, private,
    #: link-local (SSRF allow-list; CONVEYOR_ALLOW_NETWORKS adds more). docs/delivery.md.
    allow_networks: tuple[str, ...] = ()
    #: Deliver `https` URLs with a client that offers HTTP/2 (the route's server picks); False
    #: sends them over aiohttp's HTTP/1.1, which costs less CPU per delivery. docs/delivery.md.
    http2: bool = True
    #: A PEM file of CA certificates deliveries trust besides the system's (a private CA);
    #: CONVEYOR_DELIVERY_CA_FILE when not given.
    ca_file: str | None = None

    def __post_init__(self) -> None:
        if not self.queues or any(not q for q in self.queues):
            raise ConfigError("queues must name at least one queue, e.g. --queues default")
        if self.concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.lease_seconds < 1:
            raise ConfigError(f"lease_seconds must be >= 1, got {self.lease_seconds}")
        for name in (
            "poll_interval",
            "pickup_poll_interval",
            "promote_interval",
            "rescue_interval",
            "prune_interval",
            "cron_interval",
            "gauge_interval",
            "health_stall_seconds",
            "health_database_seconds",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0 seconds, got {getattr(self, name)}")
        if self.shutdown_grace < 0:
            raise ConfigError(f"shutdown_grace must be >= 0, got {self.shutdown_grace}")
        for cidr in self.allow_networks:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ConfigError(
                    f"allow_networks: {cidr!r} is not a network; give a CIDR such as 10.0.0.0/8"
                ) from None
        if self.ca_file is not None and not os.path.isfile(self.ca_file):
            raise ConfigError(f"ca_file: {self.ca_file!r} is not a file (a PEM of CA certificates)")
        if self.metrics_port is not None:
            if not 0 <= self.metrics_port <= 65535:
                raise ConfigError(f"metrics_port must be 0..65535, got {self.metrics_port}")
            check_bind(self.metrics_host, self.metrics_credentials or Credentials(), "metrics")

    @property
    def heartbeat_interval(self) -> float:
        """How often leases are renewed: a third of the lease, so two renewals can fail."""
        return self.lease_seconds / 3

    @classmethod
    def from_options(cls, **options: Any) -> WorkerConfig:
        """Build from keyword options, suggesting the right name for a misspelt one.
        durable_transitions=None: from CONVEYOR_RELAXED_TRANSITIONS."""
        known = [f.name for f in dataclasses.fields(cls)]
        for name in options:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ConfigError(f"unknown worker option {name!r}{hint}")
        if isinstance(options.get("allow_networks"), str):
            options["allow_networks"] = (options["allow_networks"],)
        if "durable_transitions" in options and options["durable_transitions"] is None:
            options["durable_transitions"] = not relaxed_transitions_from_env()
        if "queues" in options and isinstance(options["queues"], str):
            options["queues"] = tuple(q.strip() for q in options["queues"].split(",") if q)
        return cls(**options)
