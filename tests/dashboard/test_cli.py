"""`conveyor dashboard`: loopback by default, no other address without credentials."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from conveyor.cli import cli
from conveyor.http_auth import is_loopback
from tests.helpers import wait_until


def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["dashboard", *args], obj={}, env=env)
    return result.exit_code, result.output


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "example.invalid"])
def test_refuses_a_non_loopback_host_without_credentials(host: str) -> None:
    code, output = _run("--host", host)
    assert code == 2
    assert f"refusing to serve the dashboard on {host} without credentials" in output
    assert "--token" in output and "--host 127.0.0.1" in output


def test_a_username_without_a_password_is_refused(db: str) -> None:
    code, output = _run("--host", "0.0.0.0", "--username", "ops")
    assert code == 2
    assert "both a username and a password" in output


def test_names_the_extra_to_install_when_it_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    code, output = _run()
    assert code == 1
    assert "in your Conveyor checkout, pip install -e '.[dashboard]'" in output


def test_loopback_addresses() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(db: str) -> Iterator[str]:
    """`conveyor dashboard` on all addresses with a token from the environment."""
    port = _free_port()
    env = {**os.environ, "CONVEYOR_DATABASE_URL": db, "CONVEYOR_DASHBOARD_TOKEN": "env-t0ken"}
    process = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "dashboard", "--host", "0.0.0.0", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _status(url + "/login") == 200 or process.poll() is not None, timeout=20)
        assert process.poll() is None, process.communicate()[0].decode()
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def _status(url: str, headers: dict[str, str] | None = None) -> int | None:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def test_served_with_a_token_it_refuses_requests_without_it(served: str) -> None:
    assert _status(served + "/") == 401
    assert _status(served + "/jobs", {"authorization": "Bearer wrong"}) == 401
    assert _status(served + "/jobs", {"authorization": "Bearer env-t0ken"}) == 200


def test_without_credentials_only_loopback_host_headers_are_answered() -> None:
    from conveyor.cli.dashboard import loopback_hosts

    assert loopback_hosts("127.0.0.1") == ["127.0.0.1", "::1", "localhost"]
    assert "::1" in loopback_hosts("[::1]")
