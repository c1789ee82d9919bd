"""``agw report``: fulfilment KPIs from the journal (:mod:`gateway.report`), as a text table,
``--json`` or a self-contained ``--html`` page with charts; run against the store directly."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import click

from gateway.cli_journal import DURATION, _fail
from gateway.terminal import shown
@click.command()
@click.option("--since", "since_ago", type=DURATION, default="1d", show_default=True,
              help="Activations created this long ago or later: 12h, 30d, 2w ...")
@click.option("--until", "until_ago", type=DURATION, default="0", show_default=True,
              help="... and created before this long ago (0: now).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable figures.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write a self-contained HTML page with charts here.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), envvar="AGW_DATA_DIR",
              default="var", show_default=True, help="The gateway's data directory (or $AGW_DATA_DIR).")
@click.option("--journal", "journal_url", default="", help="Journal URL (default sqlite in DATA_DIR).")
@click.option("--inventory", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="For device groups (default DATA_DIR/inventory.yaml, if there).")
def report(since_ago: timedelta, until_ago: timedelta, as_json: bool, html_path: Path | None, data_dir: Path,
           journal_url: str, inventory: Path | None) -> None:
    """Fulfilment KPIs from the journal: completion time, fallout, rollback and first-time-right
    rates, time in fallout and top fallout reasons, overall and by service, platform, device group
    and order reference."""
    from gateway import report as kpi
    from gateway.app import GatewayConfig
    from gateway.errors import AgwError

    if until_ago >= since_ago:
        raise click.BadParameter("must be less than --since", param_hint="--until")
    config = GatewayConfig(data_dir=data_dir, journal_url=journal_url, inventory_path=inventory)
    if not journal_url and not (data_dir / "journal.db").is_file():
        _fail(f"no journal at {data_dir / 'journal.db'} (give --data-dir or --journal)")
    now = datetime.now(timezone.utc)
    since, until = now - since_ago, now - until_ago
    groups_of = _groups_of(config.resolved_inventory())
    try:
        rows = asyncio.run(_kpi_rows(config.resolved_journal_url(), since, until))
    except AgwError as exc:
        _fail(str(exc))
    figures = kpi.compute(rows, since=since, until=until, groups_of=groups_of)
    if html_path is not None:
        from gateway.report_html import render

        html_path.write_text(render(figures), encoding="utf-8")
    if as_json:
        click.echo(json.dumps(kpi.as_json(figures), indent=2))
    else:
        click.echo(kpi.text_table(figures, shown=shown))
        if html_path is not None:
            click.echo(f"\nwritten: {html_path}")


def _groups_of(path: Path) -> Callable[[str], frozenset[str]]:
    if not path.is_file():
        return lambda device: frozenset()
    from gateway.inventory import Inventory

    inventory = Inventory.load(path)
    return inventory.groups_of


async def _kpi_rows(url: str, since: datetime, until: datetime) -> Any:
    from gateway.journal import open_journal

    async with open_journal(url) as j:
        return await j.kpi_rows(since, until)


__all__ = ["report"]
