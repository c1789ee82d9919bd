"""Fixtures of the engine tests: the real engine over the scripted device network, built by
:mod:`tests.scripted_gateway` (which the edge and CLI tests in tests/unit use too)."""

from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator

import pytest

from gateway.engine import Engine
from tests.scripted_gateway import Gateway, cut_overrun_grace, write_templates


@pytest.fixture(scope="session")
def templates_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_templates(tmp_path_factory.mktemp("templates"))


@pytest.fixture
async def gw(tmp_path: Path, templates_root: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Gateway]:
    cut_overrun_grace(monkeypatch)
    g = Gateway.create(tmp_path, templates_root=templates_root)
    try:
        yield g
    finally:
        await g.close()


@pytest.fixture
async def engine(gw: Gateway) -> Engine:
    return await gw.engine()
