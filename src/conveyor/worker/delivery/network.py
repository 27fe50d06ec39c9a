"""SSRF protection at connect time: the allow-list, and two public hooks of aiohttp's
`TCPConnector` (the HTTP/2 path's `GuardedBackend`, in `negotiated.py`, uses the same checks).

`GuardedResolver` resolves a host name and keeps only the addresses the allow-list permits (so a
name with one private and one public address still reaches the public one), or refuses with a
message that says what to allow. `guarded_socket` is the connector's socket factory: it is
called with the address of every socket the connector is about to connect (IP-literal hosts
skip the resolver, so this is the check that covers every connection) and refuses a private
one. The check is on the address actually connected to, so DNS that answers a public address
to `endpoint add` and 127.0.0.1 to the worker (rebinding) is still refused; TLS keeps the URL's
host name for SNI and certificate checks (aiohttp passes it as `server_hostname`)."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from conveyor.endpoints import address_kind
from conveyor.errors import ConfigError, RefusedAddressError

#: The environment variable that adds networks to the allow-list (comma-separated CIDRs).
ALLOW_ENV = "CONVEYOR_ALLOW_NETWORKS"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class AllowList:
    """Networks a delivery may reach although they are not public (loopback, private, ...)."""

    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, cidrs: Iterable[str], *, environ: Any = None) -> AllowList:
        """The given CIDRs plus those of CONVEYOR_ALLOW_NETWORKS; ConfigError on a bad one."""
        env = (os.environ if environ is None else environ).get(ALLOW_ENV, "")
        found: list[Network] = []
        for text in [*cidrs, *env.split(",")]:
            text = text.strip()
            if not text:
                continue
            try:
                found.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                raise ConfigError(
                    f"--allow-network / {ALLOW_ENV}: {text!r} is not a network; give a CIDR"
                    " such as 10.0.0.0/8 or 127.0.0.1/32"
                ) from None
        return cls(tuple(found))

    def refusal(self, address: Address) -> str | None:
        """Why a delivery may not connect to `address`, or None when it may."""
        kind = address_kind(address)
        if kind is None or any(address in net for net in self.networks):
            return None
        return (
            f"refused to connect to {address}: it is a {kind} address (SSRF protection); allow"
            f" it with --allow-network {address}/{address.max_prefixlen} or"
            f" {ALLOW_ENV}={address}/{address.max_prefixlen} on the delivering worker"
        )

    def check(self, address: str) -> None:
        """RefusedAddressError when a delivery may not connect to the IP `address`."""
        refusal = self.refusal(_address(address))
        if refusal is not None:
            raise RefusedAddressError(refusal)

    def permitted(self, host: str, addresses: Sequence[str]) -> list[str]:
        """The addresses `host` resolved to that a delivery may connect to, in order;
        RefusedAddressError naming the host when there are some and none may be used."""
        kept = [a for a in addresses if self.refusal(_address(a)) is None]
        if addresses and not kept:
            raise RefusedAddressError(f"{host}: {self.refusal(_address(addresses[0]))}")
        return kept


#: What `TCPConnector(socket_factory=...)` is called with: getaddrinfo's tuple for one address.
AddrInfo = tuple[int, int, int, str, tuple[Any, ...]]


def _address(host: str) -> Address:
    return ipaddress.ip_address(host.split("%")[0])  # a scoped IPv6 address: drop the zone


def is_ip(host: str) -> bool:
    """Whether `host` is an IP address (then it is connected to as it is, with no lookup)."""
    try:
        _address(host)
    except ValueError:
        return False
    return True


class GuardedResolver(AbstractResolver):
    """Resolves with getaddrinfo (in a thread, as aiohttp's default does) and returns only the
    addresses the allow-list permits; RefusedAddressError when it permits none."""

    def __init__(self, allow: AllowList, inner: AbstractResolver | None = None) -> None:
        self._allow = allow
        self._inner = inner or ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        kept = set(self._allow.permitted(host, [r["host"] for r in found]))
        return [r for r in found if r["host"] in kept]

    async def close(self) -> None:
        await self._inner.close()


def guarded_socket(allow: AllowList) -> Callable[[AddrInfo], socket.socket]:
    """A socket factory for `TCPConnector` that refuses to make a socket for an address the
    allow-list does not permit: every connection the connector makes passes here."""

    def make(addr_info: AddrInfo) -> socket.socket:
        family, kind, proto, _, address = addr_info
        allow.check(str(address[0]))
        return socket.socket(family=family, type=kind, proto=proto)

    return make
