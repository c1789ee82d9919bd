"""Assembling a gateway from its configuration: journal, inventory, profiles, templates,
credentials, driver registry → engine → gRPC server."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from gateway.engine import Engine

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

    config.data_dir.mkdir(parents=True, exist_ok=True)
    inventory_path = config.resolved_inventory()
    if inventory_path.exists():
        inventory = Inventory.load(inventory_path)
    else:
        log.warning("no inventory at %s: every device will be unknown until one is given (--inventory)", inventory_path)
        inventory = Inventory.from_mapping({"devices": {}}, source="(no inventory)")
    credentials = CredentialResolver()
    install_redaction(credentials)
    return Engine(
        journal=open_journal(config.resolved_journal_url()),
        inventory=inventory,
        profiles=ProfileStore.load(config.profiles_dir),
        templates=TemplateStore(root=config.templates_dir),
        credentials=credentials,
        registry=drivers,
        select_endpoint=select_endpoint,
    )


__all__ = ["GatewayConfig", "build_engine"]
