"""`import conveyor` stays light: a process that only enqueues loads no worker runtime."""

from __future__ import annotations

import json
import subprocess
import sys

import conveyor

#: Modules the worker runtime brings; none may load with `import conveyor` alone.
HEAVY = (
    "conveyor.worker",
    "conveyor.maintenance",
    "conveyor.maintenance.alerter",
    "conveyor.maintenance.cron",
    "conveyor.metrics",
    "prometheus_client",
    "conveyor.worker.delivery",
    "httpx2",
    "httpcore2",
    "aiohttp",
    "h2",
    "conveyor.worker.delivery.negotiated",
)


def _loaded_after(program: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running `program`."""
    report = "import json, sys; print(json.dumps(list(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", f"{program}\n{report}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_import_conveyor_loads_no_worker_runtime() -> None:
    loaded = _loaded_after("import conveyor")
    assert sorted(m for m in HEAVY if m in loaded) == []


def test_worker_loads_on_first_use() -> None:
    loaded = _loaded_after("import conveyor; conveyor.Worker")
    assert {"conveyor.worker", "prometheus_client"} <= loaded


def test_lazy_names_resolve_to_the_worker_classes() -> None:
    from conveyor.worker import Worker, WorkerConfig

    assert conveyor.Worker is Worker
    assert conveyor.WorkerConfig is WorkerConfig
    assert {"Worker", "WorkerConfig"} <= set(dir(conveyor))


def test_job_timeout_keeps_its_old_import_path_and_recorded_name() -> None:
    from conveyor.errors import JobTimeout
    from conveyor.worker.executor import JobTimeout as OldHome

    assert OldHome is JobTimeout is conveyor.JobTimeout
    # job errors record "module.qualname": stored histories and log filters still match
    assert f"{JobTimeout.__module__}.{JobTimeout.__qualname__}" == (
        "conveyor.worker.executor.JobTimeout"
    )


def test_unknown_attribute_is_still_an_attribute_error() -> None:
    try:
        conveyor.NoSuchThing  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("conveyor.NoSuchThing did not raise")
