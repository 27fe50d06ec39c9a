"""Who may use the dashboard: a bearer token, HTTP basic auth (conveyor.http_auth, shared with
the metrics endpoint), or a session cookie.

A browser with the token signs in once through a small form; the cookie it gets holds an HMAC
of the token, never the token itself, and is HttpOnly and SameSite=Strict. Every secret is
compared in constant time (hmac.compare_digest).
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import quote

from starlette.requests import HTTPConnection
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from conveyor.http_auth import Credentials

SESSION_COOKIE = "conveyor_session"
#: Paths reachable without credentials (the sign-in form itself).
PUBLIC_PATHS = frozenset({"/login"})


def session_value(credentials: Credentials) -> str:
    """The cookie value a signed-in browser holds: an HMAC of the token."""
    assert credentials.token is not None
    key = credentials.token.encode()
    return hmac.new(key, b"conveyor-dashboard-session", hashlib.sha256).hexdigest()


def token_matches(credentials: Credentials, offered: str) -> bool:
    """Constant-time check of a token typed into the sign-in form."""
    return credentials.token is not None and credentials.accepts(f"Bearer {offered}")


def principal(credentials: Credentials, conn: HTTPConnection) -> str | None:
    """How this request proved who it is ('header' or 'session'), or None if it did not."""
    header = conn.headers.get("authorization")
    if header and credentials.required and credentials.accepts(header):
        return "header"
    cookie = conn.cookies.get(SESSION_COOKIE)
    if cookie and credentials.token is not None:
        expected = session_value(credentials)
        if hmac.compare_digest(cookie.encode(), expected.encode()):
            return "session"
    return None


class RequireCredentials:
    """ASGI middleware: refuse every request without valid credentials (when configured).

    A browser (it accepts HTML) is sent to the sign-in form when a token is configured; anything
    else gets 401 with a WWW-Authenticate challenge (basic auth makes the browser ask).
    """

    def __init__(self, app: ASGIApp, credentials: Credentials) -> None:
        self.app = app
        self.credentials = credentials

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not self.credentials.required:
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        if _local_path(scope) in PUBLIC_PATHS or principal(self.credentials, conn) is not None:
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
        return PlainTextResponse(
            "credentials required", 401, headers={"WWW-Authenticate": self.credentials.challenge}
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
