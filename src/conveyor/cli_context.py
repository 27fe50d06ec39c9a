"""How a CLI command finds its app: `--app MODULE:APP`, else a bare app on the database URL."""

from __future__ import annotations

import importlib
import os
import sys

import click
import psycopg

from conveyor.app import Conveyor
from conveyor.cli_database import check_database, trouble_of
from conveyor.errors import ConveyorError, DatabaseUnavailableError


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


def _app_from(ctx: click.Context) -> Conveyor:
    """The app of --app (or a bare one) on a database it has just connected to."""
    target = ctx.obj.get("app")
    app = load_app(target) if target else Conveyor(ctx.obj.get("database_url"))
    app.set_default_database_url(ctx.obj.get("database_url"))
    ctx.call_on_close(app.close)  # its pool must not outlive the command (CliRunner, embedding)
    check_database(app.database_url)
    return app


class CommandGroup(click.Group):
    """Turns errors a command did not handle into one line naming the cause and the fix: a
    database whose schema is older than this Conveyor (a missing table, column or function:
    run `conveyor migrate`), a database lost mid-command, and any ConveyorError."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (
            psycopg.errors.UndefinedTable,
            psycopg.errors.UndefinedColumn,
            psycopg.errors.UndefinedFunction,
        ) as exc:
            detail = str(exc).splitlines()[0]
            raise click.ClickException(
                f"the database does not have this Conveyor's schema ({detail}); run"
                " `conveyor migrate`"
            ) from None
        except DatabaseUnavailableError as exc:
            raise click.ClickException(str(trouble_of(exc.__cause__ or exc))) from None
        except psycopg.OperationalError as exc:
            raise click.ClickException(str(trouble_of(exc))) from None
        except ConveyorError as exc:
            raise click.ClickException(str(exc)) from None
