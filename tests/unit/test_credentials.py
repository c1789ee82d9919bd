"""Credential references (file: and env:), permission checks, and the log redaction filter."""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import pytest

from gateway.errors import ConfigurationError
from gateway.inventory import CredentialResolver, RedactingFilter, install_redaction
from gateway.secrets import MASK, Secret

CREDS = """\
nc1:
  netconf: {username: labadmin, password: s3cret-nc1}
r1:
  cli: {username: labadmin, password: s3cret-cli}
  snmp:
    community: rw-community-1
    community_ro: ro-community-1
    username: snmpadmin
    auth_key: auth-key-123
    priv_key: priv-key-456
    auth_protocol: SHA
    priv_protocol: AES
flat.key: {username: u, password: flat-pass}
"""


def cred_file(tmp_path: Path, text: str = CREDS, mode: int = 0o600) -> Path:
    p = tmp_path / "credentials.yaml"
    p.write_text(text)
    os.chmod(p, mode)
    return p


def test_file_reference_with_nested_key(tmp_path: Path) -> None:
    p = cred_file(tmp_path)
    cred = CredentialResolver(environ={}).resolve(f"file:{p}#nc1.netconf")
    assert cred.ref == f"file:{p}#nc1.netconf"
    assert cred.username == "labadmin"
    assert isinstance(cred.password, Secret) and cred.password.reveal() == "s3cret-nc1"
    assert "s3cret" not in repr(cred) and "s3cret" not in str(cred)


def test_file_reference_snmp_fields(tmp_path: Path) -> None:
    p = cred_file(tmp_path, mode=0o400)
    cred = CredentialResolver(environ={}).resolve(f"file:{p}#r1.snmp")
    assert cred.community.reveal() == "rw-community-1" and cred.extra["community_ro"].reveal() == "ro-community-1"
    assert (cred.auth_key.reveal(), cred.priv_key.reveal()) == ("auth-key-123", "priv-key-456")
    assert (cred.username, cred.auth_protocol, cred.priv_protocol) == ("snmpadmin", "SHA", "AES")
    assert cred.password is None


def test_literal_dotted_top_level_key(tmp_path: Path) -> None:
    p = cred_file(tmp_path)
    assert CredentialResolver(environ={}).resolve(f"file:{p}#flat.key").password.reveal() == "flat-pass"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o644, 0o666, 0o610])
def test_group_or_other_permission_is_refused(tmp_path: Path, mode: int) -> None:
    p = cred_file(tmp_path, mode=mode)
    with pytest.raises(ConfigurationError, match=rf"mode {mode:04o}.*group or others.*chmod 600"):
        CredentialResolver(environ={}).resolve(f"file:{p}#nc1.netconf")


@pytest.mark.parametrize(("mode", "who"), [(0o640, "group-readable"), (0o604, "other-readable")])
def test_refusal_names_the_file_and_its_mode(tmp_path: Path, mode: int, who: str) -> None:
    p = cred_file(tmp_path, mode=mode)
    with pytest.raises(ConfigurationError) as info:
        CredentialResolver(environ={}).resolve(f"file:{p}#nc1.netconf")
    message = str(info.value)
    assert str(p) in message and f"{mode:04o}" in message, who
    assert "s3cret" not in message  # the content is never read, let alone shown


def test_not_a_regular_file(tmp_path: Path) -> None:
    d = tmp_path / "dir"
    d.mkdir(mode=0o700)
    with pytest.raises(ConfigurationError, match="not a regular file"):
        CredentialResolver(environ={}).resolve(f"file:{d}#x")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(ConfigurationError, match="not a regular file"):
        CredentialResolver(environ={}).resolve(f"file:{fifo}#x")


def test_symlink_to_a_private_file_is_followed_and_checked(tmp_path: Path) -> None:
    p = cred_file(tmp_path)
    link = tmp_path / "link.yaml"
    link.symlink_to(p)
    assert CredentialResolver(environ={}).resolve(f"file:{link}#nc1.netconf").username == "labadmin"
    os.chmod(p, 0o644)
    with pytest.raises(ConfigurationError, match="group or others"):
        CredentialResolver(environ={}).resolve(f"file:{link}#nc1.netconf")


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("file:{p}#r9.netconf", "key 'r9.netconf' not found"),
        ("file:{p}#r1", "unknown field"),  # r1 holds sub-entries, not credential fields
        ("file:{p}", "missing '#key'"),
        ("file:relative.yaml#k", "must be absolute"),
        ("file:/nonexistent/agw/creds.yaml#k", "does not exist"),
        ("vault:secret/r1", "must start with 'file:' or 'env:'"),
        ("env:1BAD", "not a valid environment variable prefix"),
    ],
)
def test_resolution_errors(tmp_path: Path, ref: str, message: str) -> None:
    p = cred_file(tmp_path)
    with pytest.raises(ConfigurationError, match=message) as info:
        CredentialResolver(environ={}).resolve(ref.format(p=p))
    for secret in ("s3cret", "community-1", "auth-key", "priv-key", "flat-pass"):
        assert secret not in str(info.value)


def test_yaml_error_does_not_leak_file_content(tmp_path: Path) -> None:
    p = cred_file(tmp_path, "r1:\n  cli: {username: u, password: 'leaky-password\n")
    with pytest.raises(ConfigurationError, match="line") as info:
        CredentialResolver(environ={}).resolve(f"file:{p}#r1.cli")
    assert "leaky-password" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no chained YAML error either


