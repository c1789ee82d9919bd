"""The journal writer's activation cache (pure LRU logic)."""

from __future__ import annotations

from typing import NoReturn

import pytest
from sqlalchemy import exc as sa_exc

from gateway.errors import JournalError
from gateway.journal import batch as batch_module
from gateway.journal.batch import ActivationImage, WriterCache


def image(seq: int) -> ActivationImage:
    return ActivationImage("acknowledged", seq, {"t1": {}})


def test_least_recently_used_activation_is_evicted() -> None:
    cache = WriterCache(max_activations=2)
    cache.put("a1", image(1))
    cache.put("a2", image(2))
    assert cache.get("a1") is not None  # a1 is now the most recent
    cache.put("a3", image(3))
    assert len(cache) == 2
    assert cache.get("a2") is None
    assert cache.get("a1") == image(1) and cache.get("a3") == image(3)


def test_put_replaces_and_drop_forgets() -> None:
    cache = WriterCache(max_activations=8)
    cache.put("a1", image(1))
    cache.put("a1", image(5))
    assert cache.get("a1") == image(5) and len(cache) == 1
    cache.drop(["a1", "unknown"])
    assert cache.get("a1") is None and len(cache) == 0


def test_release_without_a_connection_is_a_no_op() -> None:
    cache = WriterCache()
    cache.release()
    assert cache.connection is None


def test_a_batch_that_finds_its_images_stale_twice_fails_retryable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Defensive: the second run reads under the write lock, so a second miss means a store gone odd."""
    runs: list[int] = []

    def stale(engine: object, batch: object, cache: WriterCache, *fence: object) -> NoReturn:
        runs.append(1)
        raise batch_module._Stale(["a1"])

    monkeypatch.setattr(batch_module, "_transaction", stale)
    cache = WriterCache()
    cache.put("a1", image(3))
    with pytest.raises(JournalError) as err:
        batch_module.apply_batch(None, [], cache=cache)  # type: ignore[arg-type]
    assert err.value.retryable and len(runs) == 2 and cache.get("a1") is None and cache.stale == 2


def test_a_connection_lost_twice_before_commit_raises_the_database_error(monkeypatch: pytest.MonkeyPatch) -> None:
    runs: list[int] = []
    lost = sa_exc.OperationalError("SELECT 1", {}, ConnectionError("server closed the connection"))

    def disconnected(engine: object, batch: object, cache: WriterCache, *fence: object) -> NoReturn:
        runs.append(1)
        raise batch_module._Reconnect(lost)

    monkeypatch.setattr(batch_module, "_transaction", disconnected)
    with pytest.raises(sa_exc.OperationalError) as err:
        batch_module.apply_batch(None, [], cache=WriterCache())  # type: ignore[arg-type]
    assert err.value is lost and len(runs) == 2
