"""Workers on many hosts against one Postgres: each host a network namespace with its own
address, joined to the machine by a veth pair (tests/netns.py), reaching a server of the
test's own that listens on the bridge (tests/pgcluster.py).

Across hosts: exactly one elected worker (seen from outside: only the elected worker exports
the queue gauges on /metrics), and another takes over when its host dies; cron runs once per
slot; a rate limit holds in total; a crashed host's jobs are rescued; a host cut off for longer
than the lease loses its jobs to the others, has its late results refused, and rejoins.

The server closes a silent client's session within seconds (tcp_keepalives_*,
tcp_user_timeout), as docs/operations.md recommends for workers on other hosts: that is what
lets another host be elected in place of a cut-off one. Needs root, `ip` and the Postgres server
binaries: skipped without them, except under CI=true, where it fails."""

from __future__ import annotations

import os
import shutil
import signal
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

import conveyor
from conveyor.migrate import Migrator
from tests.acceptance import shop_app
from tests.acceptance.conftest import (
    WorkerProcess,
    executions,
    open_gate,
    scalar,
    wait_for_state,
    wait_for_workers,
)
from tests.helpers import clean_tables, component_missing, wait_until
from tests.netns import Host, Network
from tests.pgcluster import Cluster, ToolMissingError, make_root

pytestmark = pytest.mark.slow

#: How long a worker process may take to start and register: a bound, not a wait; on a
#: loaded 2-core machine starting Python in a namespace took up to 17 s.
STARTUP = 90
TOKEN = "hosts-test"
METRICS_PORT = 9464
#: The server ends a session whose client went silent within ~3 s.
SERVER_KEEPALIVES = {
    "tcp_keepalives_idle": "1",
    "tcp_keepalives_interval": "1",
    "tcp_keepalives_count": "2",
    "tcp_user_timeout": "3000",
}


@dataclass
class Site:
    """The network, the server and the URLs: `url` from the machine, `host_url` from a host."""

    network: Network
    cluster: Cluster
    url: str
    host_url: str


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    try:
        network = Network()
    except ToolMissingError as exc:
        component_missing(str(exc))
    root: Path | None = None
    cluster: Cluster | None = None
    try:
        root = make_root("cv-hosts-")
        cluster = Cluster.create(
            root, "db", listen=f"127.0.0.1,{network.server_ip}", settings=SERVER_KEEPALIVES
        )
        cluster.start()
        cluster.execute("CREATE DATABASE conveyor")
        url = cluster.url("conveyor")
        Migrator(url).migrate()
        yield Site(network, cluster, url, cluster.url("conveyor", host=network.server_ip))
    except ToolMissingError as exc:
        component_missing(str(exc))
    finally:
        if cluster is not None:
            cluster.stop("immediate")
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
        network.close()


@pytest.fixture
def hosts(site: Site) -> Iterator[list[Host]]:
    """Four hosts with empty tables; the workers started on them are killed after the test."""
    clean_tables(site.url)
    with psycopg.connect(site.url, autocommit=True) as conn:
        conn.execute(shop_app.SCHEMA)
        conn.execute("TRUNCATE acceptance.executions, acceptance.gates, acceptance.spans")
    while len(site.network.hosts) < 4:
        site.network.add_host()
    for host in site.network.hosts:
        site.network.restore(host)
    yield site.network.hosts
    for host in site.network.hosts:
        site.network.restore(host)


@pytest.fixture
def app(site: Site) -> Iterator[conveyor.Conveyor]:
    """An app on the site's database, for enqueueing from the machine."""
    application = conveyor.Conveyor(site.url)
    yield application
    application.close()


class Workers:
    """`conveyor worker` processes, one per host; killed at the end, logs printed."""

    def __init__(self, site: Site, tmp_path: Path) -> None:
        self.site = site
        self.tmp_path = tmp_path
        self.started: list[WorkerProcess] = []

    def start(
        self, host: Host, *args: str, app: str = shop_app.__name__ + ":app", **env: str
    ) -> WorkerProcess:
        metrics = ("--metrics-port", str(METRICS_PORT), "--metrics-host", host.ip)
        worker = WorkerProcess(
            self.site.host_url,
            (*metrics, "--metrics-token", TOKEN, *args),
            self.tmp_path / f"{host.namespace}-{len(self.started)}.log",
            app=app,
            env=env,
            prefix=host.prefix(),
        )
        self.started.append(worker)
        return worker

    def close(self) -> None:
        for worker in self.started:
            worker.kill_all()
            print(f"--- {worker.log_path.name}:\n{worker.log()}")


