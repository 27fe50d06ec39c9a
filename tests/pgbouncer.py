"""A real PgBouncer in transaction mode in front of the test database: Debian's `pgbouncer`,
started per use on a free port with a generated ini, and stopped after.

Transaction mode hands each transaction to whichever server connection is free, so nothing
that lives in a session (LISTEN, session advisory locks, SET, server-side prepared
statements) survives from one transaction to the next: what Conveyor must cope with behind
most managed poolers.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg

from tests.helpers import component_missing


def pgbouncer_path() -> str:
    """The pgbouncer binary (Debian puts it in /usr/sbin, not always on PATH)."""
    path = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/bin")
    if path is None:
        component_missing("pgbouncer not found (apt-get install pgbouncer)")
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Bouncer:
    """One pgbouncer: `url` reaches the database through it. stop() and start() take it down
    and bring it back on the same port (a pooler restarting, as the database would seem to)."""

    def __init__(self, command: list[str], log: Path, url: str) -> None:
        self.command = command
        self.log_path = log
        self.url = url
        self.process: subprocess.Popen[bytes] | None = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def start(self) -> None:
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT)
        _wait_ready(self)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


@contextmanager
def pgbouncer(database_url: str, *, pool_size: int = 20) -> Iterator[Bouncer]:
    """Run pgbouncer (pool_mode = transaction) in front of `database_url`'s database."""
    binary = pgbouncer_path()
    info = psycopg.conninfo.conninfo_to_dict(database_url)
    dbname = str(info.get("dbname") or "postgres")
    user = str(info.get("user") or "postgres")
    host = str(info.get("host") or "127.0.0.1")
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="conveyor-pgbouncer-") as tmp:
        folder = Path(tmp)
        os.chmod(folder, 0o755)  # pgbouncer refuses root: it runs as another user below
        (folder / "users.txt").write_text(f'"{user}" ""\n')
        target = [f"host={host}", f"port={info.get('port') or 5432}", f"dbname={dbname}"]
        if info.get("password"):
            target.append(f"password={info['password']}")
        ini = folder / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            f"{dbname} = {' '.join(target)} user={user}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {folder / 'users.txt'}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {pool_size}\n"
            "max_client_conn = 500\n"
            # as a managed pooler in transaction mode: no reset query between clients
            "server_reset_query =\n"
            "ignore_startup_parameters = extra_float_digits,options\n"
        )
        command = [binary, str(ini)]
        if os.geteuid() == 0:
            command[1:1] = ["-u", _unprivileged_user(host)]
        auth = quote(user) + (f":{quote(str(info['password']))}" if info.get("password") else "")
        url = f"postgresql://{auth}@127.0.0.1:{port}/{dbname}"
        bouncer = Bouncer(command, folder / "pgbouncer.log", url)
        try:
            bouncer.start()
            yield bouncer
        finally:
            bouncer.stop()


def _unprivileged_user(host: str) -> str:
    """Who pgbouncer runs as: the owner of a unix-socket directory (the embedded server's,
    whose socket only its owner may reach), else postgres or nobody."""
    if host.startswith("/"):
        owner = os.stat(host).st_uid
        if owner != 0:
            return pwd.getpwuid(owner).pw_name
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    component_missing("pgbouncer refuses to run as root and no postgres or nobody user exists")


def _wait_ready(bouncer: Bouncer) -> None:
    deadline = time.monotonic() + 15
    last: Any = None
    while time.monotonic() < deadline:
        if bouncer.process is None or bouncer.process.poll() is not None:
            raise AssertionError(f"pgbouncer exited at start:\n{bouncer.log()}")
        try:
            with psycopg.connect(bouncer.url, connect_timeout=2, prepare_threshold=None) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError as exc:
            last = exc
            time.sleep(0.05)
    raise AssertionError(f"pgbouncer did not accept connections ({last}):\n{bouncer.log()}")
