"""A throwaway Postgres server of the test's own: initdb in a temp dir, started and stopped
with pg_ctl, and streaming replicas of it (pg_basebackup -R).

For what the shared test server cannot do: listen on a veth address (tests/netns.py), be
stopped, fail over. Used by the tests and by `python -m bench hosts`, so it needs no pytest.
Run as root, the server runs as the `postgres` user (initdb refuses root)."""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg

#: Where Debian's postgresql-15 puts the server binaries (not on PATH); PG_BINDIR wins.
BINDIRS = ("/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin")


class ToolMissingError(RuntimeError):
    """A binary the server needs is not installed (tests skip, or fail under CI)."""


def bindir() -> Path:
    """The directory of initdb, pg_ctl and pg_basebackup: PG_BINDIR, Debian's server
    packages, PATH, else the binaries of pgserver (the embedded Postgres of the dev extras)."""
    candidates = [os.environ.get("PG_BINDIR", ""), *BINDIRS]
    found = shutil.which("initdb")
    if found:
        candidates.append(str(Path(found).parent))
    embedded = importlib.util.find_spec("pgserver")
    if embedded is not None and embedded.origin:
        candidates.append(str(Path(embedded.origin).parent / "pginstall" / "bin"))
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    raise ToolMissingError(
        "initdb not found (Debian: apt-get install postgresql-15; pip install pgserver; or set"
        " PG_BINDIR)"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Cluster:
    """One server: its data directory, port and addresses. `start()` before use."""

    def __init__(self, datadir: Path, port: int, *, listen: str = "127.0.0.1") -> None:
        self.datadir = datadir
        self.port = port
        self.listen = listen
        self.log_path = datadir.parent / f"{datadir.name}.log"

    @classmethod
    def create(
        cls,
        root: Path,
        name: str,
        *,
        listen: str = "127.0.0.1",
        settings: dict[str, str] | None = None,
    ) -> Cluster:
        """initdb a new server under `root` (trust auth, replication allowed from anywhere)."""
        datadir = root / name
        _prepare_dir(root)
        _run(
            str(bindir() / "initdb"),
            "-D",
            str(datadir),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale",
            "C",
        )
        cluster = cls(datadir, free_port(), listen=listen)
        with open(datadir / "pg_hba.conf", "a") as hba:
            hba.write("host all all 0.0.0.0/0 trust\nhost replication all 0.0.0.0/0 trust\n")
        cluster.configure(
            {
                "wal_level": "replica",
                "max_wal_senders": "10",
                "fsync": "on",
                "max_connections": "200",
                "shared_buffers": "128MB",
                **(settings or {}),
            }
        )
        return cluster

    def configure(self, settings: dict[str, str]) -> None:
        """Append settings to postgresql.conf (later lines win); port and addresses too."""
        lines = {
            "port": str(self.port),
            "listen_addresses": f"'{self.listen}'",
            "unix_socket_directories": f"'{self.datadir.parent}'",
            **settings,
        }
        with open(self.datadir / "postgresql.conf", "a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in lines.items())

    def url(self, dbname: str = "postgres", host: str = "127.0.0.1") -> str:
        return f"postgresql://postgres@{host}:{self.port}/{dbname}"

    def start(self) -> None:
        _run(
            str(bindir() / "pg_ctl"),
            "-D",
            str(self.datadir),
            "-l",
            str(self.log_path),
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; `immediate` is a crash (no shutdown checkpoint, sessions cut)."""
        if (self.datadir / "postmaster.pid").exists():
            subprocess.run(
                [
                    *_as_postgres(),
                    str(bindir() / "pg_ctl"),
                    "-D",
                    str(self.datadir),
                    "-m",
                    mode,
                    "-w",
                    "-t",
                    "60",
                    "stop",
                ],
                capture_output=True,
                check=False,
            )

    def promote(self) -> None:
        """Make a standby the primary; returns when it accepts writes."""
        _run(str(bindir() / "pg_ctl"), "-D", str(self.datadir), "-w", "-t", "60", "promote")

    def replica(self, name: str, *, slot: str | None = None) -> Cluster:
        """A streaming standby of this (running) server: pg_basebackup -R into a sibling
        directory, on its own port. Not started."""
        datadir = self.datadir.parent / name
        args = [
            "-D",
            str(datadir),
            "-d",
            f"host=127.0.0.1 port={self.port} user=postgres",
            "-R",
            "-X",
            "stream",
            "--no-sync",
            "-c",
            "fast",
        ]
        if slot:
            args += ["-C", "-S", slot]
        # application_name: the name synchronous_standby_names lists.
        _run(str(bindir() / "pg_basebackup"), *args)
        standby = Cluster(datadir, free_port(), listen=self.listen)
        standby.configure({})
        # -R wrote primary_conninfo into postgresql.auto.conf, read last: name it there.
        with open(datadir / "postgresql.auto.conf", "a") as auto:
            auto.write(
                f"primary_conninfo = 'host=127.0.0.1 port={self.port} user=postgres"
                f" application_name={name}'\n"
            )
        return standby

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def execute(self, query: str, dbname: str = "postgres") -> None:
        with psycopg.connect(self.url(dbname), autocommit=True) as conn:
            conn.execute(query.encode())


def make_root(prefix: str = "cv-pg-") -> Path:
    """A temp directory the server's user can write (short, for the unix socket's path)."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    _prepare_dir(root)
    return root


def _prepare_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(path, _postgres_user().pw_uid, _postgres_user().pw_gid)


def _postgres_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise ToolMissingError(
            "run as root, the test servers run as the user `postgres`, which does not exist"
            " (useradd --system postgres)"
        ) from None


def _as_postgres() -> list[str]:
    if os.geteuid() != 0:
        return []
    if shutil.which("runuser") is None:
        raise ToolMissingError("runuser not found (needed to run Postgres as root's tests)")
    return ["runuser", "-u", "postgres", "--"]


def _run(*cmd: str) -> None:
    done = subprocess.run([*_as_postgres(), *cmd], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
        )
