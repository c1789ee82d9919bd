"""The subscribers file (``agw serve --subscribers PATH``): who gets which result events, and how
hard the gateway tries. Parsed and checked at start (a bad file stops the start, named); pure
apart from reading the file and resolving the secrets.

::

    source: agw://gw-prod             # optional; default agw://<hostname>. Replicas: give one value
    poll_interval_s: 1.0              # optional: how often the dispatcher looks for work
    concurrency: 8                    # optional: attempts in flight at once, all subscribers
    defaults:                         # optional: what every subscriber inherits
      retry: {base_delay_s: 1, max_delay_s: 300, max_attempts: 20, max_age_s: 86400, jitter: 0.2}
      timeouts: {connect_s: 5, total_s: 10}
      max_response_bytes: 65536
    subscribers:
      - name: oss                     # [A-Za-z0-9_.-]+, unique; stored with each delivery
        url: https://oss.example.net/agw/events
        secret: env:AGW_OSS_HOOK_SECRET    # or file:/etc/agw/oss-hook.secret (mode 0600)
        filter:                       # optional; every key optional; all given must match
          services: [l3vpn]
          groups: [core]              # inventory groups of the tasks' devices
          devices: ["pe*"]            # device name globs
          outcomes: [completed, fallout]
        retry: {max_attempts: 50}     # optional: overrides the defaults, key by key
        timeouts: {total_s: 5}
        ca: /etc/agw/oss-ca.pem       # optional: the CA of the receiver's certificate
        insecure: false               # true: plain http to a host that is not loopback
        retry_client_errors: false    # true: a 4xx is retried like a 5xx
      - name: bus                     # a NATS JetStream stream (gateway/events/jetstream.py)
        kind: nats
        url: nats://127.0.0.1:4222    # nats:// (loopback, or insecure: true) or tls://
        stream: AGW_RESULTS           # created when missing, with the subjects <subject_prefix>.>
        subject_prefix: agw.activation    # one subject per outcome: agw.activation.completed, …
        token: env:AGW_NATS_TOKEN     # optional: the server's token (env: or file:, like secret), or
        user: agw                     #   a user and its password (env: or file:), and/or
        password: file:/etc/agw/nats-password
        client_cert: /etc/agw/nats-client.pem   # a client certificate (tls:// only; with client_key)
        client_key: /etc/agw/nats-client.key
        duplicate_window_s: 120       # optional: the stream's deduplication window, when created here
        # filter, retry, timeouts, ca, insecure: as for a webhook

A filter matches an event when its outcome is one of ``outcomes`` and at least one task is of
one of ``services``, on a device of one of ``groups`` and named by one of ``devices`` (each test
only when given).
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import stat
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

from gateway.errors import ConfigurationError
from gateway.inventory._yaml import load_yaml_file, type_name
from gateway.journal.outbox import END_STATES
from gateway.secrets import Secret

MIN_SECRET_CHARS = 16
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Exponential backoff with jitter, bounded by attempts and by a window of time."""

    base_delay_s: float = 1.0
    max_delay_s: float = 300.0
    max_attempts: int = 20
    max_age_s: float = 86_400.0
    """The window: no attempt later than this after the delivery started (fan-out or replay)."""
    jitter: float = 0.2
    """Up to this share of each delay is taken off at random (0: none)."""

    def delay_s(self, failed: int, rand: float) -> float:
        """The wait after ``failed`` failed attempts (1, 2, …): ``base·2^(failed-1)`` capped at
        ``max_delay_s``, less ``jitter·rand`` of it (``rand`` in [0, 1))."""
        exponent = min(max(failed, 1) - 1, 64)
        delay = min(self.max_delay_s, self.base_delay_s * 2.0 ** exponent)
        return delay * (1.0 - self.jitter * min(max(rand, 0.0), 1.0))

    def next_attempt(self, *, failed: int, started_at: datetime, now: datetime, rand: float,
                     retry_after_s: float | None = None) -> datetime | None:
        """When to try again after ``failed`` failed attempts; None: never (a dead letter). A
        receiver's Retry-After is honoured up to ``max_delay_s``."""
        if failed >= self.max_attempts:
            return None
        delay = self.delay_s(failed, rand)
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, self.max_delay_s))
        when = now + timedelta(seconds=delay)
        return None if when > started_at + timedelta(seconds=self.max_age_s) else when


