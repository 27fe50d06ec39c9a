"""Who may use the dashboard: a bearer token, HTTP basic auth, or a session cookie.

A browser with the token signs in once through a small form; the cookie it gets holds an HMAC
of the token, never the token itself, and is HttpOnly and SameSite=Strict. Every secret is
compared in constant time (hmac.compare_digest).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import quote

from starlette.requests import HTTPConnection
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from conveyor.errors import ConfigError

SESSION_COOKIE = "conveyor_session"
#: Paths reachable without credentials (the sign-in form itself).
PUBLIC_PATHS = frozenset({"/login"})


@dataclass(frozen=True)
class Credentials:
    """What the dashboard accepts: a token, a username and password, both, or neither."""

    token: str | None = None
    username: str | None = None
    password: str | None = None

    def __post_init__(self) -> None:
        if (self.username is None) != (self.password is None):
            raise ConfigError("give the dashboard both a username and a password, or neither")
        for name in ("token", "username", "password"):
            if getattr(self, name) == "":
                raise ConfigError(f"the dashboard {name} must not be empty")

    @property
    def configured(self) -> bool:
        """True when any credential is set (requests without one are then refused)."""
        return self.token is not None or self.username is not None

    def session_value(self) -> str:
        """The cookie value a signed-in browser holds: an HMAC of the token."""
        assert self.token is not None
        return hmac.new(
            self.token.encode(), b"conveyor-dashboard-session", hashlib.sha256
        ).hexdigest()

    def token_matches(self, offered: str) -> bool:
        """Constant-time check of a token offered in a header or the sign-in form."""
        return self.token is not None and _same(offered, self.token)

    def principal(self, conn: HTTPConnection) -> str | None:
        """Who made this request ('token', 'session' or the username), or None if unknown."""
        header = conn.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and self.token_matches(value.strip()):
            return "token"
        if scheme.lower() == "basic" and self.username is not None and self._basic(value):
            return self.username
        cookie = conn.cookies.get(SESSION_COOKIE)
        if cookie and self.token is not None and _same(cookie, self.session_value()):
            return "session"
        return None

    def _basic(self, value: str) -> bool:
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, sep, password = decoded.partition(":")
        assert self.username is not None and self.password is not None
        # Both compared every time, so the timing says nothing about which one was wrong.
        user_ok = _same(user, self.username)
        password_ok = _same(password, self.password)
        return bool(sep) and user_ok and password_ok


def _same(offered: str, expected: str) -> bool:
    return hmac.compare_digest(offered.encode("utf-8"), expected.encode("utf-8"))


class RequireCredentials:
    """ASGI middleware: refuse every request without valid credentials (when configured).

    A browser (it accepts HTML) is sent to the sign-in form when a token is configured; anything
    else gets 401 with a WWW-Authenticate challenge (basic auth makes the browser ask).
    """

    def __init__(self, app: ASGIApp, credentials: Credentials) -> None:
        self.app = app
        self.credentials = credentials

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not self.credentials.configured:
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        if _local_path(scope) in PUBLIC_PATHS or self.credentials.principal(conn) is not None:
            await self.app(scope, receive, send)
            return
        await self._refuse(conn)(scope, receive, send)

    def _refuse(self, conn: HTTPConnection) -> Response:
        wants_html = "text/html" in conn.headers.get("accept", "")
        if wants_html and self.credentials.token is not None and conn.scope["type"] == "http":
            root = conn.scope.get("root_path", "")
            target = _local_path(conn.scope)
            if conn.url.query:
                target += "?" + conn.url.query
            return RedirectResponse(f"{root}/login?next={quote(target, safe='')}", 303)
        challenge = (
            'Basic realm="conveyor", charset="UTF-8"'
            if self.credentials.username is not None
            else 'Bearer realm="conveyor"'
        )
        return PlainTextResponse(
            "credentials required", 401, headers={"WWW-Authenticate": challenge}
        )


def _local_path(scope: Scope) -> str:
    """The request path inside the dashboard (without the prefix it is mounted under)."""
    path: str = scope.get("path", "/")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path or "/"


def safe_next(target: str | None) -> str:
    """A sign-in's return path, kept inside the dashboard (never another site)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
