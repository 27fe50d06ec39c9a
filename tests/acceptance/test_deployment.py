"""The deployment files a user copies (deploy/): each checked by the tool that judges it, the
grace periods agreeing across them and with the worker, and the command each one starts run for
real: a worker that becomes ready and stops cleanly on SIGTERM.

systemd itself cannot run here (no init in a container), so its unit is checked with
`systemd-analyze verify` and its ExecStart run by hand; Kubernetes manifests are validated
against the API schemas with kubernetes-validate (a dev dependency, schemas bundled).
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import conveyor
from tests.acceptance.conftest import ROOT
from tests.acceptance.test_health import probe
from tests.helpers import component_missing, require_tool, wait_until

pytestmark = pytest.mark.slow

DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "systemd" / "conveyor-worker.service"
MANIFESTS = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
PROCFILE = DEPLOY / "Procfile"
#: The app the files name, and the one the tests run in its place.
THEIR_APP, OUR_APP = "myapp.jobs:app", "tests.acceptance.bouncer_app:app"
#: After the grace period the worker's own waits are bounded (worker.py `_shutdown`): running
#: jobs interrupted 5 s, outcomes 10 s, then three waits of CLOSE_TIMEOUT (its loops,
#: deregistering, resigning the leader lease).
BOUNDED_AFTER_GRACE = 5 + 10 + 3 * 5
#: Heroku-style platforms send SIGKILL this long after SIGTERM.
PROCFILE_KILL_AFTER = 30


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT)
    return parser


def _yaml() -> Any:
    try:
        import yaml
    except ImportError:
        component_missing("PyYAML is not installed (pip install -e '.[dev]': kubernetes-validate)")
    return yaml


def _deployment() -> dict[str, Any]:
    yaml = _yaml()
    (doc,) = [
        d for p in MANIFESTS for d in yaml.safe_load_all(p.read_text()) if d["kind"] == "Deployment"
    ]
    return dict(doc)


def _procfile() -> dict[str, str]:
    lines = [line for line in PROCFILE.read_text().splitlines() if line and line[0] != "#"]
    return dict(line.split(": ", 1) for line in lines)


def _grace(args: list[str]) -> float:
    joined = " ".join(args)
    found = re.search(r"--shutdown-grace[ =](\d+(?:\.\d+)?)", joined)
    assert found, f"no --shutdown-grace in {joined}"
    return float(found[1])


def _unit_command() -> list[str]:
    return shlex.split(_unit()["Service"]["ExecStart"])


def _container() -> dict[str, Any]:
    (container,) = _deployment()["spec"]["template"]["spec"]["containers"]
    return dict(container)


# -- each file judged by its tool ---------------------------------------------------------------


def test_the_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze", "apt-get install systemd")
    # verify checks that ExecStart exists: point the unit's placeholders at this checkout
    text = UNIT.read_text().replace("/opt/conveyor/venv", sys.prefix)
    unit = tmp_path / UNIT.name
    unit.write_text(text.replace("/opt/conveyor/app", str(ROOT)))
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    # an unknown or misspelt key is only a warning: any output fails the test
    assert (done.returncode, done.stdout + done.stderr) == (0, "")

    unit.write_text(unit.read_text().replace("TimeoutStopSec=", "TimeoutStopSek="))
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    assert "Unknown key 'TimeoutStopSek'" in done.stderr, "the check catches a misspelt key"


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_the_kubernetes_manifests_pass_the_api_schema(path: Path) -> None:
    validator = _kubernetes_validate()
    for doc in _yaml().safe_load_all(path.read_text()):
        validator.validate(doc, validator.latest_version(), strict=True)


def test_the_schema_check_catches_a_misspelt_field() -> None:
    validator = _kubernetes_validate()
    broken = _deployment()
    spec = broken["spec"]["template"]["spec"]
    spec["terminationGracePeriodSecond"] = spec.pop("terminationGracePeriodSeconds")
    with pytest.raises(validator.ValidationError):
        validator.validate(broken, validator.latest_version(), strict=True)


def _kubernetes_validate() -> Any:
    try:
        import kubernetes_validate
    except ImportError:
        component_missing("kubernetes-validate is not installed (pip install -e '.[dev]')")
    return kubernetes_validate


# -- the numbers agree ----------------------------------------------------------------------


def test_grace_periods_agree_across_the_files_and_the_worker() -> None:
    default = conveyor.WorkerConfig().shutdown_grace
    unit, container = _unit()["Service"], _container()
    assert _grace(_unit_command()) == default
    assert _grace([*container["command"], *container["args"]]) == default
    stop = int(unit["TimeoutStopSec"])
    pod = _deployment()["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert stop == pod, "systemd and Kubernetes give a stopping worker the same time"
    assert stop >= default + BOUNDED_AFTER_GRACE, "the kill must not cut a shutdown short"
    assert (unit["KillSignal"], unit["Restart"]) == ("SIGTERM", "on-failure")
    procfile_grace = _grace(shlex.split(_procfile()["worker"]))
    assert procfile_grace + 10 <= PROCFILE_KILL_AFTER


def test_probes_ask_the_worker_health_endpoints_on_its_metrics_port() -> None:
    container = _container()
    port = re.search(r"--metrics-port[ =](\d+)", " ".join(container["args"]))
    assert port is not None
    (named,) = container["ports"]
    assert named["containerPort"] == int(port[1])
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": named["name"]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": named["name"]}


# -- the commands run -----------------------------------------------------------------------


def _runnable(command: list[str]) -> list[str]:
    """The file's command with our app, this Python, and a free metrics port."""
    program, *args = command
    assert Path(program).name == "conveyor", command
    args = [OUR_APP if a == THEIR_APP else a for a in args]
    args = [re.sub(r"^(--metrics-port=)\d+$", r"\g<1>0", a) for a in args]
    if "--metrics-port" in args:
        args[args.index("--metrics-port") + 1] = "0"
    else:
        args += ["--metrics-port", "0"]
    return [sys.executable, "-m", "conveyor", *args]


