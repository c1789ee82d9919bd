"""Pytest plugin (entry point ``agw_lab``): a session-scoped ``lab`` fixture.

The fixture brings ``lab/topologies/basic.clab.yml`` up once per test run under its own lab name
(``AGW_TEST_LAB``, default ``pytest``), so it never collides with a lab an engineer has running,
and brings it down at the end (``AGW_LAB_KEEP=1`` keeps it for debugging). ``up`` is idempotent
and cleans up what a crashed earlier run left. Tests ask for nodes by name::

    def test_x(lab):
        nc1 = lab.node("nc1")
        connect(nc1.address, nc1.ports["netconf"], **nc1.credentials["netconf"])

Tests that use the fixture are marked ``lab`` automatically (``-m "not lab"`` skips them).
Not root: those tests are skipped with the reason.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.errors import NOT_ROOT_MESSAGE

log = logging.getLogger(__name__)

BASIC = Path(__file__).parent / "topologies" / "basic.clab.yml"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "lab: needs the running lab (real daemons in network namespaces; root)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "lab" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.lab)


@pytest.fixture(scope="session")
def lab() -> Iterator[object]:
    if os.geteuid() != 0:
        pytest.skip(f"lab tests skipped: {NOT_ROOT_MESSAGE}")
    from lab.api import Lab

    from lab.state import base_dir
    from lab.state import load as load_state

    name = os.environ.get("AGW_TEST_LAB", "pytest")
    topology = Path(os.environ.get("AGW_TEST_TOPOLOGY", str(BASIC)))
    # Two test sessions on one machine share the lab: each holds a shared lock while it runs,
    # and only the last one out (the one that gets the exclusive lock) brings the lab down.
    base_dir().mkdir(parents=True, exist_ok=True)
    users = open(base_dir() / f".{name}.users", "w")  # noqa: SIM115 - held for the session
    fcntl.flock(users, fcntl.LOCK_SH)
    try:
        try:
            running = Lab.up(topology, name=name, timeout_s=60)
        except Exception:
            try:  # leave nothing half-created behind
                Lab.attach(name).down()
            except Exception:  # noqa: BLE001 - the first error is the one to report
                log.exception("cleaning up lab %s after a failed up", name)
            raise
        yield running
    finally:
        fcntl.flock(users, fcntl.LOCK_UN)
        try:
            fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("lab %s is still used by another test session; leaving it up", name)
        else:
            if os.environ.get("AGW_LAB_KEEP") != "1":
                try:
                    if load_state(name) is not None:
                        Lab.attach(name).down()
                except Exception:  # noqa: BLE001
                    log.exception("bringing lab %s down", name)
                    raise
        finally:
            users.close()