@dataclass(frozen=True, kw_only=True)
class Timeouts:
    connect_s: float = 5.0
    total_s: float = 10.0
    """The whole attempt: connect, send, the answer's status and what is read of its body."""


@dataclass(frozen=True, kw_only=True)
class Filter:
    services: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    devices: tuple[str, ...] = ()
    outcomes: frozenset[str] = frozenset()

    def matches(self, data: Mapping[str, Any], groups_of: Callable[[str], frozenset[str]]) -> bool:
        """Whether an event's data (:mod:`gateway.journal.outbox`) passes."""
        if self.outcomes and data.get("outcome") not in self.outcomes:
            return False
        if not (self.services or self.groups or self.devices):
            return True
        return any(self._task(t, groups_of) for t in data.get("tasks", ()))

    def _task(self, task: Mapping[str, Any], groups_of: Callable[[str], frozenset[str]]) -> bool:
        device = str(task.get("device", ""))
        if self.services and task.get("service") not in self.services:
            return False
        if self.groups and not (groups_of(device) & self.groups):
            return False
        return not self.devices or any(fnmatchcase(device, glob) for glob in self.devices)


KINDS = ("webhook", "nats")
_SUBJECT_RE = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
_STREAM_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True, kw_only=True)
class NatsTarget:
    """Where a ``kind: nats`` subscriber's events go: a JetStream stream, one subject per outcome."""

    stream: str
    subject_prefix: str = "agw.activation"
    token: Secret | None = field(default=None, repr=False)
    user: str = ""
    password: Secret | None = field(default=None, repr=False)
    client_cert: Path | None = None
    """With ``client_key``: the certificate the gateway shows a nats-server that verifies clients."""
    client_key: Path | None = None
    duplicate_window_s: float = 120.0
    """The stream's deduplication window (by ``Nats-Msg-Id``), when the gateway creates the stream."""

    def subject(self, outcome: str) -> str:
        return f"{self.subject_prefix}.{outcome}"

    @property
    def subjects(self) -> str:
        """What the stream must capture."""
        return f"{self.subject_prefix}.>"


@dataclass(frozen=True, kw_only=True)
class Subscriber:
    name: str
    url: str
    secret: Secret | None = field(default=None, repr=False)
    """A webhook's HMAC key (required for webhooks)."""
    kind: str = "webhook"
    """The sink that delivers to it (:mod:`gateway.events.dispatcher`): webhook or nats."""
    nats: NatsTarget | None = None
    """``kind: nats``: the stream and subjects."""
    filter: Filter = Filter()
    retry: RetryPolicy = RetryPolicy()
    timeouts: Timeouts = Timeouts()
    max_response_bytes: int = 65_536
    """At most this much of an answer's body is read (for the error message); the rest is dropped."""
    ca: Path | None = None
    insecure: bool = False
    retry_client_errors: bool = False

    @property
    def lease_s(self) -> float:
        """How long a claimed attempt keeps the delivery from other replicas (and from a restart)."""
        return self.timeouts.total_s + LEASE_MARGIN_S


LEASE_MARGIN_S = 5.0


@dataclass(frozen=True, kw_only=True)
class EventsConfig:
    subscribers: tuple[Subscriber, ...]
    source: str = ""
    poll_interval_s: float = 1.0
    concurrency: int = 8
    origin: str = "<subscribers>"

    def get(self, name: str) -> Subscriber | None:
        return next((s for s in self.subscribers if s.name == name), None)


# -- parsing ---------------------------------------------------------------------------------------------


class _Problems(list[str]):
    def need(self, ok: bool, message: str) -> bool:
        if not ok:
            self.append(message)
        return ok


def _mapping(value: Any, where: str, known: tuple[str, ...], problems: _Problems) -> dict[str, Any]:
    if value is None:
        return {}
    if not problems.need(isinstance(value, dict), f"{where}: must be a mapping, not {type_name(value)}"):
        return {}
    unknown = sorted(str(k) for k in value if k not in known)
    problems.need(not unknown, f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(known)})")
    return {k: v for k, v in value.items() if k in known}


