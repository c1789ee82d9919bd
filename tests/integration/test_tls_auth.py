"""Northbound trust over real TLS: mutual TLS identities, the policy, audit, and scoped request ids.

A real gateway (engine, SQLite journal, gRPC server with TLS) in this process; its devices are
unreachable (a closed port on loopback), which is enough: every decision here is taken at the
edge or when the activation is journaled, before any device is contacted.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, AsyncIterator

import grpc
import pytest
from click.testing import CliRunner
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from gateway.api import convert
from gateway.api.auth import AuthMode
from gateway.api.generated.activation.v1 import activation_pb2 as pb
from gateway.api.generated.activation.v1 import activation_pb2_grpc as pb_grpc
from gateway.api.policy import Policy
from gateway.api.server import start_server, stop_server
from gateway.api.tls import ServerTls
from gateway.app import GatewayConfig, build_engine
from gateway.errors import ConfigurationError
from gateway.pki import development_pki, init_ca, issue_client
from tests.integration.gateway_harness import free_port, submit_request

TRUST = "spiffe://agw.local"
POLICY = f"""
grants:
  - {{identity: {TRUST}/admin, role: admin}}
  - {{identity: {TRUST}/orchestrator, role: submitter}}
  - {{identity: {TRUST}/edge, role: submitter, devices: ["group:edge"], services: [interface]}}
  - {{identity: {TRUST}/operator, role: operator}}
  - {{identity: {TRUST}/reader, role: reader}}
"""
INVENTORY = """
devices:
  d1: {address: 127.0.0.1, groups: [edge], host_key_check: false,
       endpoints: [{platform: netconfd, port: 1, credentials: "env:AGW_TLS_TEST"}]}
  d2: {address: 127.0.0.1, groups: [core], host_key_check: false,
       endpoints: [{platform: netconfd, port: 1, credentials: "env:AGW_TLS_TEST"}]}
