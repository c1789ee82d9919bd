"""The ``agw`` command.

Sub-commands are grouped by concern; each group lives beside the code it drives
(``agw lab ...`` in :mod:`lab.cli`). Every command that shows state has ``--json``.

Exit status: 0 success; 1 the activation did not end as asked (``--watch``: completed, or
rolledBack for ``rollback``); 2 a gRPC error (shown as ``error: CODE: message``), a bad file
or bad usage; 130 interrupted.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

import click

from gateway.cli_events import events
from gateway.cli_journal import journal
from gateway.cli_pki import pki
from gateway.cli_report import report
from gateway.cli_serve import serve
from gateway.terminal import shown
from lab.cli import lab

log = logging.getLogger(__name__)

DEFAULT_SERVER = "127.0.0.1:50051"
STATES = ("acknowledged", "inProgress", "completed", "partial", "failed", "cancelled", "rolledBack", "fallout")


@click.group()
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", envvar="AGW_LOG_FORMAT",
              show_default=True, help="json: one object per line, with the activation, task, device and "
                                      "correlation id of the work each record belongs to.")
def main(verbose: int, log_format: str) -> None:
    """agw: the network activation gateway."""
    from gateway import logs

    logs.configure(level=logging.WARNING - 10 * min(verbose, 2), fmt=log_format)


main.add_command(lab)
main.add_command(journal)
main.add_command(pki)
main.add_command(report)
main.add_command(events)
main.add_command(serve)


# -- helpers ---------------------------------------------------------------------------------
def _json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2))


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {shown(message)}", err=True)
    sys.exit(code)


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    import grpc

    from gateway.api.client import describe_rpc_error
    from gateway.errors import AgwError

    try:
        yield
    except grpc.RpcError as exc:
        _fail(describe_rpc_error(exc))
    except AgwError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


def client_command(f: Callable[..., Any]) -> Callable[..., Any]:
    """Adds --server/--timeout and the TLS options, and hands the command a connected Client as
    first argument."""

    @click.option("--server", envvar="AGW_SERVER", default=DEFAULT_SERVER, show_default=True,
                  help="Gateway address host:port (or $AGW_SERVER).")
    @click.option("--timeout", "timeout_s", type=click.FloatRange(min=0.1), default=60.0, show_default=True,
                  help="Deadline of each call, in seconds (not of --watch).")
    @click.option("--ca", type=click.Path(dir_okay=False, path_type=Path), envvar="AGW_CA",
                  help="TLS: the CA of the gateway's certificate (or $AGW_CA).")
    @click.option("--cert", type=click.Path(dir_okay=False, path_type=Path), envvar="AGW_CERT",
                  help="Mutual TLS: this client's certificate (or $AGW_CERT).")
    @click.option("--key", type=click.Path(dir_okay=False, path_type=Path), envvar="AGW_KEY",
                  help="Mutual TLS: this client's private key (or $AGW_KEY).")
    @click.option("--tls-server-name", envvar="AGW_TLS_SERVER_NAME", default="",
                  help="The name in the gateway's certificate, when it is not the address dialled.")
    @functools.wraps(f)
    def wrapper(*args: Any, server: str, timeout_s: float, ca: Path | None, cert: Path | None, key: Path | None,
                tls_server_name: str, **kwargs: Any) -> Any:
        from gateway.api.client import Client
        from gateway.api.tls import ClientTls

        tls = ClientTls(ca=ca, cert=cert, key=key, server_name=tls_server_name)
        with _errors(), Client(server, timeout_s=timeout_s, tls=tls) as client:
            return f(client, *args, **kwargs)

    return wrapper


def _plain(value: Any) -> Any:
    from gateway.api.convert import to_plain

    return to_plain(value)


def _time(dt: datetime) -> str:
    return dt.astimezone().strftime("%H:%M:%S.%f")[:-3]


def _table(rows: list[list[str]], header: list[str]) -> None:
    rows = [[shown(c) for c in r] for r in rows]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())


def _total_ms(task: Any) -> str:
    return f"{sum(t.duration_ms for t in task.timings):.0f}" if task.timings else "-"


def _error_text(task: Any) -> str:
    if task.error is None:
        if task.rollback is not None and not task.rollback.ok:
            return f"rollback not verified: {task.rollback.reason}"
        return ""
    e = task.error
    return f"{e.kind}: {e.device_error}" if e.device_error is not None else f"{e.kind}: {e.message}"


def _summary(a: Any) -> None:
    flags = ", ".join(x for x in ("atomic" if a.atomic else "non-atomic", "dry-run" if a.dry_run else "") if x)
    ref = f", order {shown(a.order_ref)}" if a.order_ref else ""
    click.echo(f"activation {shown(a.id)}: {a.state.value} ({flags}; request {shown(a.request_id)}{ref})")
    rows = [[t.id, t.device, t.service, t.action.value, t.state.value, _total_ms(t), _error_text(t)] for t in a.tasks]
    _table(rows, ["TASK", "DEVICE", "SERVICE", "ACTION", "STATE", "MS", "ERROR"])


def _indent(text: str, prefix: str = "      ") -> str:
    """Multi-line text from the journal or a device, indented, control characters escaped."""
    return "\n".join(prefix + line for line in shown(text, block=True).rstrip().split("\n"))


def _details(a: Any) -> None:
    _summary(a)
    click.echo(f"created {a.created_at.isoformat()}  updated {a.updated_at.isoformat()}")
    click.echo(f"submitted by {shown(a.submitted_by or 'anonymous')}")
    if a.retry:
        click.echo("retry policy: " + ", ".join(f"{k} {v:g}" for k, v in a.retry.items()) + " (over the profiles')")
    for t in a.tasks:
        click.echo(f"\ntask {shown(t.id)} on {shown(t.device)} ({shown(t.platform or '?')} via "
                   f"{shown(t.driver or '?')}): {t.state.value}")
        if t.depends_on:
            click.echo(f"  depends on: {', '.join(shown(d) for d in t.depends_on)}")
        if t.timings:
            click.echo("  timings: " + ", ".join(f"{shown(x.phase)} {x.duration_ms:.1f}ms" for x in t.timings))
        if t.parameters:
            click.echo("  parameters: " + shown(json.dumps(t.parameters, sort_keys=True, ensure_ascii=False)))
        if t.rendered:
            click.echo("  rendered:\n" + _indent(t.rendered))
        if t.diff:
            click.echo("  diff:\n" + _indent(t.diff))
        if t.verification is not None:
            v = t.verification
            detail = f" {shown(v.detail)}" if v.detail else ""
            click.echo(f"  verification: {'ok' if v.ok else 'FAILED'} ({v.checked} checked){detail}")
            for m in v.mismatches:
                click.echo(f"    - {shown(m)}")
        if t.rollback is not None:
            r = t.rollback
            reason = f": {shown(r.reason)}" if r.reason else ""
            click.echo(f"  rollback: {shown(r.method)}, {'verified' if r.ok else 'NOT verified'}{reason}")
            if not r.ok and r.retryable:
                click.echo("  (the gateway retries this rollback by itself once the device answers)")
            if r.diff:
                click.echo(_indent(r.diff))
        if t.error is not None:
            e = t.error
            click.echo(f"  error: {shown(e.kind)} in {shown(e.phase or '?')}{' (retryable)' if e.retryable else ''}: "
                       f"{shown(e.message)}")
            if e.device_error is not None:
                d = e.device_error
                for label, value in (("tag", d.tag), ("path", d.path), ("line", d.line), ("message", d.message)):
                    if value:
                        click.echo(f"    device {label}: {shown(value)}")
        if t.note:
            click.echo(f"  note: {shown(t.note)}")
        if t.emulated:
            click.echo(f"  emulated: {'; '.join(shown(x) for x in t.emulated)}")
    if a.audit:
        click.echo("\naudit trail:")
        _table([[e.time.astimezone().isoformat(timespec="seconds"), e.actor or "anonymous", e.action,
                 e.task_id or "-", e.note] for e in a.audit], ["TIME", "ACTOR", "ACTION", "TASK", "NOTE"])


def _follow(client: Any, activation_id: str, *, as_json: bool, devices: dict[str, str] | None = None) -> Any:
    """Print every event, then the result; returns the final ActivationResult."""
    if devices is None:
        devices = {t.id: t.device for t in client.get(activation_id).tasks}
    for ev in client.watch(activation_id):
        if as_json:
            click.echo(json.dumps({"event": _plain(ev)}))
        else:
            line = [_time(ev.time), ev.task_id or "-", devices.get(ev.task_id, "-"), ev.phase or "-", ev.state or "-"]
            click.echo("  ".join(shown(c) for c in line) + (f"  {shown(ev.message)}" if ev.message else ""))
    result = client.get(activation_id)
    if as_json:
        click.echo(json.dumps({"activation": _plain(result)}))
    else:
        click.echo("")
        _summary(result)
        if result.state.value == "fallout":
            click.echo(f"\n{shown(activation_id)} needs a person: see `agw fallout list`")
    return result


def _exit_for(result: Any, wanted: str) -> None:
    sys.exit(0 if result.state.value == wanted else 1)


_PAGE_SIZE = click.option("--page-size", type=click.IntRange(0, 1000), default=0,
                          help="At most this many per page (0: the server's default, 50).")
_PAGE_TOKEN = click.option("--page-token", default="", help="Continue a listing where its previous page ended "
                           "(the token it printed; the same filters).")
_ALL_PAGES = click.option("--all", "all_pages", is_flag=True, help="Follow every page.")


def _pages(fetch: Callable[[str], tuple[list[Any], str]], token: str, *, all_pages: bool) -> tuple[list[Any], str]:
    """One page from ``token`` (every page to the end with ``all_pages``) and the next page's token."""
    out: list[Any] = []
    while True:
        items, token = fetch(token)
        out.extend(items)
        if not (all_pages and token):
            return out, token


