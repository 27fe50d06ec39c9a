"""Credentials for Conveyor's HTTP endpoints (metrics, dashboard): a bearer token and/or HTTP
basic auth, compared in constant time, and the rule that only loopback may go without them."""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from dataclasses import dataclass

from conveyor.errors import ConfigError


@dataclass(frozen=True)
class Credentials:
    """What a request must present; an instance with nothing set lets every request in."""

    token: str | None = None
    username: str | None = None
    password: str | None = None

    def __post_init__(self) -> None:
        if (self.username is None) != (self.password is None):
            raise ConfigError("basic auth needs both a username and a password")
        if self.token == "" or self.password == "":
            raise ConfigError("an empty token or password would let anyone in; set a real one")

    @property
    def required(self) -> bool:
        """True when requests must authenticate."""
        return self.token is not None or self.username is not None

    def accepts(self, authorization: str | None) -> bool:
        """True when the Authorization header value satisfies these credentials."""
        if not self.required:
            return True
        if not authorization:
            return False
        scheme, _, value = authorization.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer" and self.token is not None:
            return _same(value.strip(), self.token)
        if scheme == "basic" and self.username is not None and self.password is not None:
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return False
            user, sep, password = decoded.partition(":")
            # both compared, always, so the time taken does not tell which one was wrong
            user_ok = _same(user, self.username)
            password_ok = _same(password, self.password)
            return bool(sep) and user_ok and password_ok
        return False

    @property
    def challenge(self) -> str:
        """The WWW-Authenticate header for a refused request."""
        return 'Basic realm="conveyor"' if self.username is not None else 'Bearer realm="conveyor"'


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, credentials: Credentials, what: str) -> None:
    """Refuse to serve `what` beyond this machine without credentials."""
    if not is_loopback(host) and not credentials.required:
        raise ConfigError(
            f"refusing to serve {what} on {host} without credentials: anyone who can reach it"
            f" could read it. Set a token or a username and password, or bind to 127.0.0.1"
        )
