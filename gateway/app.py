"""Assembling a gateway from its configuration: journal, inventory, profiles, templates,
credentials, driver registry → engine → gRPC server."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drivers.base import Driver, PayloadFormat
from drivers.registry import Registry
from gateway.engine import Engine
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

    def resolved_inventory(self) -> Path:
        return self.inventory_path or self.data_dir / "inventory.yaml"

    def resolved_journal_url(self) -> str:
        return self.journal_url or f"sqlite:///{(self.data_dir / 'journal.db').resolve()}"


def build_engine(config: GatewayConfig) -> Engine:
    from drivers.registry import drivers
    from gateway.inventory import CredentialResolver, Inventory, ProfileStore, install_redaction, select_endpoint
    from gateway.journal import open_journal
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
    install_redaction(credentials)
    profiles = ProfileStore.load(config.profiles_dir)
    templates = TemplateStore(root=config.templates_dir)
    check_catalogue(profiles=profiles, templates=templates, registry=drivers)
    return Engine(
        journal=open_journal(config.resolved_journal_url()),
        inventory=inventory,
        profiles=profiles,
        templates=templates,
        credentials=credentials,
        registry=drivers,
        select_endpoint=select_endpoint,
    )


def warn_unchecked_host_keys(inventory: Any) -> list[str]:
    """Log a WARNING naming every device whose SSH host key is not checked (the inventory says
    ``host_key_check: false``): anyone in the middle can answer for it. Returns their names."""
    unchecked = inventory.unchecked_host_keys()
    if unchecked:
        log.warning("SSH host key check is OFF for %d device(s) (host_key_check: false in %s): %s; their SSH "
                    "connections are not authenticated and credentials can be taken by whoever answers for them",
                    len(unchecked), inventory.source, ", ".join(unchecked))
    return unchecked


def check_catalogue(*, profiles: Any, templates: Any, registry: Registry[Driver]) -> dict[str, PayloadFormat]:
    """Refuse to start when a profile or a template disagrees with what its driver sends.

    For every profile: its driver is loaded and its payload format read; a profile stating another
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


__all__ = ["GatewayConfig", "build_engine", "warn_unchecked_host_keys"]