def _number(value: Any, where: str, problems: _Problems, *, integer: bool = False, low: float = 0.0,
            high: float | None = None, low_open: bool = True) -> float | None:
    ok = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool)
    if ok:
        ok = (value > low if low_open else value >= low) and (high is None or value <= high)
    bound = f"{'>' if low_open else '>='} {low:g}" + ("" if high is None else f" and <= {high:g}")
    if not problems.need(ok, f"{where}: must be {'a whole number' if integer else 'a number'} {bound}, "
                             f"not {value!r}"):
        return None
    return float(value)


def _strings(value: Any, where: str, problems: _Problems) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not problems.need(isinstance(value, list) and all(isinstance(v, str) and v for v in value),
                         f"{where}: must be a list of names"):
        return ()
    return tuple(value)


def _retry(value: Any, where: str, base: RetryPolicy, problems: _Problems) -> RetryPolicy:
    d = _mapping(value, where, ("base_delay_s", "max_delay_s", "max_attempts", "max_age_s", "jitter"), problems)
    changes: dict[str, Any] = {}
    for key, v in d.items():
        n = _number(v, f"{where}.{key}", problems, integer=key == "max_attempts",
                    low=0.0, high=1.0 if key == "jitter" else None, low_open=key != "jitter")
        if n is not None:
            changes[key] = int(n) if key == "max_attempts" else n
    policy = replace(base, **changes)
    problems.need(policy.base_delay_s <= policy.max_delay_s, f"{where}: base_delay_s must not exceed max_delay_s")
    return policy


def _timeouts(value: Any, where: str, base: Timeouts, problems: _Problems) -> Timeouts:
    d = _mapping(value, where, ("connect_s", "total_s"), problems)
    changes = {k: n for k, v in d.items() if (n := _number(v, f"{where}.{k}", problems, high=600)) is not None}
    return replace(base, **changes)


def _filter(value: Any, where: str, problems: _Problems) -> Filter:
    d = _mapping(value, where, ("services", "groups", "devices", "outcomes"), problems)
    outcomes = _strings(d.get("outcomes", []), f"{where}.outcomes", problems)
    wrong = sorted(set(outcomes) - END_STATES)
    problems.need(not wrong, f"{where}.outcomes: unknown outcome(s) {', '.join(wrong)} "
                             f"(known: {', '.join(sorted(END_STATES))})")
    return Filter(services=frozenset(_strings(d.get("services", []), f"{where}.services", problems)),
                  groups=frozenset(_strings(d.get("groups", []), f"{where}.groups", problems)),
                  devices=_strings(d.get("devices", []), f"{where}.devices", problems),
                  outcomes=frozenset(outcomes))


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url(value: Any, where: str, insecure: bool, problems: _Problems, *, kind: str = "webhook") -> str:
    if not problems.need(isinstance(value, str) and bool(value), f"{where}: a url is required"):
        return ""
    parts = urlsplit(value)
    plain, tls = ("http", "https") if kind == "webhook" else ("nats", "tls")
    if not problems.need(parts.scheme in (plain, tls) and bool(parts.hostname),
                         f"{where}: {value!r} is not a URL of scheme {plain} or {tls}"):
        return ""
    problems.need(parts.scheme == tls or insecure or _loopback(parts.hostname or ""),
                  f"{where}: plain {plain} to {parts.hostname} would send results (rendered configuration) "
                  f"in clear; use {tls}, or set insecure: true")
    problems.need(not parts.username and not parts.password,
                  f"{where}: no credentials in the URL (use {'secret' if kind == 'webhook' else 'token'})")
    return str(value)


def resolve_secret(ref: Any, *, where: str, environ: Mapping[str, str], min_chars: int = MIN_SECRET_CHARS) -> Secret:
    """``env:VAR`` (the variable's value) or ``file:/abs/path`` (the file's text, less its final
    line break; the file must not be readable by group or others), at least ``min_chars`` long.
    Messages never show a value."""
    if not isinstance(ref, str) or not ref.startswith(("env:", "file:")):
        raise ConfigurationError(f"{where}: must be env:VARIABLE or file:/absolute/path (never the secret itself)")
    if ref.startswith("env:"):
        var = ref[4:]
        if not _ENV_RE.match(var):
            raise ConfigurationError(f"{where}: {var!r} is not an environment variable name")
        if not environ.get(var):
            raise ConfigurationError(f"{where}: environment variable {var} is not set")
        value = environ[var]
    else:
        path = Path(ref[5:])
        if not path.is_absolute():
            raise ConfigurationError(f"{where}: the file path must be absolute")
        try:
            st = os.stat(path)
            if not stat.S_ISREG(st.st_mode) or st.st_mode & 0o077:
                raise ConfigurationError(f"{where}: {path} must be a regular file not readable or writable by group "
                                         f"or others (chmod 600 {path})")
            value = path.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"{where}: cannot read {path}: {type(exc).__name__}") from None
    if len(value) < min_chars:
        raise ConfigurationError(f"{where}: the secret is shorter than {min_chars} characters")
    return Secret(value)