def test_non_string_value_is_refused_without_echo(tmp_path: Path) -> None:
    p = cred_file(tmp_path, "r1: {username: u, password: 987654321}\n")
    with pytest.raises(ConfigurationError, match="'password' must be a string") as info:
        CredentialResolver(environ={}).resolve(f"file:{p}#r1")
    assert "987654321" not in str(info.value)


def test_empty_entry_is_refused(tmp_path: Path) -> None:
    p = cred_file(tmp_path, "r1: {username: ''}\n")
    with pytest.raises(ConfigurationError, match="no credential field"):
        CredentialResolver(environ={}).resolve(f"file:{p}#r1")


def test_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    p = cred_file(tmp_path)
    resolver = CredentialResolver(environ={})
    ref = f"file:{p}#nc1.netconf"
    assert resolver.resolve(ref).password.reveal() == "s3cret-nc1"
    p.write_text(CREDS.replace("s3cret-nc1", "rotated-pass"))
    st = os.stat(p)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert resolver.resolve(ref).password.reveal() == "rotated-pass"
    # and the permission check runs on every resolve, cached or not
    os.chmod(p, 0o644)
    with pytest.raises(ConfigurationError, match="group or others"):
        resolver.resolve(ref)


def test_env_reference() -> None:
    env = {"R1_USERNAME": "admin", "R1_PASSWORD": "env-pass", "R1_COMMUNITY": "env-comm", "R1_AUTH_KEY": "ak",
           "R1_PRIV_KEY": "pk", "R1_AUTH_PROTOCOL": "SHA256", "R1_PRIV_PROTOCOL": "AES256", "OTHER_PASSWORD": "x"}
    cred = CredentialResolver(environ=env).resolve("env:R1")
    assert cred.username == "admin" and cred.password.reveal() == "env-pass" and cred.community.reveal() == "env-comm"
    assert (cred.auth_key.reveal(), cred.priv_key.reveal(), cred.auth_protocol, cred.priv_protocol) == ("ak", "pk", "SHA256", "AES256")


def test_env_reference_with_nothing_set() -> None:
    with pytest.raises(ConfigurationError, match=r"none of the environment variables R2_USERNAME"):
        CredentialResolver(environ={"R1_PASSWORD": "x"}).resolve("env:R2")


def test_known_secrets_collects_every_resolved_value(tmp_path: Path) -> None:
    p = cred_file(tmp_path)
    resolver = CredentialResolver(environ={"X_PASSWORD": "env-secret"})
    assert resolver.known_secrets() == frozenset()
    resolver.resolve(f"file:{p}#r1.snmp")
    resolver.resolve("env:X")
    assert resolver.known_secrets() == {"rw-community-1", "ro-community-1", "auth-key-123", "priv-key-456", "env-secret"}
    assert "snmpadmin" not in resolver.known_secrets()  # user names are not secrets


# -- redaction -------------------------------------------------------------------------------------

@pytest.fixture
def captured():
    logger = logging.getLogger("agw.test.redaction")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(handler)
    yield logger, handler, stream
    logger.removeHandler(handler)


def test_filter_masks_message_args_and_exception(tmp_path: Path, captured) -> None:
    logger, handler, stream = captured
    p = cred_file(tmp_path)
    resolver = CredentialResolver(environ={})
    resolver.resolve(f"file:{p}#nc1.netconf")
    install_redaction(resolver, logger=logger)
    logger.info("login with s3cret-nc1 in the message")
    logger.info("login with %s / %r", "labadmin", "s3cret-nc1")
    try:
        raise RuntimeError("device said: bad password s3cret-nc1")
    except RuntimeError:
        logger.exception("failed")
    logger.warning("stack", stack_info=True, extra={})
    out = stream.getvalue()
    assert "s3cret-nc1" not in out
    assert out.count(MASK) >= 3
    assert "login with labadmin / '********'" in out
    assert "RuntimeError: device said: bad password ********" in out


def test_filter_sees_secrets_resolved_after_installation(tmp_path: Path, captured) -> None:
    logger, handler, stream = captured
    resolver = CredentialResolver(environ={"LATE_PASSWORD": "late-secret"})
    handler.addFilter(RedactingFilter(resolver))
    logger.info("before: late-secret")
    resolver.resolve("env:LATE")
    logger.info("after: late-secret")
    lines = stream.getvalue().splitlines()
    assert lines == ["INFO before: late-secret", f"INFO after: {MASK}"]


def test_longest_secret_is_masked_first(captured) -> None:
    logger, handler, stream = captured
    handler.addFilter(RedactingFilter(lambda: ["abc", "abcdef"]))
    logger.info("x abcdef y")
    assert stream.getvalue().strip() == f"INFO x {MASK} y"


def test_filter_keeps_records_and_survives_bad_format_args(captured) -> None:
    logger, handler, stream = captured
    flt = RedactingFilter(lambda: ["pw"])
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%d items", ("not-a-number",), None)
    assert flt.filter(record) is True  # never drops, never raises
    assert flt.redact("a pw b") == f"a {MASK} b"


def test_install_redaction_on_the_root_logger_handlers(tmp_path: Path) -> None:
    root = logging.getLogger()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.INFO)
    try:
        resolver = CredentialResolver(environ={"ROOTT_PASSWORD": "root-level-secret"})
        resolver.resolve("env:ROOTT")
        flt = install_redaction(resolver)
        assert flt in handler.filters
        install_redaction(resolver)  # idempotent per handler
        assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
        logging.getLogger("gateway.some.module").info("pw=%s", "root-level-secret")
        assert "root-level-secret" not in stream.getvalue() and MASK in stream.getvalue()
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