COMMANDS = {
    "systemd": _unit_command,
    "kubernetes": lambda: [*_container()["command"], *_container()["args"]],
    "procfile": lambda: shlex.split(_procfile()["worker"]),
}


@pytest.mark.parametrize("source", sorted(COMMANDS))
def test_the_command_starts_a_worker_that_gets_ready_and_stops_cleanly(
    source: str, db: str, tmp_path: Path
) -> None:
    command = _runnable(COMMANDS[source]())
    log = tmp_path / "worker.log"
    env = {**os.environ, "CONVEYOR_DATABASE_URL": db, "CONVEYOR_METRICS_TOKEN": "t0ken"}
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)
    try:
        found = wait_until(lambda: re.search(r"metrics at http://[\d.]+:(\d+)/", log.read_text()))
        wait_until(lambda: probe(int(found[1]), "/readyz") == (200, "ok\n"))
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, log.read_text()
    finally:
        process.kill()
        process.wait()


def test_every_worker_option_the_docs_and_files_use_exists() -> None:
    from click.testing import CliRunner

    from conveyor.cli import cli

    usage = CliRunner().invoke(cli, ["worker", "--help"]).output
    texts = [
        (ROOT / "docs" / "deployment.md").read_text(),
        (ROOT / "README.md").read_text(),
        UNIT.read_text(),
        PROCFILE.read_text(),
        *(p.read_text() for p in MANIFESTS),
    ]
    used = {
        option
        for text in texts
        for line in text.splitlines()
        if "conveyor worker" in line or line.strip().startswith('- "--')
        for option in re.findall(r"(--[a-z][a-z0-9-]+)", line)
    }
    used |= set(re.findall(r"`(--[a-z][a-z0-9-]+)`", texts[0]))
    assert used, "no options found"
    assert sorted(o for o in used if o not in usage) == []
