"""SSRF protection at connect time: resolve the host, check every address, connect only to an
allowed one. The check is on the address actually connected to, so DNS that answers a public
address to `endpoint add` and 127.0.0.1 to the worker (rebinding) is still refused; TLS keeps the
URL's host name for SNI and certificate checks (httpcore passes it to start_tls)."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpcore2

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


class GuardedBackend(httpcore2.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to addresses the allow-list permits."""

    def __init__(self, allow: AllowList, inner: httpcore2.AsyncNetworkBackend | None = None):
        self._allow = allow
        self._inner = inner or httpcore2.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        addresses = await self._resolve(host, port, timeout)
        refusals: list[str] = []
        last: Exception | None = None
        for address in addresses:
            refusal = self._allow.refusal(address)
            if refusal:
                refusals.append(refusal)
                continue
            try:
                return await self._inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
                last = exc
        if last is not None:
            raise last
        raise RefusedAddressError(f"{host}: {refusals[0]}")

    async def _resolve(self, host: str, port: int, timeout: float | None) -> list[Address]:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except TimeoutError:
            raise httpcore2.ConnectTimeout(f"resolving {host} timed out") from None
        except OSError as exc:
            raise httpcore2.ConnectError(f"cannot resolve {host}: {exc}") from None
        seen: list[Address] = []
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
            if address not in seen:
                seen.append(address)
        return seen

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore2.AsyncNetworkStream:
        raise RefusedAddressError("deliveries never use unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)
