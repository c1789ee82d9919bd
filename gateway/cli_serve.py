"""``agw serve``: run the gateway (gRPC edge, engine, result-event dispatcher, metrics endpoint)
until SIGTERM/SIGINT; its options come from the command line, the environment or ``--config FILE``."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

import click

from gateway.cli_journal import DURATION, _fail


def _load_serve_config(ctx: click.Context, _param: click.Parameter, path: Path | None) -> Path | None:
    """``--config FILE``: a YAML mapping of serve options (their long names, ``_`` or ``-``),
    used where neither the command line nor the environment gives one."""
    if path is None:
        return None
    from gateway.inventory._yaml import load_yaml_file

    from gateway.errors import AgwError

    try:
        data = load_yaml_file(path)
    except AgwError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param_hint="--config") from None
    if not isinstance(data, dict):
        raise click.BadParameter(f"{path}: must be a mapping of serve options", ctx=ctx, param_hint="--config")
    names = {p.name for p in ctx.command.params if p.name and p.name != "config"}
    aliases = {"journal": "journal_url"}
    known: dict[str, Any] = {}
    for key, value in data.items():
        name = aliases.get(str(key).replace("-", "_"), str(key).replace("-", "_"))
        if name not in names:
            raise click.BadParameter(f"{path}: unknown option {key!r} (known: {', '.join(sorted(names))})",
                                     ctx=ctx, param_hint="--config")
        known[name] = value
    ctx.default_map = {**(ctx.default_map or {}), **known}
    return path


@click.command()
@click.option("--config", type=click.Path(dir_okay=False, exists=True, path_type=Path), envvar="AGW_CONFIG",
              is_eager=True, expose_value=False, callback=_load_serve_config,
              help="YAML file of these options (or $AGW_CONFIG); the command line and environment win.")
@click.option("--listen", envvar="AGW_LISTEN", default="127.0.0.1:50051", show_default=True,
              help="gRPC address host:port (or $AGW_LISTEN). Plain text only on loopback: see --tls-cert.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), envvar="AGW_DATA_DIR",
              default="var", show_default=True, help="Journal and state directory (or $AGW_DATA_DIR).")
@click.option("--inventory", type=click.Path(dir_okay=False, path_type=Path), help="Inventory YAML (default DATA_DIR/inventory.yaml).")
@click.option("--journal", "journal_url", default="", help="Journal URL (default sqlite in DATA_DIR).")
@click.option("--templates", type=click.Path(file_okay=False, path_type=Path), help="Service templates directory.")
@click.option("--profiles", type=click.Path(file_okay=False, path_type=Path), help="Device profiles directory.")
@click.option("--tls-cert", type=click.Path(dir_okay=False, path_type=Path), envvar="AGW_TLS_CERT",
              help="Serve TLS with this certificate (PEM; or $AGW_TLS_CERT).")
@click.option("--tls-key", type=click.Path(dir_okay=False, path_type=Path), envvar="AGW_TLS_KEY",
              help="The certificate's private key (PEM; or $AGW_TLS_KEY).")
@click.option("--client-ca", type=click.Path(dir_okay=False, path_type=Path), envvar="AGW_CLIENT_CA",
              help="Mutual TLS: callers need a certificate from this CA; its SAN URI (else CN) is their identity.")
@click.option("--policy", type=click.Path(dir_okay=False, path_type=Path), envvar="AGW_POLICY",
              help="Who may do what (YAML: grants of roles reader/submitter/operator/admin); needs --client-ca.")
@click.option("--insecure", is_flag=True, envvar="AGW_INSECURE",
              help="Allow plain text on an address that is not loopback (never in production).")
@click.option("--retention", type=DURATION, envvar="AGW_RETENTION", default="0", show_default=True,
              help="Once an hour, delete final activations last updated longer ago than this (30d, 2w; or "
                   "$AGW_RETENTION); 0 keeps everything.")
@click.option("--max-activations-per-caller", type=click.IntRange(min=1), default=200, show_default=True,
              envvar="AGW_MAX_ACTIVATIONS_PER_CALLER",
              help="Activations one caller identity may have running at once; one more is RESOURCE_EXHAUSTED.")
@click.option("--max-dry-runs-per-caller", type=click.IntRange(min=1), default=4, show_default=True,
              envvar="AGW_MAX_DRY_RUNS_PER_CALLER", help="DryRuns one caller identity may have running at once.")
@click.option("--max-subscriptions-per-caller", type=click.IntRange(min=1), default=8, show_default=True,
              envvar="AGW_MAX_SUBSCRIPTIONS_PER_CALLER", help="Subscribe streams one caller identity may have open.")
@click.option("--journal-lease-s", type=click.FloatRange(min=1, max=3600), default=15.0, show_default=True,
              envvar="AGW_JOURNAL_LEASE_S",
              help="PostgreSQL journal shared by several replicas: a replica that stops (killed, frozen, cut off) "
                   "has its unfinished work taken over by another within this many seconds.")
@click.option("--self-healing-interval-s", type=click.FloatRange(min=0, max=3600), default=10.0, show_default=True,
              envvar="AGW_SELF_HEALING_INTERVAL_S",
              help="Retry, in the background, fallout that an unreachable device caused: first after this long, "
                   "then with doubling waits; 0 turns it off.")
@click.option("--otlp-endpoint", default="", envvar="OTEL_EXPORTER_OTLP_ENDPOINT", metavar="URL",
              help="Export traces (a span per call, activation, task and phase) with OTLP over HTTP to this "
                   "collector (http://host:4318); off when not given.")
@click.option("--metrics-listen", default="", envvar="AGW_METRICS_LISTEN", metavar="HOST:PORT",
              help="Serve Prometheus metrics at http://HOST:PORT/metrics (plain HTTP: keep it on loopback or a "
                   "monitoring network).")
@click.option("--subscribers", type=click.Path(dir_okay=False, exists=True, path_type=Path), envvar="AGW_SUBSCRIBERS",
              help="Deliver result events as CloudEvents (signed webhooks, NATS JetStream) to the subscribers in "
                   "this YAML file (docs/events.md); without it, none is sent (they wait in the journal's outbox).")
@click.option("--pools", "pools_file", type=click.Path(dir_okay=False, exists=True, path_type=Path), envvar="AGW_POOLS",
              help="Resource pools (YAML, docs/pools.md), applied to the journal at start: new pools created, "
                   "changed ones updated unless that would orphan an allocation in use (then the start stops).")
def serve(listen: str, data_dir: Path, inventory: Path | None, journal_url: str, templates: Path | None,
          profiles: Path | None, tls_cert: Path | None, tls_key: Path | None, client_ca: Path | None,
          policy: Path | None, insecure: bool, retention: timedelta, max_activations_per_caller: int,
          max_dry_runs_per_caller: int, max_subscriptions_per_caller: int, journal_lease_s: float,
          self_healing_interval_s: float, otlp_endpoint: str, metrics_listen: str, subscribers: Path | None,
          pools_file: Path | None = None) -> None:
    """Run the gateway until SIGTERM/SIGINT, then shut down gracefully."""
    from gateway.app import GatewayConfig, build_engine
    from gateway.errors import AgwError

    kw: dict[str, Any] = {}
    if templates is not None:
        kw["templates_dir"] = templates
    if profiles is not None:
        kw["profiles_dir"] = profiles
    kw["retention"] = retention
    kw["max_activations_per_caller"] = max_activations_per_caller
    kw["max_dry_runs_per_caller"] = max_dry_runs_per_caller
    kw["max_subscriptions_per_caller"] = max_subscriptions_per_caller
    kw["journal_lease_s"] = journal_lease_s
    kw["self_healing_interval_s"] = self_healing_interval_s
    kw["subscribers_path"] = subscribers
    kw["pools_path"] = pools_file
    config = GatewayConfig(listen=listen, data_dir=data_dir, inventory_path=inventory, journal_url=journal_url,
                           tls_cert=tls_cert, tls_key=tls_key, client_ca=client_ca, policy_path=policy,
                           insecure=insecure, **kw)
    if metrics_listen:
        from gateway.metrics import parse_listen

        try:
            parse_listen(metrics_listen)
        except ValueError as exc:
            _fail(str(exc))
    from gateway import tracing

    provider = tracing.configure(otlp_endpoint=otlp_endpoint)
    try:
        asyncio.run(_serve(config, build_engine, metrics_listen=metrics_listen))
    except AgwError as exc:
        _fail(str(exc))
    finally:
        if provider is not None:
            provider.shutdown()  # the spans still batched are sent


async def _serve(config: Any, build_engine: Callable[[Any], Any], *, metrics_listen: str = "") -> None:
    from gateway.api.server import serve as serve_grpc
    from gateway.api.tls import check_listen
    from gateway.app import apply_pools, build_dispatcher, edge_settings, load_pools
    from gateway.errors import ConfigurationError

    tls, auth = edge_settings(config)  # before anything starts: a bad file or setting stops here
    check_listen(config.listen, tls=tls, insecure=config.insecure, warn=False)  # refuse before starting
    engine = build_engine(config)
    dispatcher = build_dispatcher(config, engine)  # the subscribers file checked before anything starts
    pool_defs = load_pools(config)  # the pools file too
    await engine.start()
    try:
        await apply_pools(engine, pool_defs)
    except BaseException:
        await engine.stop(grace_s=0)
        raise
    from gateway.offload import tune_serving_process

    tune_serving_process()  # once started: the event loop answers first (see the function)
    stop = asyncio.Event()

    async def stop_when_the_claim_is_lost() -> None:
        await engine.lost_claim.wait()
        stop.set()

    watcher = asyncio.create_task(stop_when_the_claim_is_lost())
    endpoint = None
    if metrics_listen:
        from gateway.metrics import MetricsEndpoint

        endpoint = MetricsEndpoint(engine, listen=metrics_listen)
        try:
            port = endpoint.start()
        except OSError as exc:
            watcher.cancel()
            await engine.stop(grace_s=0)
            raise ConfigurationError(f"--metrics-listen {metrics_listen}: {exc.strerror or exc}") from None
        click.echo(f"agw: metrics on http://{endpoint.host}:{port}/metrics", err=True)
    if dispatcher is not None:
        await dispatcher.start()
    try:
        await serve_grpc(
            engine,
            listen=config.listen,
            grace_s=config.shutdown_grace_s,
            on_ready=lambda port: click.echo(f"agw: listening on {config.listen} (port {port})", err=True),
            tls=tls,
            auth=auth,
            insecure=config.insecure,
            stop=stop,
        )
    finally:
        watcher.cancel()
        if endpoint is not None:
            await endpoint.stop()
        if dispatcher is not None:
            await dispatcher.stop()
        await engine.stop(grace_s=0 if engine.lost_claim.is_set() else 10.0)
    if engine.lost_claim.is_set():
        from gateway.errors import FencedError

        raise FencedError("this gateway lost its journal lease and stopped; another replica takes its work over")


__all__ = ["serve"]
