"""A real `conveyor api` process on the test database, for the docs' curl examples, the
TypeScript client's HTTP tests and the benchmark."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from tests.dashboard.browser import free_port
from tests.helpers import wait_until


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@contextmanager
def conveyor_api(database_url: str, *args: str) -> Iterator[str]:
    """Run `conveyor api` on a free loopback port until the block ends; yield its base URL."""
    port = free_port()
    env = {**os.environ, "CONVEYOR_DATABASE_URL": database_url}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "conveyor",
            "--log-level",
            "WARNING",
            "api",
            "--port",
            str(port),
            *args,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: process.poll() is not None or _answers(f"{base}/openapi.json"), timeout=30
        )
        if process.poll() is not None:
            raise AssertionError(
                f"conveyor api exited: {process.stderr.read() if process.stderr else ''}"
            )
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
