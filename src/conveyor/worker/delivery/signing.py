"""Standard Webhooks 1.0 signatures: `v1,<base64 HMAC-SHA256(key, "id.timestamp.body")>`,
one per current secret, space-separated, so a receiver that knows either secret of a rotation
accepts the request."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence


def signature(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,...` signature of the request with `key`."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    mac = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def signature_header(keys: Sequence[bytes], message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header: a signature per key, space-separated."""
    return " ".join(signature(key, message_id, timestamp, body) for key in keys)


def verify(
    header: str, keys: Sequence[bytes], message_id: str, timestamp: int, body: bytes
) -> bool:
    """Whether any `v1` signature of `header` matches any key (constant-time compares, every
    pair compared, so the time says nothing about which one matched)."""
    expected = [signature(key, message_id, timestamp, body) for key in keys]
    matched = False
    for given in header.split(" "):
        if not given.startswith("v1,"):
            continue
        for want in expected:
            matched |= hmac.compare_digest(given.encode(), want.encode())
    return matched