def _more(token: str) -> None:
    if token:
        click.echo(f"more: --page-token {token}", err=True)


# -- activations -----------------------------------------------------------------------------
@main.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Render and diff against the live devices; change nothing.")
@click.option("--watch", is_flag=True, help="Follow the events; exit 0 only if the activation completed.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--request-id", default="", help="Idempotency key (overrides the file's request_id).")
@client_command
def activate(client: Any, file: Path, dry_run: bool, watch: bool, as_json: bool, request_id: str) -> None:
    """Submit the activation in FILE (YAML)."""
    from gateway.api.activation_file import load_activation
    from gateway.errors import InputError

    try:
        request = load_activation(file, request_id=request_id)
    except InputError as exc:
        for v in exc.violations:
            click.echo(f"error: {file}: {v}", err=True)
        sys.exit(2)
    if dry_run:
        result = client.dry_run(request)
        _json(_plain(result)) if as_json else _details(result)
        _exit_for(result, "completed")
    submitted = client.submit(request)
    if not watch:
        if as_json:
            _json(_plain(submitted))
        else:
            how = "accepted" if submitted.created else "already submitted with this request_id"
            click.echo(f"{submitted.activation_id} ({how})")
        return
    if not as_json:
        click.echo(f"activation {submitted.activation_id}" + ("" if submitted.created else " (already submitted)"))
    devices = {t.id: t.device for t in request.tasks}
    _exit_for(_follow(client, submitted.activation_id, as_json=as_json, devices=devices), "completed")


