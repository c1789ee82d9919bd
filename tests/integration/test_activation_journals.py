"""The engine on each journal backend (SQLite and a real PostgreSQL): an activation, a device
rejection, then a new gateway on the same journal finds both, with their events."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from gateway.journal.testing import journal_url, pg_admin  # noqa: F401 - fixtures
from gateway.results import ActivationState
from tests.integration.gateway_harness import InProcessGateway, make_profiles

pytestmark = [pytest.mark.lab]


async def test_activations_survive_a_gateway_restart(lab: Any, tmp_path: Path, journal_url: str) -> None:  # noqa: F811
    profiles = make_profiles(tmp_path / "profiles", {})
    name = f"jr{uuid.uuid4().hex[:8]}"
    tasks_ok = [{"id": "t", "device": "nc1", "service": "interface", "action": "create",
                 "parameters": {"name": name, "description": "journal backend"}}]
    tasks_bad = [{"id": "t", "device": "nc1", "service": "interface", "action": "create",
                  "parameters": {"name": name + "x", "type": "notAnIanaType"}}]
    first = InProcessGateway(data_dir=tmp_path / "a", inventory=lab.inventory_path, profiles=profiles,
                             journal_url=journal_url)
    client = await first.start()
    try:
        ok = await client.submit(tasks_ok, request_id=f"j-{uuid.uuid4()}")
        bad = await client.submit(tasks_bad, request_id=f"j-{uuid.uuid4()}")
        assert (await client.wait(ok)).state == ActivationState.COMPLETED
        assert (await client.wait(bad)).state == ActivationState.ROLLED_BACK
        events_before = [(e.seq, e.phase, e.state) for e in await client.events(ok)]
    finally:
        await first.stop()

    second = InProcessGateway(data_dir=tmp_path / "b", inventory=lab.inventory_path, profiles=profiles,
                              journal_url=journal_url)
    client = await second.start()
    try:
        assert (await client.get(ok)).state == ActivationState.COMPLETED
        assert (await client.get(bad)).tasks[0].error is not None
        assert [(e.seq, e.phase, e.state) for e in await client.events(ok)] == events_before
    finally:
        await second.stop()
