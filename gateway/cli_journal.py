"""``agw journal``: the journal's upkeep, run against its store directly (no gateway needed).

``agw journal prune --older-than 30d [--dry-run]`` deletes the final activations last updated
before then, with their tasks and events; safe beside a running gateway (each step is one short
write transaction, and the gateway's writer re-reads what it finds changed). A gateway can do the
same by itself once an hour: ``agw serve --retention 30d``.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import click

from gateway.terminal import shown


class Duration(click.ParamType[timedelta, Any]):
    """A duration: a whole number and a unit, s, m, h, d or w (``12h``, ``30d``, ``2w``); ``0``."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> timedelta:
        if isinstance(value, timedelta):
            return value
        from gateway.engine.retention import parse_duration

        try:
            return parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


DURATION = Duration()


@click.group()
def journal() -> None:
    """The journal: retention of old activations."""


@journal.command()
@click.option("--older-than", type=DURATION, required=True,
              help="Delete what was last updated longer ago than this: 12h, 30d, 2w ...")
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), envvar="AGW_DATA_DIR",
              default="var", show_default=True, help="The gateway's data directory (or $AGW_DATA_DIR).")
@click.option("--journal", "journal_url", default="", help="Journal URL (default sqlite in DATA_DIR).")
def prune(older_than: timedelta, dry_run: bool, data_dir: Path, journal_url: str) -> None:
    """Delete final activations (completed, partial, failed, cancelled, rolledBack) last updated
    longer ago than --older-than, with their tasks and events. Activations still in flight or with
    a task in fallout are kept."""
    from gateway.app import GatewayConfig
    from gateway.errors import AgwError

    if older_than <= timedelta(0):
        raise click.BadParameter("must be more than 0", param_hint="--older-than")
    if not journal_url and not (data_dir / "journal.db").is_file():
        _fail(f"no journal at {data_dir / 'journal.db'} (give --data-dir or --journal)")
    url = GatewayConfig(data_dir=data_dir, journal_url=journal_url).resolved_journal_url()
    cutoff = datetime.now(timezone.utc) - older_than
    try:
        count = asyncio.run(_prune(url, cutoff, dry_run=dry_run))
    except AgwError as exc:
        _fail(str(exc))
    when = cutoff.astimezone().isoformat(timespec="seconds")
    verb = "would be deleted" if dry_run else "deleted"
    click.echo(f"{count} final activation(s) last updated before {when} {verb}")


async def _prune(url: str, cutoff: datetime, *, dry_run: bool) -> int:
    from gateway.journal import open_journal

    async with open_journal(url) as j:
        pruned: int = await j.prune(cutoff, dry_run=dry_run)
    return pruned


def _fail(message: str) -> None:
    click.echo(f"error: {shown(message)}", err=True)
    sys.exit(2)


__all__ = ["DURATION", "Duration", "journal"]
