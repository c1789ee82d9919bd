"""``agw events``: the result events' deliveries, read and replayed on the journal directly (no
gateway needed; safe beside running ones: each command is one short transaction).

``agw events list [--state pending|delivered|dead|new] [--subscriber NAME] [--activation ID] [--json]``
shows the deliveries, newest event first (``new``: events no dispatcher has fanned out yet).
``agw events replay EVENT_ID`` makes every delivery of that event pending again (due now, its
attempts and retry window from zero); ``agw events replay --dead`` every dead letter;
``--subscriber NAME`` narrows either (and, with an EVENT_ID, sends the event to a subscriber it
never went to). A running dispatcher picks them up at its next round.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click

from gateway.terminal import shown

_STATES = ("pending", "delivered", "dead", "new")

_DATA_DIR = click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), envvar="AGW_DATA_DIR",
                         default="var", show_default=True, help="The gateway's data directory (or $AGW_DATA_DIR).")
_JOURNAL = click.option("--journal", "journal_url", default="", help="Journal URL (default sqlite in DATA_DIR).")


@click.group()
def events() -> None:
    """Result events sent to subscribers (webhooks, NATS): list deliveries, replay them."""


def _url(data_dir: Path, journal_url: str) -> str:
    from gateway.app import GatewayConfig

    if not journal_url and not (data_dir / "journal.db").is_file():
        _fail(f"no journal at {data_dir / 'journal.db'} (give --data-dir or --journal)")
    return GatewayConfig(data_dir=data_dir, journal_url=journal_url).resolved_journal_url()


async def _with_outbox(url: str, what: str, **kw: Any) -> Any:
    from gateway.journal import open_journal

    async with open_journal(url) as j:
        return await getattr(j.outbox, what)(**kw)


def _run(url: str, what: str, **kw: Any) -> Any:
    from gateway.errors import AgwError

    try:
        return asyncio.run(_with_outbox(url, what, **kw))
    except AgwError as exc:
        _fail(str(exc))


def _when(value: datetime | None) -> str:
    return value.astimezone().isoformat(timespec="seconds") if value is not None else "-"


@events.command(name="list")
@click.option("--state", type=click.Choice(_STATES), default=None, help="Only deliveries in this state.")
@click.option("--subscriber", default="", help="Only deliveries to this subscriber.")
@click.option("--activation", "activation_id", default="", help="Only the events of this activation.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_DATA_DIR
@_JOURNAL
def list_(state: str | None, subscriber: str, activation_id: str, limit: int, as_json: bool, data_dir: Path,
          journal_url: str) -> None:
    """List deliveries of result events, newest event first."""
    from gateway.journal.codec import to_plain

    rows = _run(_url(data_dir, journal_url), "list", state=state or "", subscriber=subscriber,
                activation_id=activation_id, limit=limit)
    if as_json:
        click.echo(json.dumps([to_plain(r) for r in rows], indent=2))
        return
    table = [[r.event_id, r.type.rsplit(".", 1)[-1], r.activation_id, r.subscriber or "-", r.state, str(r.attempts),
              _when(r.next_attempt_at) if r.state == "pending" else _when(r.delivered_at), r.last_error]
             for r in rows]
    header = ["EVENT", "OUTCOME", "ACTIVATION", "SUBSCRIBER", "STATE", "ATTEMPTS", "NEXT/DELIVERED", "LAST ERROR"]
    rendered = [[shown(c) for c in r] for r in [header, *table]]
    widths = [max(len(r[i]) for r in rendered) for i in range(len(header))]
    for r in rendered:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


@events.command()
@click.argument("event_id", required=False, default="")
@click.option("--dead", is_flag=True, help="Every dead letter (instead of one EVENT_ID).")
@click.option("--subscriber", default="", help="Only the deliveries to this subscriber.")
@_DATA_DIR
@_JOURNAL
def replay(event_id: str, dead: bool, subscriber: str, data_dir: Path, journal_url: str) -> None:
    """Send EVENT_ID again (whatever its deliveries' states), or every dead letter (--dead)."""
    if bool(event_id) == dead:
        raise click.UsageError("give an EVENT_ID or --dead (not both)")
    count = _run(_url(data_dir, journal_url), "replay", now=datetime.now(timezone.utc), event_id=event_id, dead=dead,
                 subscriber=subscriber)
    what = f"event {event_id}" if event_id else "dead letters"
    click.echo(f"{count} deliver{'y' if count == 1 else 'ies'} of {shown(what)} pending again")
    if not count:
        sys.exit(1)


def _fail(message: str) -> None:
    click.echo(f"error: {shown(message)}", err=True)
    sys.exit(2)


__all__ = ["events"]
