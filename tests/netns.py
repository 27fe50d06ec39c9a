"""Worker hosts simulated as Linux network namespaces on one machine.

A bridge on the host side holds the address Postgres listens on (`Network.server_ip`); every
simulated host is a network namespace with its own address, joined to the bridge by a veth
pair. `Network.cut(host)` takes the host's link down (packets vanish, no reset, as when a
cable is pulled); `restore(host)` brings it back. Names are unique per run and everything is
removed on `close()`, also after a failure.

Needs root and `ip` (iproute2). Shared by the tests and `python -m bench hosts`, so it needs no
pytest: a missing tool or root raises ToolMissingError."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import uuid
from dataclasses import dataclass

from tests.pgcluster import ToolMissingError


def check_available() -> None:
    """Raise ToolMissingError unless namespaces can be made here (root, `ip`)."""
    if shutil.which("ip") is None:
        raise ToolMissingError("ip not found on PATH (Debian: apt-get install iproute2)")
    if os.geteuid() != 0:
        raise ToolMissingError("network namespaces need root")


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")


@dataclass(frozen=True)
class Host:
    """One simulated host: its namespace, its address and the host side of its link."""

    namespace: str
    ip: str
    link: str

    def prefix(self) -> tuple[str, ...]:
        """Prepend to a command to run it on this host."""
        return ("ip", "netns", "exec", self.namespace)


class Network:
    """A bridge and its hosts. Use as a context manager, or call close()."""

    def __init__(self) -> None:
        check_available()
        self.tag = uuid.uuid4().hex[:6]
        # 10.A.B.0/24, random per run, so parallel runs (and tests/chaos) do not clash.
        a, b = random.randint(100, 250), random.randint(0, 255)
        self._net = f"10.{a}.{b}"
        self.server_ip = f"{self._net}.1"
        self.bridge = f"cvb{self.tag}"
        self.hosts: list[Host] = []
        _ip("link", "add", self.bridge, "type", "bridge")
        try:
            _ip("addr", "add", f"{self.server_ip}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
        except Exception:
            self.close()
            raise

    def add_host(self) -> Host:
        """A new namespace with its own address, linked to the bridge."""
        n = len(self.hosts) + 1
        host = Host(f"cv{self.tag}h{n}", f"{self._net}.{10 + n}", f"cv{self.tag}v{n}")
        peer = f"cv{self.tag}p{n}"
        _ip("netns", "add", host.namespace)
        self.hosts.append(host)
        _ip("link", "add", host.link, "type", "veth", "peer", "name", peer)
        _ip("link", "set", peer, "netns", host.namespace)
        _ip("link", "set", host.link, "master", self.bridge)
        _ip("link", "set", host.link, "up")
        ns = ("netns", "exec", host.namespace, "ip")
        _ip(*ns, "addr", "add", f"{host.ip}/24", "dev", peer)
        _ip(*ns, "link", "set", peer, "up")
        _ip(*ns, "link", "set", "lo", "up")
        return host

    def cut(self, host: Host) -> None:
        """Take the host's link down: its packets are dropped, its connections hang."""
        _ip("link", "set", host.link, "down")

    def restore(self, host: Host) -> None:
        _ip("link", "set", host.link, "up")

    def close(self) -> None:
        for host in self.hosts:
            subprocess.run(["ip", "link", "del", host.link], capture_output=True, check=False)
            subprocess.run(["ip", "netns", "del", host.namespace], capture_output=True, check=False)
        self.hosts = []
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
