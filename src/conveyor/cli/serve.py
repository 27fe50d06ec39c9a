"""What `conveyor dashboard` and `conveyor api` share: the extras they need, the loopback
names a server without credentials answers, and serving an ASGI app with uvicorn."""

from __future__ import annotations

from typing import Any

import click

#: Conveyor is not on PyPI yet: an extra installs from a checkout.
INSTALL_HINT = "in your Conveyor checkout, pip install -e '.[{extra}]'"


def missing_extra(exc: ImportError, what: str, extra: str) -> click.ClickException:
    """The error for a server whose extra dependencies are not installed."""
    return click.ClickException(
        f"{what} needs its extra dependencies ({exc.name} is missing): "
        + INSTALL_HINT.format(extra=extra)
    )


def loopback_hosts(host: str) -> list[str]:
    """Host headers a server without credentials answers: loopback names only, so a web page
    whose domain was rebound to 127.0.0.1 cannot drive it from the user's browser."""
    return sorted({"localhost", "127.0.0.1", "::1", host.strip("[]").lower()})


def url_host(host: str) -> str:
    """`host` as it goes in a URL (an IPv6 address in brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def serve(web: Any, host: str, port: int, banner: str) -> None:
    """Print `banner` to stderr and serve `web` until interrupted."""
    import uvicorn

    click.echo(banner, err=True)
    uvicorn.run(web, host=host, port=port, log_level="warning", proxy_headers=False)