@main.command()
@click.argument("activation_id")
@click.option("--wait", "wait_s", type=click.FloatRange(0, 300), default=0,
              help="First wait up to this many seconds for the activation to end (final or fallout).")
@click.option("--json", "as_json", is_flag=True)
@client_command
def get(client: Any, activation_id: str, wait_s: float, as_json: bool) -> None:
    """Show an activation: per task state, timings, rendered config, diff, verification, errors."""
    result = client.get(activation_id, wait_s=wait_s)
    _json(_plain(result)) if as_json else _details(result)


@main.command()
@click.argument("activation_id")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@client_command
def watch(client: Any, activation_id: str, as_json: bool) -> None:
    """Follow an activation's events (past ones first); exit 0 only if it completed."""
    _exit_for(_follow(client, activation_id, as_json=as_json), "completed")


@main.command(name="list")
@click.option("--state", "states", multiple=True, type=click.Choice(STATES), help="Only these states (repeatable).")
@click.option("--device", default="", help="Only activations with a task on this device.")
@click.option("--since", type=click.DateTime(), help="Created at or after (local time unless an offset is given).")
@click.option("--until", type=click.DateTime(), help="Created before.")
@_PAGE_SIZE
@_PAGE_TOKEN
@_ALL_PAGES
@click.option("--limit", type=click.IntRange(0, 1000), default=0, hidden=True, help="Deprecated: --page-size.")
@click.option("--json", "as_json", is_flag=True)
@client_command
def list_(client: Any, states: tuple[str, ...], device: str, since: datetime | None, until: datetime | None,
          page_size: int, page_token: str, all_pages: bool, limit: int, as_json: bool) -> None:
    """List activations, newest first, a page at a time (the next page's token on stderr)."""
    from gateway.results import ActivationState

    def fetch(token: str) -> tuple[list[Any], str]:
        return client.list_page(  # type: ignore[no-any-return]
            states=[ActivationState(s) for s in states], device=device, since=since.astimezone() if since else None,
            until=until.astimezone() if until else None, page_size=page_size or limit, page_token=token)

    results, token = _pages(fetch, page_token, all_pages=all_pages)
    if as_json:
        _json(_plain(results))
    else:
        rows = [[a.id, a.state.value, a.created_at.astimezone().isoformat(timespec="seconds"), str(len(a.tasks)),
                 ",".join(sorted({t.device for t in a.tasks})), a.submitted_by or "-", a.request_id, a.order_ref]
                for a in results]
        _table(rows, ["ID", "STATE", "CREATED", "TASKS", "DEVICES", "SUBMITTED BY", "REQUEST", "ORDER"])
    _more(token)


