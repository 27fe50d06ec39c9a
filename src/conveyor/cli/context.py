"""How a command finds its app: `--app MODULE:APP`, else a bare app on the database URL; and
the first step of every command that uses the database, connecting once."""

from __future__ import annotations

import importlib
import os
import sys

import click

from conveyor import database
from conveyor.app import Conveyor


def load_app(target: str) -> Conveyor:
    """Import `module:attribute` and return the Conveyor app it names."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise click.BadParameter(f"expected MODULE:APP (e.g. myproject.jobs:app), got {target!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.BadParameter(f"cannot import {module_name!r}: {exc}") from None
    app = getattr(module, attr, None)
    if not isinstance(app, Conveyor):
        raise click.BadParameter(f"{target!r} is not a conveyor.Conveyor app")
    return app


def app_from(ctx: click.Context) -> Conveyor:
    """The app of --app (or a bare one) on a database it has just connected to."""
    target = ctx.obj.get("app")
    app = load_app(target) if target else Conveyor(ctx.obj.get("database_url"))
    app.set_default_database_url(ctx.obj.get("database_url"))
    ctx.call_on_close(app.close)  # its pool must not outlive the command (CliRunner, embedding)
    check_database(app.database_url)
    return app


def check_database(url: str) -> None:
    """Connect once to `url`; raise a one-line ClickException naming the cause and fix."""
    trouble = database.diagnose(url)
    if trouble is not None:
        raise click.ClickException(str(trouble))
