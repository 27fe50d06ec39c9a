"""`conveyor`: migrate, run workers, inspect and act on jobs, and a demo.

One module per command or command group; `root` holds the global options and reports errors.
Commands reach the database only through public modules (the app, its Client, `conveyor.database`).
"""

from conveyor.cli.root import cli, main

__all__ = ["cli", "main"]