"""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    development_pki(d, clients=("admin", "orchestrator", "edge", "operator", "reader", "stranger"))
    other = d / "other-ca"
    init_ca(other, name="someone else's CA")
    issue_client(other, "admin", uri=f"{TRUST}/admin")  # the admin's identity, from another CA
    return d


@pytest.fixture(scope="module")
def files(pki: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("conf")
    (d / "policy.yaml").write_text(POLICY)
    (d / "inventory.yaml").write_text(INVENTORY)
    return {"policy": d / "policy.yaml", "inventory": d / "inventory.yaml", "data": d / "data"}


@pytest.fixture(scope="module")
async def server(pki: Path, files: dict[str, Path]) -> AsyncIterator[int]:
    os.environ["AGW_TLS_TEST_USERNAME"] = "nobody"
    os.environ["AGW_TLS_TEST_PASSWORD"] = "not-a-secret"
    engine = build_engine(GatewayConfig(listen="127.0.0.1:0", data_dir=files["data"], inventory_path=files["inventory"]))
    await engine.start()
    tls = ServerTls(cert=pki / "server.pem", key=pki / "server.key", client_ca=pki / "ca.pem")
    srv, port = await start_server(engine, listen="127.0.0.1:0", tls=tls,
                                   auth=AuthMode(identities=True, policy=Policy.load(files["policy"])))
    yield port
    await stop_server(srv, grace_s=1)
    await engine.stop()


def channel(port: int, pki: Path, who: str | None, *, ca_dir: Path | None = None) -> grpc.aio.Channel:
    ca = (pki / "ca.pem").read_bytes()
    if who is None:
        creds = grpc.ssl_channel_credentials(ca)
    else:
        d = ca_dir or pki
        creds = grpc.ssl_channel_credentials(ca, (d / f"{who}.key").read_bytes(), (d / f"{who}.pem").read_bytes())
    return grpc.aio.secure_channel(f"127.0.0.1:{port}", creds)


def stub(ch: grpc.aio.Channel) -> pb_grpc.ActivationServiceStub:
    return pb_grpc.ActivationServiceStub(ch)


def task(device: str, service: str = "interface", **params: Any) -> dict[str, Any]:
    base = {"name": "ge-0/0/1", "description": "x"} if service == "interface" else {}
    return {"id": "t1", "device": device, "service": service, "action": "create", "parameters": {**base, **params}}


async def code_of(call: Any) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def test_no_certificate_or_another_ca_fails_the_handshake(server: int, pki: Path) -> None:
    for ch in (channel(server, pki, None), channel(server, pki, "admin", ca_dir=pki / "other-ca")):
        async with ch:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub(ch).List(pb.ListRequest(), timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE  # refused in the TLS handshake
            with pytest.raises(grpc.aio.AioRpcError):  # health too: nothing is reached without a certificate
                await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)


async def test_an_identity_the_policy_does_not_name_is_unauthenticated(server: int, pki: Path) -> None:
    async with channel(server, pki, "stranger") as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub(ch).List(pb.ListRequest(), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert f"{TRUST}/stranger" in (err.value.details() or "")
        reply = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING  # health stays open
        with pytest.raises(grpc.aio.AioRpcError) as err:  # reflection follows the policy
            async for _ in reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(
                    iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5):
                pass
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_roles_and_scopes(server: int, pki: Path) -> None:
    rid = f"tls-{uuid.uuid4()}"
    async with channel(server, pki, "reader") as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub(ch).Submit(submit_request([task("d1")], request_id=rid), timeout=5)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "Submit needs role submitter" in (err.value.details() or "")
        answers = []
        async for item in reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5):
            answers.append(item)
        assert "agw.activation.v1.ActivationService" in str(answers[0])
    async with channel(server, pki, "edge") as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub(ch).Submit(submit_request([task("d2")], request_id=rid), timeout=5)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "device d2 (groups core) and service interface" in (err.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub(ch).DryRun(submit_request([task("d1", "system", contact="x")], request_id=rid), timeout=5)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        reply = await stub(ch).Submit(submit_request([task("d1")], request_id=rid), timeout=5)
        assert reply.created


async def test_audit_ownership_and_scoped_request_ids(server: int, pki: Path) -> None:
    rid = f"tls-{uuid.uuid4()}"
    async with channel(server, pki, "orchestrator") as ch:
        first = await stub(ch).Submit(submit_request([task("d2")], request_id=rid), timeout=5)
        again = await stub(ch).Submit(submit_request([task("d2")], request_id=rid), timeout=5)
        assert again.activation_id == first.activation_id and not again.created
        got = convert.activation_from_proto(await stub(ch).Get(pb.GetRequest(activation_id=first.activation_id,
                                                                              wait_ms=20000), timeout=30))
    assert got.submitted_by == f"{TRUST}/orchestrator"
    assert [(e.actor, e.action) for e in got.audit] == [(f"{TRUST}/orchestrator", "submit")]
    async with channel(server, pki, "admin") as ch:  # the same request id from another caller: its own activation
        other = await stub(ch).Submit(submit_request([task("d2", description="other content")], request_id=rid),
                                      timeout=5)
        assert other.created and other.activation_id != first.activation_id
    async with channel(server, pki, "edge") as ch:  # a submitter may not change someone else's activation
        for call in (stub(ch).Rollback(pb.RollbackRequest(activation_id=first.activation_id), timeout=5),
                     stub(ch).Cancel(pb.CancelRequest(activation_id=first.activation_id), timeout=5)):
            assert await code_of(call) == grpc.StatusCode.PERMISSION_DENIED
        assert await code_of(stub(ch).Get(pb.GetRequest(activation_id=first.activation_id), timeout=5)) == \
            grpc.StatusCode.PERMISSION_DENIED  # its scope does not cover d2
    async with channel(server, pki, "operator") as ch:  # allowed: the engine answers on the merits
        assert await code_of(stub(ch).RetryFallout(pb.FalloutActionRequest(activation_id=first.activation_id),
                                                   timeout=5)) == grpc.StatusCode.FAILED_PRECONDITION
    async with channel(server, pki, "orchestrator") as ch:
        assert await code_of(stub(ch).RetryFallout(pb.FalloutActionRequest(activation_id=first.activation_id),
                                                   timeout=5)) == grpc.StatusCode.PERMISSION_DENIED
        events = [e async for e in stub(ch).Watch(pb.WatchRequest(activation_id=first.activation_id), timeout=30)]
        assert events[0].actor == f"{TRUST}/orchestrator" and all(e.actor == "" for e in events[1:])


async def test_a_plain_text_server_off_loopback_and_a_policy_without_identities_are_refused(pki: Path) -> None:
    with pytest.raises(ConfigurationError, match="refusing to serve plain text"):
        await start_server(object(), listen="0.0.0.0:0")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="a policy needs caller identities"):
        await start_server(object(), listen="127.0.0.1:0",  # type: ignore[arg-type]
                           tls=ServerTls(cert=pki / "server.pem", key=pki / "server.key"),
                           auth=AuthMode(identities=False, policy=Policy(grants=())))


def test_agw_serve_with_tls_from_a_config_file_and_the_agw_client(pki: Path, files: dict[str, Path],
                                                                  tmp_path: Path) -> None:
    """``agw serve --config`` with TLS, a client CA and a policy; ``agw list`` with --ca/--cert/--key
    and the AGW_* environment; without a client certificate it cannot connect."""
    port = free_port()
    config = tmp_path / "serve.yaml"
    config.write_text(
        f"listen: 127.0.0.1:{port}\ndata_dir: {tmp_path / 'data'}\ninventory: {files['inventory']}\n"
        f"tls_cert: {pki / 'server.pem'}\ntls_key: {pki / 'server.key'}\nclient_ca: {pki / 'ca.pem'}\n"
        f"policy: {files['policy']}\n")
    agw = str(Path(sys.executable).parent / "agw")
    proc = subprocess.Popen([agw, "serve", "--config", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "AGW_TLS_TEST_USERNAME": "u", "AGW_TLS_TEST_PASSWORD": "p"})
    try:
        _wait_listening(port, proc)
        from gateway.cli import main

        runner = CliRunner()
        ok = runner.invoke(main, ["list", "--json", "--server", f"127.0.0.1:{port}", "--ca", str(pki / "ca.pem"),
                                  "--cert", str(pki / "reader.pem"), "--key", str(pki / "reader.key")])
        assert ok.exit_code == 0, ok.output
        env = {"AGW_SERVER": f"127.0.0.1:{port}", "AGW_CA": str(pki / "ca.pem"), "AGW_CERT": str(pki / "stranger.pem"),
               "AGW_KEY": str(pki / "stranger.key")}
        refused = runner.invoke(main, ["list"], env=env)
        assert refused.exit_code == 2 and "UNAUTHENTICATED" in refused.output
        no_cert = runner.invoke(main, ["list", "--server", f"127.0.0.1:{port}", "--ca", str(pki / "ca.pem"),
                                       "--timeout", "3"])
        assert no_cert.exit_code == 2 and "UNAVAILABLE" in no_cert.output
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert b"plain text" not in out  # it served TLS


def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    import socket
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"agw serve exited: {proc.stdout.read() if proc.stdout else b''!r}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("agw serve did not listen within 30 s")


def test_serve_refuses_plain_text_off_loopback_before_starting(tmp_path: Path) -> None:
    from gateway.cli import main

    result = CliRunner().invoke(main, ["serve", "--listen", "0.0.0.0:0", "--data-dir", str(tmp_path / "d")])
    assert result.exit_code == 2 and "refusing to serve plain text on 0.0.0.0:0" in result.output
    assert not (tmp_path / "d" / "journal.db").exists()  # nothing was started


async def test_list_shows_only_what_the_caller_may_read(server: int, pki: Path) -> None:
    async with channel(server, pki, "orchestrator") as ch:
        theirs = await stub(ch).Submit(submit_request([task("d2")], request_id=f"tls-{uuid.uuid4()}"), timeout=5)
    async with channel(server, pki, "edge") as ch:
        mine = await stub(ch).Submit(submit_request([task("d1")], request_id=f"tls-{uuid.uuid4()}"), timeout=5)
        seen: list[pb.Activation] = []
        token = ""
        while True:  # small pages: the filter must move the token past what it hides
            page = await stub(ch).List(pb.ListRequest(page_size=1, page_token=token), timeout=5)
            seen.extend(page.activations)
            token = page.next_page_token
            if not token:
                break
    ids = {a.id for a in seen}
    assert mine.activation_id in ids and theirs.activation_id not in ids
    assert all(t.device == "d1" for a in seen for t in a.tasks)
    async with channel(server, pki, "admin") as ch:
        everything = await stub(ch).List(pb.ListRequest(page_size=1000), timeout=5)
    assert {mine.activation_id, theirs.activation_id} <= {a.id for a in everything.activations}
