"""Identities, the policy and the authorizer (pure), and the edge's TLS settings."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from gateway.api.auth import AuthMode, Authorizer, identity_of, required_role
from gateway.api.policy import Role, parse_policy
from gateway.api.tls import ClientTls, ServerTls, check_listen, host_of, is_loopback
from gateway.app import GatewayConfig, edge_settings
from gateway.errors import ConfigurationError, PermissionDeniedError, UnauthenticatedError
from gateway.model import Action, ActivationRequest, Caller, TaskSpec, TaskState
from gateway.pki import development_pki
from gateway.results import ActivationResult, ActivationState, TaskResult

ORCH = "spiffe://agw.local/orchestrator"
EDGE = "spiffe://agw.local/edge-orchestrator"
POLICY = parse_policy({"grants": [
    {"identity": ORCH, "role": "submitter"},
    {"identity": EDGE, "role": "submitter", "devices": ["group:edge", "d9"], "services": ["interface"]},
    {"identity": EDGE, "role": "reader"},
    {"identity": "spiffe://agw.local/noc-*", "role": "operator"},
    {"identity": "reader-cn", "role": "reader"},
]}, source="policy.yaml")
GROUPS = {"d1": frozenset({"edge"}), "d2": frozenset({"core"})}
AUTHZ = Authorizer(groups_of=lambda d: GROUPS.get(d, frozenset()))
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def activation(*pairs: tuple[str, str], submitted_by: str = ORCH) -> ActivationResult:
    tasks = tuple(TaskResult(id=f"t{i}", device=d, service=s, action=Action.CREATE, state=TaskState.COMPLETED)
                  for i, (d, s) in enumerate(pairs))
    return ActivationResult(id="a1", request_id="r", order_ref="", atomic=True, state=ActivationState.COMPLETED,
                            created_at=T0, updated_at=T0, tasks=tasks, submitted_by=submitted_by)


def request(*pairs: tuple[str, str]) -> ActivationRequest:
    return ActivationRequest(request_id="r", tasks=tuple(
        TaskSpec(id=f"t{i}", device=d, service=s, action=Action.CREATE) for i, (d, s) in enumerate(pairs)))


def access(identity: str):  # type: ignore[no-untyped-def]
    found = POLICY.access(identity)
    assert found is not None
    return found


def test_identity_is_the_san_uri_else_the_cn() -> None:
    assert identity_of({"peer_uri": [b"spiffe://x/a"], "x509_common_name": [b"a"]}) == "spiffe://x/a"
    assert identity_of({"x509_common_name": [b"reader-cn"]}) == "reader-cn"
    assert identity_of({"transport_security_type": [b"ssl"]}) == ""


def test_roles_per_method_and_open_health() -> None:
    svc = "/agw.activation.v1.ActivationService/"
    assert required_role(svc + "Get") is Role.READER and required_role(svc + "Submit") is Role.SUBMITTER
    assert required_role(svc + "ResolveFallout") is Role.OPERATOR
    assert required_role(svc + "SomethingNew") is Role.ADMIN  # an unknown method needs the most
    assert required_role("/grpc.health.v1.Health/Check") is None
    assert required_role("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo") is Role.READER


def test_mode_decisions() -> None:
    plain = AuthMode()
    assert plain.decide("", "/agw.activation.v1.ActivationService/Submit")[0] == Caller()
    mode = AuthMode(identities=True, policy=POLICY)
    with pytest.raises(UnauthenticatedError, match="names no identity"):
        mode.decide("", "/agw.activation.v1.ActivationService/Get")
    with pytest.raises(UnauthenticatedError, match="not known"):
        mode.decide("spiffe://agw.local/stranger", "/agw.activation.v1.ActivationService/Get")
    with pytest.raises(PermissionDeniedError, match="holds role reader; Submit needs role submitter"):
        mode.decide("reader-cn", "/agw.activation.v1.ActivationService/Submit")
    caller, acc = mode.decide("spiffe://agw.local/noc-night", "/agw.activation.v1.ActivationService/RetryFallout")
    assert caller.identity == "spiffe://agw.local/noc-night" and acc.role is Role.OPERATOR
    open_mode = AuthMode(identities=True)  # mutual TLS, no policy: every certified caller may do everything
    assert open_mode.decide(ORCH, "/agw.activation.v1.ActivationService/ResolveFallout")[1].unrestricted


def test_subscribe_needs_the_permission_events_subscribe() -> None:
    svc = "/agw.activation.v1.ActivationService/Subscribe"
    policy = parse_policy({"grants": [
        {"identity": "oss", "role": "reader", "permissions": ["events:subscribe"]},
        {"identity": "boss", "role": "admin"},
        {"identity": "op", "role": "operator"},
    ]}, source="p.yaml")
    mode = AuthMode(identities=True, policy=policy)
    assert required_role(svc) is Role.READER
    assert mode.decide("oss", svc)[1].permits("events:subscribe")
    assert mode.decide("boss", svc)[1].permits("events:subscribe")  # admin holds every permission
    with pytest.raises(PermissionDeniedError, match="Subscribe: it needs the permission events:subscribe"):
        mode.decide("op", svc)
    assert mode.decide("op", "/agw.activation.v1.ActivationService/Get")  # the other methods as before
    assert AuthMode().decide("", svc)[1].permits("events:subscribe")  # no identities: unrestricted


def test_scopes_by_device_group_and_service() -> None:
    AUTHZ.submit(access(EDGE), request(("d1", "interface"), ("d9", "interface")))
    with pytest.raises(PermissionDeniedError, match=r"covering device d2 \(groups core\) and service interface"):
        AUTHZ.submit(access(EDGE), request(("d1", "interface"), ("d2", "interface")))
    with pytest.raises(PermissionDeniedError, match="service system"):
        AUTHZ.submit(access(EDGE), request(("d1", "system")))
    AUTHZ.read(access(EDGE), activation(("d2", "system")))  # its reader grant covers everything
    AUTHZ.submit(access(ORCH), request(("d2", "system")))
    assert AUTHZ.visible(access("reader-cn"), activation(("d1", "x")).tasks)


def test_cancel_and_rollback_own_or_as_operator() -> None:
    theirs = activation(("d1", "interface"), submitted_by=ORCH)
    AUTHZ.change(access(ORCH), Caller(identity=ORCH), theirs, "roll back")
    with pytest.raises(PermissionDeniedError, match="submitted by spiffe://agw.local/orchestrator: it needs role operator"):
        AUTHZ.change(access(EDGE), Caller(identity=EDGE), theirs, "roll back")
    AUTHZ.change(access("spiffe://agw.local/noc-1"), Caller(identity="spiffe://agw.local/noc-1"), theirs, "cancel")
    with pytest.raises(PermissionDeniedError, match="needs role operator"):
        AUTHZ.fallout(access(ORCH), theirs, "", "retry")
    AUTHZ.fallout(access("spiffe://agw.local/noc-1"), theirs, "t0", "resolve a fallout")


@pytest.mark.parametrize(("data", "message"), [
    ({"grants": []}, "non-empty list"),
    ({"grants": [{"identity": "x", "role": "boss"}]}, r"grants\[0\].role: must be one of reader"),
    ({"grants": [{"role": "reader"}]}, r"grants\[0\].identity: required"),
    ({"grants": [{"identity": "x", "role": "reader", "devices": []}]}, r"grants\[0\].devices"),
    ({"grants": [{"identity": "x", "role": "reader", "colour": "red"}]}, "unknown field"),
    ({"rules": []}, "one key, grants"),
    ({"grants": [{"identity": "x", "role": "reader", "permissions": ["events:publish"]}]},
     r"grants\[0\].permissions: unknown events:publish \(known: events:subscribe, pools:read, pools:admin\)"),
    ({"grants": [{"identity": "x", "role": "reader", "permissions": []}]}, r"grants\[0\].permissions"),
])
def test_bad_policies_are_refused_naming_the_file(data: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as err:
        parse_policy(data, source="/etc/agw/policy.yaml")
    assert "/etc/agw/policy.yaml" in err.value.message


def test_listen_rules() -> None:
    assert host_of("127.0.0.1:50051") == "127.0.0.1" and host_of("[::1]:1") == "::1" and host_of("localhost:1") == "localhost"
    assert is_loopback("127.3.4.5") and is_loopback("::1") and is_loopback("localhost") and not is_loopback("10.0.0.1")
    check_listen("127.0.0.1:50051", tls=None, insecure=False)
    with pytest.raises(ConfigurationError, match="refusing to serve plain text on 0.0.0.0:50051"):
        check_listen("0.0.0.0:50051", tls=None, insecure=False)
    check_listen("0.0.0.0:50051", tls=None, insecure=True)
    check_listen("0.0.0.0:50051", tls=ServerTls(cert=Path("c"), key=Path("k")), insecure=False)


def test_edge_settings_check_files_and_combinations(tmp_path: Path) -> None:
    pki = development_pki(tmp_path / "pki", clients=("admin",))
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"grants:\n  - {{identity: {ORCH}, role: admin}}\n")
    tls, auth = edge_settings(GatewayConfig(tls_cert=pki["server"].cert, tls_key=pki["server"].key,
                                            client_ca=pki["ca"].cert, policy_path=policy))
    assert tls is not None and auth.identities and auth.policy is not None
    with pytest.raises(ConfigurationError, match="needs both --tls-cert and --tls-key"):
        edge_settings(GatewayConfig(tls_cert=pki["server"].cert))
    with pytest.raises(ConfigurationError, match="--client-ca needs TLS"):
        edge_settings(GatewayConfig(client_ca=pki["ca"].cert))
    with pytest.raises(ConfigurationError, match="a policy needs caller identities"):
        edge_settings(GatewayConfig(tls_cert=pki["server"].cert, tls_key=pki["server"].key, policy_path=policy))
    (tmp_path / "notpem").write_text("hello")
    with pytest.raises(ConfigurationError, match=f"TLS certificate {tmp_path / 'notpem'}: not a PEM file"):
        edge_settings(GatewayConfig(tls_cert=tmp_path / "notpem", tls_key=pki["server"].key))
    with pytest.raises(ConfigurationError, match="give both --cert and --key"):
        ClientTls(ca=pki["ca"].cert, cert=pki["admin"].cert).credentials()


def test_development_pki_keys_are_private(tmp_path: Path) -> None:
    issued = development_pki(tmp_path / "pki", clients=("admin",))
    assert (tmp_path / "pki").stat().st_mode & 0o777 == 0o700
    for item in issued.values():
        assert item.key.stat().st_mode & 0o777 == 0o600
    again = development_pki(tmp_path / "pki", clients=("admin",))
    assert again["ca"].cert.read_bytes() == issued["ca"].cert.read_bytes()  # the CA is kept


def test_agw_pki_commands(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from gateway.cli import main

    runner = CliRunner()
    made = runner.invoke(main, ["pki", "dev", "--dir", str(tmp_path / "pki"), "--client", "orch"])
    assert made.exit_code == 0, made.output
    assert {p.name for p in (tmp_path / "pki").iterdir()} == {"ca.pem", "ca.key", "server.pem", "server.key",
                                                              "orch.pem", "orch.key"}
    extra = runner.invoke(main, ["pki", "client", "noc-1", "--dir", str(tmp_path / "pki"),
                                 "--uri", "spiffe://example.net/noc-1"])
    assert extra.exit_code == 0 and (tmp_path / "pki" / "noc-1.pem").exists()
    bad = runner.invoke(main, ["pki", "client", "bad name", "--dir", str(tmp_path / "pki")])
    assert bad.exit_code == 2 and "letters, digits" in bad.output
    no_ca = runner.invoke(main, ["pki", "server", "--dir", str(tmp_path / "empty")])
    assert no_ca.exit_code == 2 and "run `agw pki init` first" in no_ca.output
