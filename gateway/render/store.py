"""The template store: strict, sandboxed Jinja over ``templates/<service>/<platform>.j2``.

Rendering is pure: parameters in, a :class:`drivers.base.ChangeSet` out. Templates run in
Jinja's immutable sandbox with ``StrictUndefined`` (a missing variable is an error, never empty
text), ``trim_blocks``/``lstrip_blocks`` and ``keep_trailing_newline``. The environment follows
from the payload format the platform's *driver* declares (:class:`drivers.base.PayloadFormat`),
never from a profile: XML autoescaped, and every rendered payload checked by
:mod:`gateway.render.payload` before anything can be sent — no parameter value can change what
a template means. Every template problem becomes a :class:`RenderError` naming the template
file, the line and — for an undefined name — the variable; a payload a value would distort is an
:class:`InputError` naming the parameter.
"""

from __future__ import annotations

import html
import logging
import os
import re
import stat
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Mapping

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jsonschema import Draft202012Validator

from drivers.base import ChangeSet, PayloadFormat
from gateway.errors import ConfigurationError, FieldViolation, InputError, Phase, RenderError
from gateway.model import Action
from gateway.render import payload
from gateway.render.masking import masked
from gateway.render.schema import (
    ServiceSpec,
    action_of,
    character_violations,
    delete_schema,
    load_service,
    make_validator,
    path_of,
    prepare,
    schema_violations,
)

log = logging.getLogger(__name__)

PAYLOAD_FORMATS = tuple(f.value for f in PayloadFormat)
SERVICE_FILE = "service.yaml"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_UNDEFINED_RE = re.compile(r"^'([^']+)' is undefined|has no attribute '([^']+)'|no element '?([^']+?)'?$")


def _environment(*, loader: jinja2.BaseLoader | None, autoescape: bool = False,
                 finalize: Any = None) -> jinja2.Environment:
    return ImmutableSandboxedEnvironment(
        loader=loader,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=autoescape,
        finalize=finalize,
        auto_reload=True,
    )


def payload_format_of(value: PayloadFormat | str) -> PayloadFormat:
    try:
        return PayloadFormat(value)
    except ValueError:
        raise ConfigurationError(
            f"unknown payload format {value!r} (known: {', '.join(PAYLOAD_FORMATS)})") from None