_TOP = ("source", "poll_interval_s", "concurrency", "defaults", "subscribers")
_COMMON = ("name", "kind", "url", "filter", "retry", "timeouts", "ca", "insecure")
_SUB = {"webhook": (*_COMMON, "secret", "max_response_bytes", "retry_client_errors"),
        "nats": (*_COMMON, "stream", "subject_prefix", "token", "user", "password", "client_cert", "client_key",
                 "duplicate_window_s")}


def _nats(d: dict[str, Any], where: str, env: Mapping[str, str], problems: _Problems) -> NatsTarget | None:
    """The JetStream part of a ``kind: nats`` subscriber."""
    import importlib.util

    problems.need(importlib.util.find_spec("nats") is not None,
                  f"{where}.kind: nats needs the nats client: pip install 'activation-gateway[nats]'")
    stream, prefix = d.get("stream"), d.get("subject_prefix", NatsTarget.subject_prefix)
    ok = problems.need(isinstance(stream, str) and bool(_STREAM_RE.match(stream)),
                       f"{where}.stream: required, letters, digits, _ and - (at most 64)")
    ok = problems.need(isinstance(prefix, str) and bool(_SUBJECT_RE.match(prefix)),
                       f"{where}.subject_prefix: dot-separated tokens of letters, digits, _ and - "
                       f"(no wildcards), not {prefix!r}") and ok
    window = _number(d.get("duplicate_window_s", NatsTarget.duplicate_window_s), f"{where}.duplicate_window_s",
                     problems, high=86_400)
    token: Secret | None = None
    if "token" in d:
        try:
            token = resolve_secret(d["token"], where=f"{where}.token", environ=env, min_chars=1)
        except ConfigurationError as exc:
            problems.append(exc.message)
            ok = False
    user, password = d.get("user", ""), None
    ok = problems.need(isinstance(user, str) and len(user) <= 256 and user.isprintable() and " " not in user,
                       f"{where}.user: a name without spaces (at most 256 characters)") and ok
    if ok and ("password" in d) != bool(user):
        problems.append(f"{where}: user and password go together")
        ok = False
    elif "password" in d:
        try:
            password = resolve_secret(d["password"], where=f"{where}.password", environ=env, min_chars=1)
        except ConfigurationError as exc:
            problems.append(exc.message)
            ok = False
    if ok and token is not None and user:
        problems.append(f"{where}: a token or a user and password, not both")
        ok = False
    cert, key = d.get("client_cert"), d.get("client_key")
    if (cert is None) != (key is None):
        problems.append(f"{where}: client_cert and client_key go together")
        ok = False
    elif cert is not None:
        for name, value in (("client_cert", cert), ("client_key", key)):
            ok = problems.need(isinstance(value, str) and Path(value).is_file(),
                               f"{where}.{name}: {value!r} is not a readable file") and ok
        ok = problems.need(str(d.get("url", "")).startswith("tls://"),
                           f"{where}.client_cert: a client certificate needs a tls:// url") and ok
    if not ok or window is None:
        return None
    return NatsTarget(stream=str(stream), subject_prefix=str(prefix), token=token, user=str(user), password=password,
                      client_cert=Path(cert) if cert else None, client_key=Path(key) if key else None,
                      duplicate_window_s=window)