def _after_action(client: Any, result: Any, *, as_json: bool, watch: bool, wanted: str) -> None:
    if watch:
        _exit_for(_follow(client, result.id, as_json=as_json), wanted)
    _json(_plain(result)) if as_json else _summary(result)


@main.command()
@click.argument("activation_id")
@click.option("--json", "as_json", is_flag=True)
@client_command
def cancel(client: Any, activation_id: str, as_json: bool) -> None:
    """Cancel an activation that has not finished."""
    _after_action(client, client.cancel(activation_id), as_json=as_json, watch=False, wanted="cancelled")


@main.command()
@click.argument("activation_id")
@click.option("--watch", is_flag=True, help="Follow the undo; exit 0 only if it ended rolledBack.")
@click.option("--json", "as_json", is_flag=True)
@client_command
def rollback(client: Any, activation_id: str, watch: bool, as_json: bool) -> None:
    """Undo a completed activation (verified against the pre-change snapshots)."""
    _after_action(client, client.rollback(activation_id), as_json=as_json, watch=watch, wanted="rolledBack")


# -- fallout ---------------------------------------------------------------------------------
@main.group()
def fallout() -> None:
    """Tasks that need a person: list, retry, force-rollback, resolve."""


@fallout.command(name="list")
@_PAGE_SIZE
@_PAGE_TOKEN
@_ALL_PAGES
@click.option("--json", "as_json", is_flag=True)
@client_command
def fallout_list(client: Any, page_size: int, page_token: str, all_pages: bool, as_json: bool) -> None:
    """List the tasks in fallout, oldest activation first, a page at a time (the next page's token on stderr)."""
    items, token = _pages(lambda t: client.fallout_page(page_size=page_size, page_token=t), page_token,
                          all_pages=all_pages)
    if as_json:
        _json([{"activation_id": aid, "task": _plain(t)} for aid, t in items])
    else:
        rows = [[aid, t.id, t.device, t.service, t.action.value, _error_text(t)] for aid, t in items]
        _table(rows, ["ACTIVATION", "TASK", "DEVICE", "SERVICE", "ACTION", "REASON"])
    _more(token)