@pytest.fixture
def workers(site: Site, hosts: list[Host], tmp_path: Path) -> Iterator[Workers]:
    started = Workers(site, tmp_path)
    yield started
    started.close()


def exports_queue_gauges(host: Host) -> bool:
    """Whether the worker on `host` exports the queue gauges: only the elected one does."""
    request = urllib.request.Request(
        f"http://{host.ip}:{METRICS_PORT}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=1) as response:
            body: str = response.read().decode()
    except OSError:
        return False
    return "\nconveyor_queue_jobs{" in body


def leaders(hosts: list[Host]) -> list[Host]:
    return [host for host in hosts if exports_queue_gauges(host)]


def _hold_a_queue_open(app: conveyor.Conveyor) -> None:
    """A job due in an hour: the queue gauges have something to export."""
    app.enqueue_many([shop_app.record.with_options(delay=3600).spec(n=0)])


def test_one_leader_across_hosts_and_another_takes_over_when_its_host_dies(
    app: conveyor.Conveyor, site: Site, hosts: list[Host], workers: Workers
) -> None:
    _hold_a_queue_open(app)
    three = hosts[:3]
    started = {host: workers.start(host) for host in three}
    wait_for_workers(site.url, 3, timeout=STARTUP)
    (leader,) = wait_until(lambda: leaders(three), timeout=STARTUP)
    # Still one, looked at again once every gauge had time to refresh.
    for _ in range(3):
        assert leaders(three) in ([leader], []), "two hosts export the gauges at once"
        time.sleep(0.5)

    started[leader].kill_all()  # the host dies
    rest = [host for host in three if host != leader]
    (successor,) = wait_until(lambda: leaders(rest), timeout=40)
    assert successor != leader
    assert leaders(rest) in ([successor], [])


def test_cron_runs_once_per_slot_across_hosts(
    site: Site, hosts: list[Host], workers: Workers, tmp_path: Path
) -> None:
    minutes, speed = 3, 60
    start = (datetime.now(UTC) + timedelta(minutes=1)).replace(second=0, microsecond=0)
    go = tmp_path / "go"
    env = {
        "CRON_SIM_START": start.isoformat(),
        "CRON_SIM_END": (start + timedelta(minutes=minutes, microseconds=-1)).isoformat(),
        "CRON_SIM_GO": str(go),
        "CRON_SIM_SPEED": str(speed),
    }
    args = ("--lease", "900", "--cron-interval", "0.1", "--concurrency", "2")
    app = "tests.acceptance.cron_app:app"
    for host in hosts:
        workers.start(host, *args, app=app, **env)
    wait_for_workers(site.url, len(hosts), timeout=STARTUP)
    (tmp_path / "go.tmp").write_text(repr(time.time()))
    os.replace(tmp_path / "go.tmp", go)  # simulated time starts for every host at once

    def completed() -> list[str]:
        with psycopg.connect(site.url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT result FROM conveyor.jobs WHERE state = 'completed' ORDER BY result"
            ).fetchall()
        return [row[0] for row in rows]

    wait_until(lambda: len(completed()) >= minutes, timeout=minutes * 60 / speed + 30)
    time.sleep(60 / speed)  # a slot enqueued twice would show within a simulated minute
    assert completed() == [(start + timedelta(minutes=m)).isoformat() for m in range(minutes)]
    assert scalar(site.url, "SELECT count(*) FROM conveyor.jobs") == minutes
    ran_on = scalar(site.url, "SELECT count(DISTINCT worker_id) FROM conveyor.jobs")
    print(f"{minutes} slots ran on {ran_on} hosts")


def test_a_rate_limit_holds_in_total_across_hosts(
    app: conveyor.Conveyor, site: Site, hosts: list[Host], workers: Workers
) -> None:
    rate, span = 20, 4
    app.client().configure_queue("rated", rate_limit=f"{rate}/s")
    app.enqueue_many([shop_app.record.with_options(queue="rated").spec(n=n) for n in range(300)])
    for host in hosts[:3]:
        workers.start(host, "--queues", "rated", "--concurrency", "10")
    wait_until(
        lambda: scalar(
            site.url,
            "SELECT clock_timestamp() > (SELECT min(at) FROM acceptance.executions)"
            " + make_interval(secs => %s)",
            span + 1,
        ),
        timeout=STARTUP + span,
    )
    started = scalar(
        site.url,
        "SELECT count(*) FROM acceptance.executions"
        " WHERE at < (SELECT min(at) FROM acceptance.executions) + make_interval(secs => %s)",
        span,
    )
    pids = scalar(site.url, "SELECT count(DISTINCT pid) FROM acceptance.executions")
    # Fixed windows of 1 s: `span` seconds touch at most span + 1 windows.
    assert rate * (span - 2) <= started <= rate * (span + 1), started
    assert pids >= 2, "the limit was shared across hosts, not held by one alone"


def test_a_crashed_hosts_jobs_are_rescued_by_another_host(
    app: conveyor.Conveyor, site: Site, hosts: list[Host], workers: Workers
) -> None:
    crashed = workers.start(hosts[0], "--concurrency", "4")
    wait_for_workers(site.url, 1, timeout=STARTUP)
    gate = "crashed-host"
    jobs = app.enqueue_many([shop_app.sleepy.spec(seconds=60, gate=gate) for _ in range(3)])
    wait_until(
        lambda: all(executions(site.url, job) == [(1, crashed.pid)] for job in jobs),
        timeout=STARTUP,
    )
    other = workers.start(hosts[1], "--concurrency", "4")
    crashed.kill_all()  # SIGKILL: the host's jobs stay running until their leases expire
    wait_until(lambda: all(len(executions(site.url, job)) == 2 for job in jobs), timeout=STARTUP)
    open_gate(site.url, gate)
    for job in jobs:
        wait_for_state(site.url, job, "completed", timeout=30)
        assert executions(site.url, job) == [(1, crashed.pid), (2, other.pid)]


def test_a_host_cut_off_longer_than_the_lease_loses_its_jobs_and_rejoins(
    app: conveyor.Conveyor, site: Site, hosts: list[Host], workers: Workers
) -> None:
    """The cut host is the elected one, with a job running: the worst case."""
    _hold_a_queue_open(app)
    cut_host, others = hosts[0], hosts[1:3]
    cut = workers.start(cut_host, "--concurrency", "2")
    wait_until(lambda: leaders([cut_host]), timeout=STARTUP)
    gate = "cut-host"
    (job,) = app.enqueue_many([shop_app.sleepy.spec(seconds=120, gate=gate)])
    wait_until(lambda: executions(site.url, job) == [(1, cut.pid)], timeout=20)
    rescuers = [workers.start(host, "--concurrency", "2") for host in others]
    wait_for_workers(site.url, 3, timeout=STARTUP)

    site.network.cut(cut_host)
    cut_at = time.monotonic()
    # Another host is elected, and its rescuer gives the job to a host that can reach the
    # database.
    wait_until(lambda: len(leaders(others)) == 1, timeout=60)
    print(f"another host elected {time.monotonic() - cut_at:.1f} s after the cut")
    wait_until(lambda: len(executions(site.url, job)) == 2, timeout=60)
    print(f"job rescued {time.monotonic() - cut_at:.1f} s after the cut")
    (_, second), pids = executions(site.url, job)[1], {w.pid for w in rescuers}
    assert second in pids
    open_gate(site.url, gate)
    wait_for_state(site.url, job, "completed", timeout=30)
    print(f"rescued and completed elsewhere {time.monotonic() - cut_at:.1f} s after the cut")

    site.network.restore(cut_host)
    # The cut host's own attempt ends too (its gate is open), and its result is refused.
    restored_at = time.monotonic()
    wait_until(lambda: "outcome refused" in cut.log() or "lease was lost" in cut.log(), timeout=60)
    print(f"late result refused {time.monotonic() - restored_at:.1f} s after the link came back")
    completed_by = scalar(site.url, "SELECT worker_id FROM conveyor.jobs WHERE id = %s", job)
    assert f":{second}:" in completed_by
    assert scalar(site.url, "SELECT attempt FROM conveyor.jobs WHERE id = %s", job) == 2
    assert cut.alive(), "the cut-off worker recovered instead of dying"
    # Once it finds it lost the election, it stops exporting the gauges it read before the cut.
    wait_until(lambda: len(leaders(hosts[:3])) == 1, timeout=40)
    print(f"one leader again {time.monotonic() - restored_at:.1f} s after the link came back")

    # It rejoins: with the other hosts gone, it runs the next job.
    for worker in rescuers:
        worker.send(signal.SIGKILL)
    (later,) = app.enqueue_many([shop_app.record.spec(n=1)])
    wait_for_state(site.url, later, "completed", timeout=60)
    # (A first attempt may fail on the test app's own side-effect pool, which does not check
    # its connections, as Conveyor's pools do, after the server closed them.)
    assert {pid for _, pid in executions(site.url, later)} == {cut.pid}
