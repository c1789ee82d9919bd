"""The CLI session bounds what a device may send back (max_output_bytes), without a device:
a stand-in for scrapli's Cli feeds the session's recorder callback from another thread, as
libscrapli does, and honours the operation's Cancel."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
import yaml

from drivers.cli.session import CliSession, SessionOptions
from drivers.cli.settings import CliSettings
from gateway import errors as e
from gateway.api.status import map_error

FRR = Path(__file__).parents[2] / "device_profiles" / "frr.yaml"


class _Result:
    def __init__(self, text: str) -> None:
        self.result = text
        self.results = [text]


class _FakeCli:
    """Sends ``total`` bytes in ``chunk``-byte reads from a thread; stops when cancelled."""

    def __init__(self, session: CliSession, *, total: int, chunk: int = 64 * 1024) -> None:
        self.session, self.total, self.chunk = session, total, chunk
        self.sent = 0
        self.closed = False

    async def send_input_async(self, *, input_: str, requested_mode: str, operation_timeout_ns: int,
                               cancel: object) -> _Result:
        from scrapli.exceptions import CancelledException

        def device() -> None:  # libscrapli's reader thread
            while self.sent < self.total and not cancel.cancelled:  # type: ignore[attr-defined]
                n = min(self.chunk, self.total - self.sent)
                self.session._on_output("x" * n)  # noqa: SLF001
                self.sent += n

        reader = threading.Thread(target=device)
        reader.start()
        while reader.is_alive():
            await asyncio.sleep(0.001)
        if cancel.cancelled:  # type: ignore[attr-defined]
            raise CancelledException
        return _Result("x" * self.total)

    async def close_async(self, *, force: bool) -> None:
        self.closed = True


def _session(limit: int, total: int) -> tuple[CliSession, _FakeCli]:
    s = CliSession(SessionOptions(device="r9", host="127.0.0.1", port=22, username="u", password=None,
                                  definition="", platform="frr", max_output_bytes=limit))
    cli = _FakeCli(s, total=total)
    s._cli = cli  # noqa: SLF001 - an "open" session
    return s, cli


async def test_output_within_the_limit_is_returned() -> None:
    s, cli = _session(limit=1 << 20, total=1 << 20)
    out = await s.send("show running-config", timeout_s=5, phase=e.Phase.SNAPSHOT)
    assert len(out) == 1 << 20 and s.is_open and not cli.closed


async def test_output_over_the_limit_is_cancelled_early_and_refused() -> None:
    limit = 1 << 20
    s, cli = _session(limit=limit, total=64 << 20)
    with pytest.raises(e.DeviceReplyError) as info:
        await s.send("show running-config", timeout_s=5, phase=e.Phase.SNAPSHOT)
    err = info.value
    assert not err.retryable and err.device == "r9" and err.phase is e.Phase.SNAPSHOT
    assert f"{limit} bytes" in str(err) and "max_output_bytes" in str(err) and "r9" in str(err)
    assert cli.sent <= limit + cli.chunk  # stopped reading at the limit, not at the end of the output
    assert not s.is_open and cli.closed  # the rest of the output is still on its way: a new session next time
    assert map_error(err).code.name == "ABORTED"


async def test_a_completed_operation_over_the_limit_is_refused_too() -> None:
    s, cli = _session(limit=1000, total=5000)
    cli.chunk = 5000  # all in one read: the cancel comes after the last byte

    async def done(**kw: object) -> _Result:
        s._on_output("y" * 5000)  # noqa: SLF001
        return _Result("y" * 5000)

    cli.send_input_async = done  # type: ignore[method-assign]
    with pytest.raises(e.DeviceReplyError):
        await s.send("show version", timeout_s=5, phase=e.Phase.VERIFY)
    assert not s.is_open


async def test_the_count_starts_again_with_each_operation() -> None:
    s, cli = _session(limit=1000, total=600)
    for _ in range(3):  # 1800 bytes over three commands, 600 each
        assert len(await s.send("show clock", timeout_s=5, phase=e.Phase.VERIFY)) == 600


def test_max_output_bytes_from_the_profile() -> None:
    settings = yaml.safe_load(FRR.read_text())["settings"]
    assert CliSettings.from_profile(settings, platform="frr").max_output_bytes == 16 * 1024 * 1024
    assert CliSettings.from_profile({**settings, "max_output_bytes": 4096}, platform="frr").max_output_bytes == 4096
    assert CliSettings.from_profile({k: v for k, v in settings.items() if k != "max_output_bytes"},
                                    platform="frr").max_output_bytes == 16 * 1024 * 1024
    for bad in (0, -5, "16M", 2.5, True):
        with pytest.raises(e.ConfigurationError, match="max_output_bytes"):
            CliSettings.from_profile({**settings, "max_output_bytes": bad}, platform="frr")
