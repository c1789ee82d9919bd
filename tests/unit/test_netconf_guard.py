"""The driver's error guard: the one translation point, as a plain context manager (pure)."""

from __future__ import annotations

import asyncio

import pytest

from drivers.netconf.driver import _Guard as _DriverGuard
from drivers.netconf.session import RpcTimeout
from gateway import errors as e


class _Named:
    device = "nc1"


def _Guard(device: str, phase: e.Phase) -> _DriverGuard:
    assert device == _Named.device
    return _DriverGuard(_Named(), phase)  # type: ignore[arg-type]


def test_guard_translates_third_party_errors_with_cause() -> None:
    boom = RpcTimeout("slow")
    with pytest.raises(e.DeviceTimeoutError) as info, _Guard("nc1", e.Phase.VERIFY):
        raise boom
    assert info.value.__cause__ is boom
    with pytest.raises(e.DeviceError) as other, _Guard("nc1", e.Phase.PUSH):
        raise KeyError("x")
    assert not other.value.retryable and isinstance(other.value.__cause__, KeyError)


def test_guard_passes_gateway_errors_and_cancellation_untouched() -> None:
    err = e.DeviceRejectedError("no", device="nc1", phase=e.Phase.PUSH)
    with pytest.raises(e.DeviceRejectedError) as info, _Guard("nc1", e.Phase.PUSH):
        raise err
    assert info.value is err
    with pytest.raises(asyncio.CancelledError), _Guard("nc1", e.Phase.PUSH):
        raise asyncio.CancelledError()


def test_guard_without_error_is_silent() -> None:
    with _Guard("nc1", e.Phase.LOCK):
        value = 1
    assert value == 1
