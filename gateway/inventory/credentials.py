"""Credentials by reference, resolved at run time.

Two reference forms:

``file:/abs/path.yaml#key``
    A YAML file that only the gateway can read: a regular file with no group/other permission
    bits (mode 0600 or 0400). ``key`` is a top-level key, or a dotted path into nested mappings
    (``r1.netconf`` → ``data["r1"]["netconf"]``). The entry is a mapping of ``username``,
    ``password``, ``private_key_path`` and, for SNMP, ``community``, ``community_ro``,
    ``auth_key``, ``priv_key``, ``auth_protocol``, ``priv_protocol``. Parsed files are cached
    and read again when they change (mtime, size or inode).
``env:PREFIX``
    Environment variables ``PREFIX_USERNAME``, ``PREFIX_PASSWORD``, ``PREFIX_COMMUNITY``,
    ``PREFIX_COMMUNITY_RO``, ``PREFIX_AUTH_KEY``, ``PREFIX_PRIV_KEY``, ``PREFIX_AUTH_PROTOCOL``,
    ``PREFIX_PRIV_PROTOCOL``, ``PREFIX_PRIVATE_KEY_PATH``.

Secret values become :class:`gateway.secrets.Secret`. Error messages name the reference, the
file and the field, never a value, and are raised ``from None`` so no chained exception carries
file content either. Every secret value resolved is remembered for the log redaction filter
(:meth:`CredentialResolver.known_secrets`).
"""

from __future__ import annotations

import logging
import os
import re
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from gateway.errors import ConfigurationError
from gateway.inventory._yaml import load_yaml_text, type_name
from gateway.secrets import Credential, Secret

log = logging.getLogger(__name__)

SECRET_FIELDS = ("password", "community", "auth_key", "priv_key")
PLAIN_FIELDS = ("username", "auth_protocol", "priv_protocol", "private_key_path")
EXTRA_SECRET_FIELDS = ("community_ro",)
ALL_FIELDS = PLAIN_FIELDS + SECRET_FIELDS + EXTRA_SECRET_FIELDS
_ENV_PREFIX_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class _Cached:
    signature: tuple[int, int, int, int]
    data: Any


