"""Endpoint: an HTTP route that jobs are delivered to, signed (Standard Webhooks 1.0).

A job whose task is an endpoint's name is POSTed to the endpoint's URL by a worker serving the
job's queue. Endpoints live in the database (`conveyor.endpoint`), so a team with no Python
code adds them with `conveyor endpoint add`; a Python app can declare them with
`app.endpoint(...)`. This module is light: the HTTP machinery is `conveyor.worker.delivery`,
loaded by workers only.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from conveyor.durations import to_seconds
from conveyor.errors import ConfigError, EndpointSecretError

#: Most secrets an endpoint signs with at once: the current one and the next, while rotating.
MAX_SECRETS = 2
#: How long a delivery may take when the endpoint does not say.
DEFAULT_TIMEOUT = 30.0
#: The prefix of a secret that names an environment variable of the delivering worker.
ENV_PREFIX = "env:"
#: Standard Webhooks' prefix of a base64 secret; its decoded bytes are the HMAC key.
WHSEC_PREFIX = "whsec_"


@dataclass(frozen=True)
class Endpoint:
    """An endpoint as stored: its secrets are as given (literal or `env:NAME`); `masked()`
    shows them without giving them away."""

    name: str
    url: str
    secrets: tuple[str, ...]
    timeout: float = DEFAULT_TIMEOUT
    queue: str = "default"
    #: Retry 4xx answers other than 410, 429 and 503 (by default they fail the job at once).
    retry_4xx: bool = False
    created_at: datetime | None = field(default=None, compare=False)
    updated_at: datetime | None = field(default=None, compare=False)
    #: Why a stored endpoint is unusable (a row written by hand that fails the checks); its
    #: deliveries fail with this message. None for every endpoint built in Python.
    problem: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.problem is not None:
            return
        check_name(self.name)
        check_url(self.url)
        object.__setattr__(self, "secrets", check_secrets(self.secrets))
        object.__setattr__(self, "timeout", check_timeout(self.timeout))
        if not self.queue:
            raise ConfigError("an endpoint's queue must not be empty, e.g. queue='default'")

    def masked(self) -> tuple[str, ...]:
        """The secrets as they may be shown: `env:NAME` whole, literals cut to a hint."""
        return tuple(mask(s) for s in self.secrets)

    def __repr__(self) -> str:  # never show a secret, even in a traceback
        return (
            f"Endpoint(name={self.name!r}, url={self.url!r}, secrets={self.masked()!r},"
            f" timeout={self.timeout:g}, queue={self.queue!r}, retry_4xx={self.retry_4xx})"
        )


def check_name(name: str) -> str:
    """An endpoint name is a task name: not empty, at most 200 characters."""
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise ConfigError(f"an endpoint name must be 1 to 200 characters, got {name!r}")
    return name


def check_url(url: str) -> str:
    """An absolute http(s) URL with a host and no credentials in it."""
    try:
        parts = urlsplit(url) if isinstance(url, str) else None
        host = parts.hostname if parts is not None else None
    except ValueError as exc:  # "Invalid IPv6 URL"
        raise ConfigError(f"bad endpoint URL {url!r}: {exc}") from None
    if parts is None or parts.scheme not in ("http", "https") or not host:
        raise ConfigError(
            f"an endpoint URL must be absolute http:// or https://, got {url!r}"
            " (e.g. https://example.com/api/jobs/send-receipt)"
        )
    if parts.username or parts.password:
        raise ConfigError("an endpoint URL must not hold credentials; sign with --secret instead")
    try:
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError as exc:
        raise ConfigError(f"bad port in endpoint URL {url!r}: {exc}") from None
    return url


def check_timeout(timeout: float | timedelta) -> float:
    """A delivery timeout: positive, at most an hour."""
    seconds = to_seconds(timeout, "endpoint timeout", positive=True)
    if seconds > 3600:
        raise ConfigError(f"an endpoint timeout must be at most 3600 seconds, got {seconds:g}")
    return seconds


def check_secrets(secrets: Any) -> tuple[str, ...]:
    """One or two secrets, each a literal (a `whsec_` one must be valid base64) or `env:NAME`."""
    if isinstance(secrets, str):
        secrets = (secrets,)
    found = tuple(secrets)
    if not 1 <= len(found) <= MAX_SECRETS:
        raise ConfigError(
            f"an endpoint needs 1 or {MAX_SECRETS} secrets (2 while rotating), got {len(found)}"
        )
    for secret in found:
        if not isinstance(secret, str) or not secret:
            raise ConfigError("an endpoint secret must be a non-empty string")
        if secret.startswith(ENV_PREFIX):
            if not secret[len(ENV_PREFIX) :].strip():
                raise ConfigError("env: must name an environment variable, e.g. env:RECEIPT_KEY")
        else:
            key_bytes(secret)
    return found


def key_bytes(secret: str) -> bytes:
    """The HMAC key of a literal secret: a `whsec_` secret's decoded bytes, any other string's
    UTF-8 bytes (as the TypeScript verifier reads them)."""
    if secret.startswith(WHSEC_PREFIX):
        try:
            return base64.b64decode(secret[len(WHSEC_PREFIX) :], validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError("a whsec_ secret must be base64 after the prefix") from None
    return secret.encode()


def resolve_secret(secret: str, environ: Any = None) -> bytes:
    """The key a stored secret stands for, reading `env:NAME` from the environment now."""
    if not secret.startswith(ENV_PREFIX):
        return key_bytes(secret)
    name = secret[len(ENV_PREFIX) :]
    value = (os.environ if environ is None else environ).get(name)
    if not value:
        raise EndpointSecretError(
            f"the endpoint's secret is env:{name}, and this worker has no environment variable"
            f" {name}: set it where the worker runs, or store the secret with"
            " `conveyor endpoint set NAME --secret ...`"
        )
    try:
        return key_bytes(value)
    except ConfigError as exc:
        raise EndpointSecretError(f"environment variable {name}: {exc}") from None


def mask(secret: str) -> str:
    """A secret as it may be shown: `env:NAME` whole, a literal as its first characters."""
    if secret.startswith(ENV_PREFIX):
        return secret
    shown = 10 if secret.startswith(WHSEC_PREFIX) else 3
    return f"{secret[:shown]}…({len(secret)} chars)" if len(secret) > shown + 4 else "…"


def generate_secret() -> str:
    """A new random `whsec_` secret (32 bytes)."""
    return WHSEC_PREFIX + base64.b64encode(os.urandom(32)).decode()


def private_address_warning(url: str) -> str | None:
    """Why delivering to this URL will be refused unless allowed: its host resolves to a
    loopback, private, link-local or metadata address (None when it does not, or cannot be
    resolved here)."""
    host = urlsplit(url).hostname or ""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        kind = address_kind(address)
        if kind:
            return (
                f"{host} resolves to {address}, a {kind} address: workers refuse to deliver"
                f" there unless allowed (--allow-network {address}/"
                f"{address.max_prefixlen} or CONVEYOR_ALLOW_NETWORKS)"
            )
    return None


_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}


def address_kind(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """What makes an address unsafe to deliver to, or None for a public address."""
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    if address in _METADATA:
        return "cloud metadata"
    # the specific kinds first: Python counts link-local and unspecified as private too
    for kind in ("loopback", "link_local", "unspecified", "multicast", "private", "reserved"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    if not address.is_global:
        return "non-global"
    return None


def endpoint_changes(
    *,
    url: str | None = None,
    secret: str | tuple[str, ...] | None = None,
    add_secret: str | None = None,
    timeout: float | timedelta | None = None,
    queue: str | None = None,
    retry_4xx: bool | None = None,
) -> dict[str, Any]:
    """The checked changes of `set_endpoint` (None keeps a setting)."""
    if secret is not None and add_secret is not None:
        raise ConfigError("give secret (replaces the secrets) or add_secret (rotation), not both")
    if queue is not None and not queue:
        raise ConfigError("an endpoint's queue must not be empty")
    return {
        "url": None if url is None else check_url(url),
        "secrets": None if secret is None else list(check_secrets(secret)),
        "add_secret": None if add_secret is None else check_secrets(add_secret)[0],
        "timeout_seconds": None if timeout is None else check_timeout(timeout),
        "queue": queue,
        "retry_4xx": retry_4xx,
    }
