"""Driver pieces that need no device: settings from the profile, error translation, capabilities."""

from __future__ import annotations

import dataclasses

import asyncio
from pathlib import Path

import asyncssh
import pytest
import yaml

from drivers.base import Capabilities, ChangeSet, DeviceProfile, Endpoint, Timeouts
from drivers.netconf import NetconfDriver
from drivers.netconf.driver import NetconfSettings, analyse, translate
from drivers.netconf.framing import FramingError
from drivers.netconf.session import ProtocolError, RpcTimeout, SessionClosed
from drivers.netconf.xmlconfig import ConfigXmlError
from gateway import errors as e
from gateway.model import Action
from gateway.secrets import Credential, Secret

PROFILE = Path(__file__).parents[2] / "device_profiles" / "netconfd.yaml"


def load_profile() -> DeviceProfile:
    d = yaml.safe_load(PROFILE.read_text())
    return DeviceProfile(
        platform=d["platform"], driver=d["driver"], capabilities=Capabilities(**d["capabilities"]),
        timeouts=Timeouts(**d["timeouts"]), confirm_timeout_s=d["confirm_timeout_s"],
        quirks=d["quirks"], settings=d["settings"], description=d["description"],
    )


def make_driver(**timeouts: float) -> NetconfDriver:
    prof = load_profile()
    if timeouts:
        prof = DeviceProfile(platform=prof.platform, driver=prof.driver, capabilities=prof.capabilities,
                             timeouts=Timeouts(**timeouts), quirks=prof.quirks, settings=prof.settings)
    return NetconfDriver(
        endpoint=Endpoint(device="nc-x", host="127.0.0.1", port=1, platform="netconfd",
                          credential=Credential(ref="r", username="u", password=Secret("s3cret-pw")),
                          host_key_check=False),  # no SSH server here: nothing reaches a key exchange
        profile=prof,
    )


def test_profile_shape_and_capabilities() -> None:
    raw = yaml.safe_load(PROFILE.read_text())
    assert raw["driver"] == "netconf" and raw["platform"] == "netconfd"
    assert raw["quirks"]["validate_drops_candidate"] is True
    d = make_driver()
    # the profile leaves out validate (netconfd validates on commit; one RPC less per task)
    assert d.capabilities == dataclasses.replace(NetconfDriver.supported, validate=False)
    assert d.capabilities.names() == ("lock", "candidate", "confirmed_commit", "persist_id", "atomic_push")
    s = d.settings
    assert s.hello_settle_ms == 10 and s.validate_drops_candidate
    assert {"tag": "operation-failed", "number": "274"} in s.no_pending_commit_errors


def test_bad_settings_raise_configuration_error() -> None:
    prof = load_profile()
    bad = DeviceProfile(platform="x", driver="netconf", capabilities=prof.capabilities,
                        settings={"list_keys": {"urn:x": {"l": "k"}}})
    with pytest.raises(e.ConfigurationError):
        NetconfSettings.from_profile(bad)
    bad2 = DeviceProfile(platform="x", driver="netconf", capabilities=prof.capabilities, quirks={"hello_settle_ms": "soon"})
    with pytest.raises(e.ConfigurationError):
        NetconfSettings.from_profile(bad2)


def test_ssh_ciphers_come_from_the_profile_and_unknown_ones_are_refused() -> None:
    d = make_driver()
    assert d.settings.ssh_ciphers[0] == "aes128-gcm@openssh.com"
    assert d._ssh.connection_options().encryption_algs[0] == b"aes128-gcm@openssh.com"
    prof = load_profile()
    for bad_value in (["aes128-gcm@openssh.com", "rot13"], "aes128-ctr"):
        bad = DeviceProfile(platform="x", driver="netconf", capabilities=prof.capabilities,
                            settings={**prof.settings, "ssh_ciphers": bad_value})
        with pytest.raises(e.ConfigurationError, match="ssh_ciphers"):
            NetconfSettings.from_profile(bad)


@pytest.mark.parametrize(
    ("exc", "phase", "cls"),
    [
        (RpcTimeout("t"), e.Phase.COMMIT, e.DeviceTimeoutError),
        (TimeoutError(), e.Phase.CONNECT, e.DeviceTimeoutError),
        (asyncssh.PermissionDenied("no"), e.Phase.CONNECT, e.AuthenticationError),
        (asyncssh.HostKeyNotVerifiable("bad key"), e.Phase.CONNECT, e.HostKeyError),
        (asyncssh.ChannelOpenError(1, "no subsystem"), e.Phase.CONNECT, e.ConnectError),
        (SessionClosed("gone"), e.Phase.PUSH, e.SessionLostError),
        (SessionClosed("gone"), e.Phase.CONNECT, e.ConnectError),
        (asyncssh.ConnectionLost("x"), e.Phase.VERIFY, e.SessionLostError),
        (ConnectionRefusedError(111, "Connection refused"), e.Phase.CONNECT, e.ConnectError),
        (BrokenPipeError(32, "Broken pipe"), e.Phase.PUSH, e.SessionLostError),
        (ProtocolError("junk"), e.Phase.LOCK, e.SessionLostError),
        (FramingError("junk"), e.Phase.LOCK, e.SessionLostError),
        (ConfigXmlError("bad xml"), e.Phase.PUSH, e.RenderError),
        (KeyError("surprise"), e.Phase.PUSH, e.DeviceError),
    ],
)
def test_translate(exc: BaseException, phase: e.Phase, cls: type[e.AgwError]) -> None:
    out = translate(exc, device="nc1", phase=phase)
    assert type(out) is cls
    assert out.device == "nc1" and out.phase is phase


def test_translate_passes_gateway_errors_through() -> None:
    err = e.LockDeniedError("x", device="d", phase=e.Phase.LOCK)
    assert translate(err, device="d", phase=e.Phase.LOCK) is err


async def test_refused_connection_is_a_connect_error_without_secret() -> None:
    d = make_driver()  # port 1 on loopback: nothing listens
    with pytest.raises(e.ConnectError) as ei:
        await d.open()
    assert ei.value.retryable and ei.value.phase is e.Phase.CONNECT
    assert "s3cret-pw" not in str(ei.value) and "s3cret-pw" not in repr(ei.value.__cause__)
    assert not d.is_open


async def test_operations_without_session_raise_session_lost() -> None:
    d = make_driver()
    with pytest.raises(e.SessionLostError):
        await d.lock()
    await d.close()  # never raises


async def test_connect_timeout_when_nothing_answers() -> None:
    # a listener that accepts TCP but never speaks SSH: open() must give up within connect_s
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    d = make_driver(connect_s=0.5)
    d._ssh = type(d._ssh)(**{**d._ssh.__dict__, "port": port})  # noqa: SLF001 - point at the mute listener
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    with pytest.raises((e.DeviceTimeoutError, e.ConnectError)):
        await d.open()
    assert loop.time() - t0 < 3
    server.close()


def test_rendered_garbage_is_a_render_error() -> None:
    with pytest.raises(ConfigXmlError):
        analyse("<config><x></config>", make_driver().settings.list_keys)


async def test_scope_of_garbage_translates_to_render_error() -> None:
    d = make_driver()
    with pytest.raises(e.RenderError):
        d.scope_of(ChangeSet(service="s", action=Action.CREATE, content="not xml"))