class CredentialResolver:
    """Resolve credential references. Thread-safe; ``environ`` defaults to ``os.environ``."""

    def __init__(self, *, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ
        self._files: dict[str, _Cached] = {}
        self._known: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    # public -------------------------------------------------------------------------------
    def resolve(self, ref: str) -> Credential:
        if not isinstance(ref, str):
            raise ConfigurationError(f"a credential reference must be a string, not {type_name(ref)}")
        if ref.startswith("file:"):
            values = self._from_file(ref)
        elif ref.startswith("env:"):
            values = self._from_env(ref)
        else:
            raise ConfigurationError(
                "credential reference must start with 'file:' or 'env:' "
                "(e.g. 'file:/etc/agw/credentials.yaml#r1.netconf' or 'env:R1')"
            )
        cred = _build(ref, values)
        self._remember(cred.secrets())
        return cred

    def known_secrets(self) -> frozenset[str]:
        """Every secret value resolved so far (for :class:`RedactingFilter`)."""
        return self._known

    # file: --------------------------------------------------------------------------------
    def _from_file(self, ref: str) -> dict[str, Any]:
        body = ref[len("file:"):]
        path_s, sep, key = body.partition("#")
        if not sep or not key:
            raise ConfigurationError(f"credentials {ref!r}: missing '#key' after the file path")
        if not path_s.startswith("/"):
            raise ConfigurationError(f"credentials {ref!r}: the file path must be absolute")
        data = self._read(ref, Path(path_s))
        entry = _lookup(data, key)
        if entry is None:
            raise ConfigurationError(f"credentials {ref!r}: key {key!r} not found in {path_s}")
        if not isinstance(entry, dict):
            raise ConfigurationError(
                f"credentials {ref!r}: {path_s}#{key} must be a mapping of credential fields, not {type_name(entry)}"
            )
        return entry

    def _read(self, ref: str, path: Path) -> Any:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise ConfigurationError(f"credentials {ref!r}: file {path} does not exist") from None
        except OSError as exc:
            raise ConfigurationError(f"credentials {ref!r}: cannot access {path}: {exc.strerror}") from None
        _check_mode(ref, path, st)
        signature = (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)
        cached = self._files.get(str(path))
        if cached is not None and cached.signature == signature:
            return cached.data
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise ConfigurationError(f"credentials {ref!r}: cannot open {path}: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())  # check what was opened, not what was looked at
            _check_mode(ref, path, st)
            raw = fh.read()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigurationError(f"credentials {ref!r}: {path} is not UTF-8 text") from None
        data = load_yaml_text(text, source=f"credentials {ref!r}: {path}", with_snippet=False)
        if not isinstance(data, dict):
            raise ConfigurationError(f"credentials {ref!r}: {path} must hold a mapping, not {type_name(data)}")
        with self._lock:
            self._files[str(path)] = _Cached((st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev), data)
        log.debug("read credentials file %s", path)
        return data

    # env: ---------------------------------------------------------------------------------
    def _from_env(self, ref: str) -> dict[str, Any]:
        prefix = ref[len("env:"):]
        if not _ENV_PREFIX_RE.match(prefix):
            raise ConfigurationError(f"credentials {ref!r}: {prefix!r} is not a valid environment variable prefix")
        values = {}
        for name in ALL_FIELDS:
            var = f"{prefix}_{name.upper()}"
            if var in self._environ:
                values[name] = self._environ[var]
        if not any(values.get(n) for n in ALL_FIELDS):
            raise ConfigurationError(
                f"credentials {ref!r}: none of the environment variables {prefix}_USERNAME, {prefix}_PASSWORD, "
                f"{prefix}_COMMUNITY, {prefix}_AUTH_KEY, ... is set"
            )
        return values

    def _remember(self, values: list[str]) -> None:
        new = set(values) - self._known
        if new:
            with self._lock:
                self._known = self._known | new


def _check_mode(ref: str, path: Path, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise ConfigurationError(f"credentials {ref!r}: {path} is not a regular file")
    if st.st_mode & 0o077:
        raise ConfigurationError(
            f"credentials {ref!r}: {path} has mode {stat.S_IMODE(st.st_mode):04o}; it must not be readable or "
            f"writable by group or others (chmod 600 {path})"
        )


def _lookup(data: dict[str, Any], key: str) -> Any:
    if key in data:
        return data[key]
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _build(ref: str, values: Mapping[str, Any]) -> Credential:
    unknown = sorted(str(k) for k in values if k not in ALL_FIELDS)
    if unknown:
        raise ConfigurationError(
            f"credentials {ref!r}: unknown field(s) {', '.join(unknown)} (allowed: {', '.join(ALL_FIELDS)})"
        )
    for name, value in values.items():
        if value is not None and not isinstance(value, str):
            # never show the value: it may be a secret YAML read as a number
            raise ConfigurationError(
                f"credentials {ref!r}: field {name!r} must be a string, not {type_name(value)} (quote it in YAML)"
            )
    if not any(values.get(n) for n in ALL_FIELDS):
        raise ConfigurationError(f"credentials {ref!r}: no credential field is set")

    def secret(name: str) -> Secret | None:
        v = values.get(name)
        return Secret(v) if v else None

    extra = {n: Secret(values[n]) for n in EXTRA_SECRET_FIELDS if values.get(n)}
    return Credential(
        ref=ref,
        username=values.get("username") or "",
        password=secret("password"),
        private_key_path=values.get("private_key_path") or "",
        community=secret("community"),
        auth_key=secret("auth_key"),
        priv_key=secret("priv_key"),
        auth_protocol=values.get("auth_protocol") or "",
        priv_protocol=values.get("priv_protocol") or "",
        extra=extra,
    )


__all__ = ["ALL_FIELDS", "CredentialResolver"]