@fallout.command()
@click.argument("activation_id")
@click.argument("task_id", default="")
@click.option("--watch", is_flag=True, help="Follow the retry (it runs in the gateway); exit 0 only if it ended rolledBack.")
@click.option("--json", "as_json", is_flag=True)
@client_command
def retry(client: Any, activation_id: str, task_id: str, watch: bool, as_json: bool) -> None:
    """Retry the rollback of a task in fallout (all of the activation's, without TASK)."""
    _after_action(client, client.retry(activation_id, task_id), as_json=as_json, watch=watch, wanted="rolledBack")


@fallout.command(name="force-rollback")
@click.argument("activation_id")
@click.argument("task_id", default="")
@click.option("--watch", is_flag=True, help="Follow the rollback (it runs in the gateway); exit 0 only if it ended rolledBack.")
@click.option("--json", "as_json", is_flag=True)
@client_command
def force_rollback(client: Any, activation_id: str, task_id: str, watch: bool, as_json: bool) -> None:
    """Restore the pre-change snapshot whatever the device holds now, then verify."""
    _after_action(client, client.force_rollback(activation_id, task_id), as_json=as_json, watch=watch,
                  wanted="rolledBack")


@fallout.command()
@click.argument("activation_id")
@click.argument("task_id")
@click.option("--note", required=True, help="What was done by hand (kept in the journal).")
@click.option("--json", "as_json", is_flag=True)
@client_command
def resolve(client: Any, activation_id: str, task_id: str, note: str, as_json: bool) -> None:
    """Mark a task in fallout as resolved by a person."""
    _after_action(client, client.resolve(activation_id, task_id, note), as_json=as_json, watch=False, wanted="")


# -- drivers ---------------------------------------------------------------------------------
def driver_rows() -> list[dict[str, Any]]:
    """Installed drivers with their declared capabilities; a driver that fails to import is
    listed as unavailable with the reason (the others still load)."""
    from drivers import registry as reg
    from gateway.errors import AgwError

    registry = reg.drivers
    rows: list[dict[str, Any]] = []
    for name in registry.names():
        try:
            info = registry.info(name)
            distribution, target = info.distribution, info.value
        except AgwError:
            distribution, target = "(registered in process)", ""
        row: dict[str, Any] = {"name": name, "distribution": distribution, "entry_point": target}
        try:
            cls = registry.get(name)
            row.update(available=True, reason="", payload_format=cls.payload_format.value,
                       capabilities=list(cls.supported.names()))
        except Exception as exc:  # noqa: BLE001 - any import failure of a plugin is reported, not raised
            reason = str(exc) if isinstance(exc, AgwError) else f"{type(exc).__name__}: {exc}"
            row.update(available=False, reason=reason, payload_format="", capabilities=[])
        rows.append(row)
    return rows


@main.command(name="drivers")
@click.option("--json", "as_json", is_flag=True)
def drivers_(as_json: bool) -> None:
    """List the installed southbound drivers and their declared capabilities."""
    with _errors():
        rows = driver_rows()
    if as_json:
        _json(rows)
        return
    _table(
        [[r["name"], r["distribution"], r["payload_format"],
          ", ".join(r["capabilities"]) if r["available"] else f"unavailable: {r['reason']}"]
         for r in rows],
        ["DRIVER", "DISTRIBUTION", "SENDS", "CAPABILITIES"],
    )



from gateway.cli_pools import pools as _pools  # noqa: E402 - it uses client_command, defined above

main.add_command(_pools)