class TemplateStore:
    """Services and their templates under ``root`` (the repository's ``templates/``).

    Thread-safe: the engine plans large requests on worker threads while the event loop renders
    small ones. Its caches hold immutable values (file looks, paths, parsed service files,
    validators, compiled check templates) and only ever get or replace whole entries (single
    dict operations; the service and validator caches under a lock); a race makes two threads
    compute the same entry, never a torn one. Jinja's template cache has its own lock, compiled
    templates render concurrently, jsonschema validators are immutable, and the XML check parses
    with one lxml parser per thread (:mod:`gateway.render.payload`)."""

    def __init__(self, *, root: Path, recheck_s: float = 1.0) -> None:
        """``recheck_s``: how long a look at the files (exists? changed?) is trusted before the
        store looks again; edited templates and schemas are picked up within that time."""
        self.root = Path(root)
        self.recheck_s = recheck_s
        self._stats: dict[Path, tuple[float, int | None]] = {}  # path -> (looked at, mtime_ns or None)
        self._paths: dict[tuple[str, str], Path] = {}
        loader = jinja2.FileSystemLoader(str(self.root), followlinks=False)
        self._envs = {fmt: payload.environment(fmt, loader=loader, factory=_environment) for fmt in PayloadFormat}
        self._check_env = _environment(loader=loader)  # service checks: commands read, never pushed
        self._specs: dict[str, tuple[int, ServiceSpec]] = {}
        self._validators: dict[tuple[str, bool], tuple[int, Draft202012Validator]] = {}
        self._checks: dict[str, jinja2.Template] = {}
        self._lock = threading.Lock()

    # discovery ----------------------------------------------------------------------------
    def services(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if _NAME_RE.match(p.name) and (p / SERVICE_FILE).is_file())

    def platforms(self, service: str) -> list[str]:
        if not self._known(service):
            return []
        return sorted(
            p.name[: -len(".j2")]
            for p in (self.root / service).iterdir()
            if p.name.endswith(".j2") and not p.name.endswith(".undo.j2") and p.is_file()
        )

    def has(self, service: str, platform: str) -> bool:
        return (
            self._known(service)
            and isinstance(platform, str)
            and bool(_NAME_RE.match(platform))
            and self._is_file(self._path(service, f"{platform}.j2"))
        )

    def spec(self, service: str) -> ServiceSpec:
        """The parsed ``service.yaml`` (cached; read again when the file changes)."""
        if not self._known(service):
            raise ConfigurationError(f"{self.root}: unknown service {service!r}")
        path = self._path(service, SERVICE_FILE)
        mtime = self._mtime_ns(path)
        if mtime is None:
            raise ConfigurationError(f"{self.root}: unknown service {service!r}")
        cached = self._specs.get(service)
        if cached is not None and cached[0] == mtime:
            return cached[1]
        spec = load_service(path, name=service)
        with self._lock:
            self._specs[service] = (mtime, spec)
        return spec

    def _known(self, service: str) -> bool:
        return isinstance(service, str) and bool(_NAME_RE.match(service)) and self._is_file(self._path(service, SERVICE_FILE))

    def _path(self, service: str, name: str) -> Path:
        """``root/service/name``, built once (pathlib is a visible cost on every render)."""
        key = (service, name)
        path = self._paths.get(key)
        if path is None:
            path = self._paths[key] = self.root / service / name
        return path

    def _mtime_ns(self, path: Path) -> int | None:
        """The file's mtime (None: not a regular file), looked up at most every ``recheck_s``."""
        now = time.monotonic()
        seen = self._stats.get(path)
        if seen is not None and now - seen[0] < self.recheck_s:
            return seen[1]
        try:
            st = os.stat(path)
            mtime: int | None = st.st_mtime_ns if stat.S_ISREG(st.st_mode) else None
        except OSError:
            mtime = None
        self._stats[path] = (now, mtime)
        return mtime

    def _is_file(self, path: Path) -> bool:
        return self._mtime_ns(path) is not None

    # validation ---------------------------------------------------------------------------
    def validate(
        self,
        *,
        service: str,
        action: Action | str,
        parameters: object,
        payload_format: PayloadFormat | str,
    ) -> list[FieldViolation]:
        """Every problem of a task's service, action and parameters (empty list: valid); the
        parameters must be a mapping, and anything else is reported as such."""
        if not self._known(service):
            known = ", ".join(self.services()) or "none"
            return [FieldViolation("service", f"unknown service {service!r} (known: {known})")]
        try:
            act = action_of(action)
        except ValueError:
            return [FieldViolation("action", f"unknown action {action!r} (create, modify or delete)")]
        if not isinstance(parameters, Mapping):
            return [FieldViolation("parameters", "must be an object (a mapping of parameter names to values)")]
        validator = self._validator(service, act)
        out = schema_violations(validator, parameters)
        out.extend(character_violations(parameters, payload_format=payload_format_of(payload_format), parts=[]))
        return out

    def _validator(self, service: str, action: Action) -> Draft202012Validator:
        spec = self.spec(service)
        mtime = self._specs[service][0]
        key = (service, action is Action.DELETE)
        cached = self._validators.get(key)
        if cached is not None and cached[0] == mtime:
            return cached[1]
        schema = delete_schema(spec) if action is Action.DELETE else dict(spec.parameters)
        validator = make_validator(schema)
        with self._lock:
            self._validators[key] = (mtime, validator)
        return validator

    def masked(self, *, service: str, parameters: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
        """A task's parameters with its service's secret parameters masked, and the secret values
        (:func:`gateway.render.masking.masked`); the parameters as they are for an unknown service."""
        paths = self.spec(service).secrets if self._known(service) else ()
        return masked(parameters, paths)

    # rendering ----------------------------------------------------------------------------
    def render(
        self,
        *,
        service: str,
        platform: str,
        action: Action | str,
        parameters: Mapping[str, Any],
        device: str,
        payload_format: PayloadFormat | str,
        validated: bool = False,
    ) -> ChangeSet:
        """Render a task in the payload format of the platform's driver, and check the payload.

        ``validated``: the caller has just had :meth:`validate` accept these very parameters
        (with this ``payload_format``); they are not checked a second time. A payload a value
        would distort raises :class:`InputError` naming the parameter (``parameters.<path>``)."""
        template = f"{service}/{platform}.j2"
        fmt = payload_format_of(payload_format)
        if not self.has(service, platform):
            raise RenderError(f"no template {template} under {self.root}", device=device, phase=Phase.RENDER)
        violations = [] if validated else self.validate(
            service=service, action=action, parameters=parameters, payload_format=fmt)
        if violations:
            raise RenderError(
                f"{template}: invalid parameters: " + "; ".join(str(v) for v in violations),
                device=device,
                phase=Phase.RENDER,
            )
        act = action_of(action)
        spec = self.spec(service)
        schema = delete_schema(spec) if act is Action.DELETE else spec.parameters
        prepared = prepare(schema, parameters, defaults=act is not Action.DELETE)
        context = dict(prepared)
        context.update(parameters=prepared, action=act.value, device=device)

        env = self._envs[fmt]
        content = self._render_payload(env, fmt, template, context, prepared, device=device)
        undo_name = f"{service}/{platform}.undo.j2"
        undo = None
        if self._is_file(self._path(service, f"{platform}.undo.j2")):
            undo = self._render_payload(env, fmt, undo_name, context, prepared, device=device)
        checks = tuple(
            self._render_check(spec, platform, i, text, context, device=device)
            for i, text in enumerate(spec.checks_for(platform))
        )
        return ChangeSet(service=service, action=act, content=content, undo=undo, checks=checks)

    def _render_payload(self, env: jinja2.Environment, fmt: PayloadFormat, name: str, context: dict[str, Any],
                        parameters: Mapping[str, Any], *, device: str) -> str:
        marked = self._render(env, name, context, device=device)
        try:
            return payload.check(fmt, marked)
        except payload.PayloadViolation as exc:
            if exc.template_fault:
                raise RenderError(f"{name} ({fmt.value}): {exc.reason}", device=device, phase=Phase.RENDER) from None
            fields = _parameters_holding(exc.values, parameters) or ["parameters"]
            reason = f"{name} ({fmt.value}): {exc.reason}; the value is refused, nothing was sent"
            raise InputError([FieldViolation(f, reason) for f in fields], device=device, phase=Phase.RENDER) from None

    def _render(self, env: jinja2.Environment, name: str, context: dict[str, Any], *, device: str) -> str:
        try:
            template = env.get_template(name)
        except jinja2.TemplateSyntaxError as exc:
            raise RenderError(
                f"{exc.name or name}, line {exc.lineno}: template syntax error: {exc.message}",
                device=device,
                phase=Phase.RENDER,
            ) from exc
        except jinja2.TemplateNotFound as exc:
            raise RenderError(f"{name}: template not found under {self.root}", device=device, phase=Phase.RENDER) from exc
        try:
            return template.render(context)
        except Exception as exc:  # noqa: BLE001 - every template failure is a RenderError
            raise self._render_error(exc, name, template.filename, device=device) from exc

    def _render_check(
        self, spec: ServiceSpec, platform: str, index: int, text: str, context: dict[str, Any], *, device: str
    ) -> str:
        name = f"{spec.name}/{SERVICE_FILE} checks[{index}]"
        compiled = self._checks.get(text)
        if compiled is None:
            try:
                compiled = self._check_env.from_string(text)
            except jinja2.TemplateSyntaxError as exc:
                raise RenderError(f"{name}, line {exc.lineno}: template syntax error: {exc.message}",
                                  device=device, phase=Phase.RENDER) from exc
            self._checks[text] = compiled
        try:
            return compiled.render(context)
        except Exception as exc:  # noqa: BLE001
            raise self._render_error(exc, name, "<template>", device=device) from exc

    def _render_error(self, exc: BaseException, name: str, filename: str | None, *, device: str) -> RenderError:
        where, line = _template_position(exc.__traceback__, filename, self.root)
        shown = where or name
        at = f"{shown}, line {line}" if line else shown
        if isinstance(exc, jinja2.UndefinedError) and not isinstance(exc, SecurityError):
            var = _undefined_name(str(exc.message or exc))
            msg = f"{at}: undefined variable {var!r} ({exc.message})"
        elif isinstance(exc, SecurityError):
            msg = f"{at}: blocked by the template sandbox: {exc}"
        elif isinstance(exc, jinja2.TemplateError):
            msg = f"{at}: {type(exc).__name__}: {exc}"
        else:
            msg = f"{at}: {type(exc).__name__} while rendering: {exc}"
        return RenderError(msg, device=device, phase=Phase.RENDER)

    # whole-store check --------------------------------------------------------------------
    def check(self, *, formats: Mapping[str, PayloadFormat | str] | None = None) -> None:
        """Load every service file and compile every template. With ``formats`` (platform → the
        payload format its driver declares) also check each template of those platforms, by its
        text (:func:`gateway.render.payload.static_problems`) and by rendering every example of
        its service in that format. Raises one :class:`ConfigurationError` listing every
        problem, each naming its file (start-up and CI)."""
        formats = formats or {}
        problems: list[str] = []
        for service in self.services():
            try:
                spec: ServiceSpec | None = self.spec(service)
            except ConfigurationError as exc:
                problems.append(exc.message)
                spec = None
            for platform in self.platforms(service):
                fmt = payload_format_of(formats[platform]) if platform in formats else None
                names = [f"{service}/{platform}.j2"]
                if (self.root / service / f"{platform}.undo.j2").is_file():
                    names.append(f"{service}/{platform}.undo.j2")
                for n in names:
                    problems.extend(self._check_template(n, fmt))
                if fmt is not None and spec is not None:
                    problems.extend(self._check_examples(spec, platform, fmt))
        if problems:
            raise ConfigurationError("; ".join(problems))

    def _check_template(self, name: str, fmt: PayloadFormat | None) -> list[str]:
        path = self.root / name
        env = self._envs[fmt] if fmt is not None else self._check_env
        try:
            env.get_template(name)
        except jinja2.TemplateSyntaxError as exc:
            return [f"{self.root / (exc.name or name)}, line {exc.lineno}: template syntax error: {exc.message}"]
        if fmt is None:
            return []
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            return [f"{path}: cannot read the template: {exc}"]
        return [f"{path}, {p} (payload format {fmt.value})" for p in payload.static_problems(fmt, env, source)]

    def _check_examples(self, spec: ServiceSpec, platform: str, fmt: PayloadFormat) -> list[str]:
        path = self.root / spec.name / f"{platform}.j2"
        if not spec.examples:
            return [f"{spec.source}: no examples: a service needs at least one (action and parameters) so that "
                    f"{path} can be checked in its payload format ({fmt.value}) when the gateway starts"]
        out = []
        for i, example in enumerate(spec.examples):
            try:
                self.render(service=spec.name, platform=platform, action=example.action,
                            parameters=example.parameters, device="(example)", payload_format=fmt)
            except (InputError, RenderError, ConfigurationError) as exc:
                out.append(f"{path}: examples[{i}] of {spec.source} ({example.action.value}) does not render as "
                           f"{fmt.value}: {exc.message}")
        return out


def _template_position(tb: TracebackType | None, filename: str | None, root: Path) -> tuple[str, int]:
    """The innermost template frame in a traceback Jinja rewrote: (name relative to root, line)."""
    where, line = "", 0
    root_s = str(root.resolve()) if root.exists() else str(root)
    while tb is not None:
        code_file = tb.tb_frame.f_code.co_filename
        if code_file == filename or code_file.endswith(".j2"):
            shown = code_file
            try:
                shown = str(Path(code_file).resolve().relative_to(root_s))
            except (ValueError, OSError):
                pass
            where, line = ("" if code_file == "<template>" else shown), tb.tb_lineno
        tb = tb.tb_next
    return where, line


def _undefined_name(message: str) -> str:
    m = _UNDEFINED_RE.search(message)
    if not m:
        return message
    return next(g for g in m.groups() if g)


def _parameters_holding(values: tuple[str, ...], parameters: Mapping[str, Any]) -> list[str]:
    """The parameter paths whose value is (else is inside) one of ``values``: what a payload
    violation names."""
    wanted = {v for v in values if v} | {html.unescape(v) for v in values if v}
    exact: list[str] = []
    partial: list[str] = []

    def walk(node: Any, parts: list[Any]) -> None:
        if isinstance(node, Mapping):
            for k, v in node.items():
                walk(v, parts + [k])
        elif isinstance(node, (list, tuple)):
            for i, v in enumerate(node):
                walk(v, parts + [i])
        elif node is not None and not isinstance(node, bool):
            text = str(node)
            if text in wanted:
                exact.append(path_of(parts))
            elif len(text) > 1 and any(text in w for w in wanted):
                partial.append(path_of(parts))

    walk(parameters, [])
    return exact or partial


__all__ = ["PAYLOAD_FORMATS", "TemplateStore", "payload_format_of"]
