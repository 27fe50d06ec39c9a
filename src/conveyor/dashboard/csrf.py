"""CSRF defence for the dashboard's actions, and the signed flash message shown after one.

Every action is a POST form carrying a token derived from a random per-browser cookie
(HttpOnly, SameSite=Strict) and the server's secret: a page on another site can neither read
the cookie nor compute the token. The request must also come from this origin (Origin header,
else Referer). GET requests never change anything.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

CSRF_COOKIE = "conveyor_csrf"
CSRF_FIELD = "csrf_token"
FLASH_COOKIE = "conveyor_flash"


class Signer:
    """HMAC-SHA256 with the dashboard's secret key."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def sign(self, purpose: str, value: str) -> str:
        message = f"{purpose}\x00{value}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def verify(self, purpose: str, value: str, signature: str) -> bool:
        return hmac.compare_digest(self.sign(purpose, value).encode(), signature.encode())


def browser_id(request: Request) -> str:
    """This browser's CSRF cookie value, or a new one (set by remember_browser)."""
    existing = request.cookies.get(CSRF_COOKIE)
    if existing and len(existing) >= 32:
        return existing
    created: str = request.state.__dict__.setdefault("new_browser_id", secrets.token_urlsafe(32))
    return created


def form_token(request: Request, signer: Signer) -> str:
    """The token every action form of this page carries."""
    return signer.sign("csrf", browser_id(request))


def remember_browser(request: Request, response: Response) -> None:
    """Set the CSRF cookie when this response introduced a new one."""
    new = request.state.__dict__.get("new_browser_id")
    if new:
        response.set_cookie(
            CSRF_COOKIE,
            new,
            httponly=True,
            samesite="strict",
            path=cookie_path(request),
            secure=request.url.scheme == "https",
        )


def refusal(request: Request, signer: Signer, submitted: str | None) -> str | None:
    """Why this POST must be refused (None when it may go on)."""
    if not same_origin(request):
        return "cross-origin request refused (Origin/Referer is not this dashboard)"
    cookie = request.cookies.get(CSRF_COOKIE)
    if not cookie or not submitted or not signer.verify("csrf", cookie, submitted):
        return "missing or invalid CSRF token; reload the page and try again"
    return None


def same_origin(request: Request) -> bool:
    """True when the Origin header (else the Referer) names this host and scheme."""
    expected = (request.url.scheme, request.url.netloc)
    origin = request.headers.get("origin")
    if origin is not None and origin != "null":
        parts = urlsplit(origin)
        return (parts.scheme, parts.netloc) == expected
    referer = request.headers.get("referer")
    if referer:
        parts = urlsplit(referer)
        return (parts.scheme, parts.netloc) == expected
    return False


def cookie_path(request: Request) -> str:
    root: str = request.scope.get("root_path", "")
    return root or "/"


def set_flash(request: Request, response: Response, signer: Signer, message: str) -> None:
    """Show `message` once on the next page (signed: no one else can plant one)."""
    encoded = base64.urlsafe_b64encode(message.encode()).decode()
    response.set_cookie(
        FLASH_COOKIE,
        f"{encoded}.{signer.sign('flash', encoded)}",
        httponly=True,
        samesite="strict",
        path=cookie_path(request),
        max_age=60,
    )


def take_flash(request: Request, signer: Signer) -> str | None:
    """The pending flash message, if a valid one is there (the page then clears it)."""
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw or "." not in raw:
        return None
    encoded, _, signature = raw.rpartition(".")
    if not signer.verify("flash", encoded, signature):
        return None
    try:
        return base64.urlsafe_b64decode(encoded.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        return None