def parse_subscribers(data: Any, *, origin: str, environ: Mapping[str, str] | None = None) -> EventsConfig:
    """An :class:`EventsConfig` from the file's data; every problem at once in one
    :class:`~gateway.errors.ConfigurationError` naming ``origin``."""
    env = os.environ if environ is None else environ
    problems = _Problems()
    top = _mapping(data, origin, _TOP, problems)
    defaults = _mapping(top.get("defaults"), f"{origin}: defaults", ("retry", "timeouts", "max_response_bytes"),
                        problems)
    retry = _retry(defaults.get("retry"), f"{origin}: defaults.retry", RetryPolicy(), problems)
    timeouts = _timeouts(defaults.get("timeouts"), f"{origin}: defaults.timeouts", Timeouts(), problems)
    max_body = defaults.get("max_response_bytes", Subscriber.max_response_bytes)
    subscribers: list[Subscriber] = []
    items = top.get("subscribers", [])
    if not problems.need(isinstance(items, list), f"{origin}: subscribers: must be a list"):
        items = []
    for i, item in enumerate(items):
        where = f"{origin}: subscribers[{i}]"
        kind = item.get("kind", "webhook") if isinstance(item, dict) else "webhook"
        if not problems.need(kind in KINDS, f"{where}.kind: must be one of {', '.join(KINDS)}, not {kind!r}"):
            continue
        d = _mapping(item, where, _SUB[kind], problems)
        name = d.get("name")
        if problems.need(isinstance(name, str) and bool(_NAME_RE.match(name)),
                         f"{where}.name: required, letters, digits and _ . - (at most 64)"):
            where = f"{origin}: subscriber {name}"
            problems.need(name not in {s.name for s in subscribers}, f"{where}: the name is used twice")
        insecure = d.get("insecure", False)
        flags_ok = all(isinstance(d.get(k, False), bool) for k in ("insecure", "retry_client_errors"))
        problems.need(flags_ok, f"{where}: insecure and retry_client_errors must be true or false")
        url = _url(d.get("url"), f"{where}.url", insecure is True, problems, kind=kind)
        secret: Secret | None = None
        nats: NatsTarget | None = None
        if kind == "webhook":
            try:
                secret = resolve_secret(d.get("secret"), where=f"{where}.secret", environ=env)
            except ConfigurationError as exc:
                problems.append(exc.message)
        else:
            nats = _nats(d, where, env, problems)
        body = _number(d.get("max_response_bytes", max_body), f"{where}.max_response_bytes", problems, integer=True,
                       high=16 * 1024 * 1024)
        ca = d.get("ca")
        if ca is not None and problems.need(isinstance(ca, str) and Path(ca).is_file(),
                                            f"{where}.ca: {ca!r} is not a readable file"):
            ca = Path(ca)
        sub_timeouts = _timeouts(d.get("timeouts"), f"{where}.timeouts", timeouts, problems)
        problems.need(sub_timeouts.connect_s <= sub_timeouts.total_s, f"{where}.timeouts: connect_s exceeds total_s")
        flt = _filter(d.get("filter"), f"{where}.filter", problems)
        policy = _retry(d.get("retry"), f"{where}.retry", retry, problems)
        if problems or not isinstance(name, str):
            continue
        subscribers.append(Subscriber(
            name=name, url=url, secret=secret, kind=kind, nats=nats, filter=flt, retry=policy, timeouts=sub_timeouts,
            max_response_bytes=int(body or 0), ca=ca if isinstance(ca, Path) else None, insecure=insecure is True,
            retry_client_errors=d.get("retry_client_errors", False) is True))
    source = top.get("source", f"agw://{socket.gethostname()}")
    problems.need(isinstance(source, str) and bool(source), f"{origin}: source: must be a URI reference")
    poll = _number(top.get("poll_interval_s", 1.0), f"{origin}: poll_interval_s", problems, high=60)
    concurrency = _number(top.get("concurrency", 8), f"{origin}: concurrency", problems, integer=True, high=256)
    if problems:
        raise ConfigurationError("; ".join(problems))
    return EventsConfig(subscribers=tuple(subscribers), source=str(source), poll_interval_s=poll or 1.0,
                        concurrency=int(concurrency or 8), origin=origin)


def load_subscribers(path: Path, *, environ: Mapping[str, str] | None = None) -> EventsConfig:
    """Read and check the subscribers file (secrets resolved now: a missing one stops the start)."""
    return parse_subscribers(load_yaml_file(path), origin=str(path), environ=environ)


__all__ = ["EventsConfig", "Filter", "KINDS", "LEASE_MARGIN_S", "MIN_SECRET_CHARS", "NatsTarget", "RetryPolicy",
           "Subscriber", "Timeouts",
           "load_subscribers", "parse_subscribers", "resolve_secret"]
