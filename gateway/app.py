"""Assembling a gateway from its configuration: journal, inventory, profiles, templates,
credentials, driver registry → engine → gRPC server."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from drivers.base import Driver, PayloadFormat
from drivers.registry import Registry
from gateway.engine import Engine
from gateway.engine.limits import EngineSettings
from gateway.errors import ConfigurationError, DriverUnavailableError

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, kw_only=True)
class GatewayConfig:
    listen: str = "127.0.0.1:50051"
    data_dir: Path = Path("var")
    inventory_path: Path | None = None  # default: <data_dir>/inventory.yaml
    journal_url: str = ""  # default: sqlite:///<data_dir>/journal.db
    templates_dir: Path = REPO_ROOT / "templates"
    profiles_dir: Path = REPO_ROOT / "device_profiles"
    shutdown_grace_s: float = 5.0
    retention: timedelta = timedelta(0)
    """Final activations last updated longer ago are pruned once an hour; 0 keeps everything."""
    tls_cert: Path | None = None
    tls_key: Path | None = None
    client_ca: Path | None = None
    """Mutual TLS: callers need a certificate from this CA; their identity is read from it."""
    policy_path: Path | None = None
    """Who may do what (gateway/api/policy.py); needs client_ca."""
    insecure: bool = False
    """Allow plain text on a non-loopback address."""
    max_activations_per_caller: int = EngineSettings.max_activations_per_caller
    """Concurrent activations per caller identity; one more is RESOURCE_EXHAUSTED."""
    max_dry_runs_per_caller: int = EngineSettings.max_dry_runs_per_caller
    """Concurrent DryRuns per caller identity."""
    max_subscriptions_per_caller: int = EngineSettings.max_subscriptions_per_caller
    """Concurrent Subscribe streams per caller identity."""
    self_healing_interval_s: float = 10.0
    """Fallout that an unreachable device caused is retried in the background from this long on
    (gateway/engine/healing.py); 0 turns it off."""
    journal_lease_s: float = 15.0
    """PostgreSQL journal shared by replicas: each one's lease; another replica takes a replica's
    work over within this time of it stopping (killed, frozen, cut off). See gateway/journal/lease.py."""

    subscribers_path: Path | None = None
    """Result events to these subscribers (webhooks, NATS; gateway/events/, docs/events.md); None: no
    dispatcher (the events are still written to the journal's outbox)."""

    pools_path: Path | None = None
    """Resource pools applied to the journal at start (docs/pools.md); None: the journal's as they are."""

    def resolved_inventory(self) -> Path:
        return self.inventory_path or self.data_dir / "inventory.yaml"

    def resolved_journal_url(self) -> str:
        return self.journal_url or f"sqlite:///{(self.data_dir / 'journal.db').resolve()}"


def build_engine(config: GatewayConfig) -> Engine:
    from drivers.registry import drivers
    from gateway.inventory import CredentialResolver, Inventory, ProfileStore, install_redaction, select_endpoint
    from gateway.journal import JournalOptions, open_journal
    from gateway.render import TemplateStore

    from gateway.permissions import private_dir

    private_dir(config.data_dir)  # 0700: the journal holds device configuration
    inventory_path = config.resolved_inventory()
    if inventory_path.exists():
        inventory = Inventory.load(inventory_path)
    else:
        log.warning("no inventory at %s: every device will be unknown until one is given (--inventory)", inventory_path)
        inventory = Inventory.from_mapping({"devices": {}}, source="(no inventory)")
    warn_unchecked_host_keys(inventory)
    credentials = CredentialResolver()
    profiles = ProfileStore.load(config.profiles_dir)
    templates = TemplateStore(root=config.templates_dir)
    check_catalogue(profiles=profiles, templates=templates, registry=drivers)
    engine = Engine(
        journal=open_journal(config.resolved_journal_url(), options=JournalOptions(lease_s=config.journal_lease_s)),
        inventory=inventory,
        profiles=profiles,
        templates=templates,
        credentials=credentials,
        registry=drivers,
        select_endpoint=select_endpoint,
        retention=config.retention,
        settings=EngineSettings(max_activations_per_caller=config.max_activations_per_caller,
                                max_dry_runs_per_caller=config.max_dry_runs_per_caller,
                                max_subscriptions_per_caller=config.max_subscriptions_per_caller,
                                self_healing_interval_s=config.self_healing_interval_s),
    )
    # logs mask every credential resolved so far and the secret parameters of running activations
    install_redaction(lambda: credentials.known_secrets() | engine.ctx.secret_values())
    return engine


def build_dispatcher(config: GatewayConfig, engine: Engine) -> Any:
    """The result-event dispatcher of ``config.subscribers_path`` for ``engine`` (not started:
    start it once the engine is; stop it before the engine), or None without a subscribers file.
    The file is read and checked here, its secrets resolved: a problem stops the start."""
    if config.subscribers_path is None:
        return None
    from gateway.events import Dispatcher, load_subscribers

    events = load_subscribers(config.subscribers_path)
    if not events.subscribers:
        log.warning("%s lists no subscriber: no result event is delivered", config.subscribers_path)
        return None
    return Dispatcher(engine.journal, events, groups_of=engine.inventory.groups_of)


def load_pools(config: GatewayConfig) -> list[Any]:
    """The pools file's definitions (checked before anything starts), or none."""
    if config.pools_path is None:
        return []
    from gateway.resources.file import load_pools_file

    return load_pools_file(config.pools_path)


async def apply_pools(engine: Engine, defs: list[Any]) -> None:
    """Apply the pools file's definitions to the started engine's journal, idempotently: a change
    that would orphan an allocation in use stops the start with the error."""
    if not defs:
        return
    from gateway.engine.context import utcnow

    outcomes = await engine.journal.pools.define(defs, replace=True, now=utcnow())
    for name, outcome in outcomes:
        if outcome != "unchanged":
            log.info("pool %s %s", name, outcome)
    log.info("%d pool(s) from the pools file: %d new or changed", len(outcomes),
             sum(o != "unchanged" for _, o in outcomes))


def warn_unchecked_host_keys(inventory: Any) -> list[str]:
    """Log a WARNING naming every device whose SSH host key is not checked (the inventory says
    ``host_key_check: false``): anyone in the middle can answer for it. Returns their names."""
    unchecked: list[str] = inventory.unchecked_host_keys()
    if unchecked:
        log.warning("SSH host key check is OFF for %d device(s) (host_key_check: false in %s): %s; their SSH "
                    "connections are not authenticated and credentials can be taken by whoever answers for them",
                    len(unchecked), inventory.source, ", ".join(unchecked))
    return unchecked


def edge_settings(config: GatewayConfig) -> tuple[Any, Any]:
    """TLS and authentication of the gRPC edge, checked before anything starts (files read, the
    policy parsed, the combination consistent): ``(ServerTls | None, AuthMode)``."""
    from gateway.api.auth import AuthMode
    from gateway.api.policy import Policy
    from gateway.api.tls import ServerTls

    if (config.tls_cert is None) != (config.tls_key is None):
        raise ConfigurationError("TLS needs both --tls-cert and --tls-key")
    tls = None
    if config.tls_cert is not None and config.tls_key is not None:
        tls = ServerTls(cert=config.tls_cert, key=config.tls_key, client_ca=config.client_ca)
        tls.credentials()  # read and check the files now: a bad one stops the start, named
    elif config.client_ca is not None:
        raise ConfigurationError("--client-ca needs TLS: give --tls-cert and --tls-key too")
    if config.policy_path is not None and config.client_ca is None:
        raise ConfigurationError("a policy needs caller identities: give --client-ca (mutual TLS)")
    policy = Policy.load(config.policy_path) if config.policy_path is not None else None
    auth = AuthMode(identities=config.client_ca is not None, policy=policy)
    if auth.identities and policy is None:
        log.warning("mutual TLS without a policy: every caller with a certificate from %s may do everything "
                    "(give --policy to limit roles and scopes)", config.client_ca)
    return tls, auth


def check_catalogue(*, profiles: Any, templates: Any, registry: Registry[Driver]) -> dict[str, PayloadFormat]:
    """Refuse to start when a profile or a template disagrees with what its driver sends.

    For every profile: its driver is loaded, the profile's ``settings`` and ``quirks`` are parsed
    by the driver (:meth:`Driver.settings_from <drivers.base.Driver.settings_from>`: an unknown key
    or a bad value is refused) and its payload format read; a profile stating another
    ``settings.render_format`` is refused. Then every template of those platforms is checked in
    that format (statically, and by rendering its service's examples). One
    :class:`ConfigurationError` lists every problem, each naming its file. Returns platform →
    payload format."""
    problems: list[str] = []
    formats: dict[str, PayloadFormat] = {}
    for platform in profiles.platforms():
        profile = profiles.get(platform)
        where = profile.source or f"device profile {platform!r}"
        try:
            driver = registry.get(profile.driver)
        except DriverUnavailableError as exc:
            log.warning("%s: %s; tasks on platform %r will be refused", where, exc.message, platform)
            continue
        except ConfigurationError as exc:
            problems.append(f"{where}: {exc.message}")
            continue
        try:
            driver.settings_from(profile)
        except ConfigurationError as exc:
            problems.append(exc.message if where in exc.message else f"{where}: {exc.message}")
        fmt = driver.payload_format
        stated = profile.settings.get("render_format")
        if stated is not None and stated != fmt.value:
            problems.append(f"{where}: settings.render_format is {stated!r}, but driver {profile.driver!r} sends "
                            f"{fmt.value}: a profile cannot change what its driver sends (remove the setting)")
            continue
        formats[platform] = fmt
    try:
        templates.check(formats=formats)
    except ConfigurationError as exc:
        problems.append(exc.message)
    if problems:
        raise ConfigurationError("; ".join(problems))
    return formats


__all__ = ["GatewayConfig", "build_dispatcher", "build_engine", "warn_unchecked_host_keys"]
