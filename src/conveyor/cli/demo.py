"""`conveyor demo`: a small shop whose orders enqueue receipts, drained by a worker."""

from __future__ import annotations

import sys

import click


@click.command()
@click.option(
    "--orders",
    default=40,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Orders the shop places.",
)
@click.option(
    "--fail-rate",
    default=0.3,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of first attempts the e-mail provider fails (they are retried).",
)
def demo(orders: int, fail_rate: float) -> None:
    """A small shop: orders enqueue receipts transactionally, a worker drains them."""
    from conveyor.demo import run_demo  # loads the worker runtime: only when the demo runs

    sys.exit(run_demo(orders=orders, fail_rate=fail_rate))
