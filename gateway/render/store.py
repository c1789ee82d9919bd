"""The template store: strict, sandboxed Jinja over ``templates/<service>/<platform>.j2``.

Rendering is pure: parameters in, a :class:`drivers.base.ChangeSet` out. Templates run in
Jinja's immutable sandbox with ``StrictUndefined`` (a missing variable is an error, never empty
text), ``trim_blocks``/``lstrip_blocks`` and ``keep_trailing_newline``. XML output is
autoescaped and must parse; text output never receives a control character (validation refuses
it first). Every template problem becomes a :class:`RenderError` naming the template file, the
line and — for an undefined name — the variable.
"""

from __future__ import annotations

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
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jsonschema import Draft202012Validator
from lxml import etree

from drivers.base import ChangeSet
from gateway.errors import ConfigurationError, FieldViolation, Phase, RenderError
from gateway.model import Action
from gateway.render.schema import (
    ServiceSpec,
    action_of,
    character_violations,
    delete_schema,
    load_service,
    make_validator,
    prepare,
    schema_violations,
)

log = logging.getLogger(__name__)

OUTPUT_FORMATS = ("text", "xml", "yaml")
SERVICE_FILE = "service.yaml"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_UNDEFINED_RE = re.compile(r"^'([^']+)' is undefined|has no attribute '([^']+)'|no element '?([^']+?)'?$")


def _environment(*, autoescape: bool, loader: jinja2.BaseLoader | None) -> jinja2.Environment:
    return ImmutableSandboxedEnvironment(
        loader=loader,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=autoescape,
        auto_reload=True,
    )


class TemplateStore:
    """Services and their templates under ``root`` (the repository's ``templates/``)."""

    def __init__(self, *, root: Path, recheck_s: float = 1.0) -> None:
        """``recheck_s``: how long a look at the files (exists? changed?) is trusted before the
        store looks again; edited templates and schemas are picked up within that time."""
        self.root = Path(root)
        self.recheck_s = recheck_s
        self._stats: dict[Path, tuple[float, int | None]] = {}  # path -> (looked at, mtime_ns or None)
        loader = jinja2.FileSystemLoader(str(self.root), followlinks=False)
        self._envs = {
            "xml": _environment(autoescape=True, loader=loader),
            "text": _environment(autoescape=False, loader=loader),
        }
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
            and self._is_file(self.root / service / f"{platform}.j2")
        )

    def spec(self, service: str) -> ServiceSpec:
        """The parsed ``service.yaml`` (cached; read again when the file changes)."""
        if not self._known(service):
            raise ConfigurationError(f"{self.root}: unknown service {service!r}")
        path = self.root / service / SERVICE_FILE
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
        return isinstance(service, str) and bool(_NAME_RE.match(service)) and self._is_file(self.root / service / SERVICE_FILE)

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
        parameters: Mapping[str, Any],
        output_format: str = "text",
    ) -> list[FieldViolation]:
        """Every problem of a task's service, action and parameters (empty list: valid)."""
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
        out.extend(character_violations(parameters, output_format=output_format, parts=[]))
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

    # rendering ----------------------------------------------------------------------------
    def render(
        self,
        *,
        service: str,
        platform: str,
        action: Action | str,
        parameters: Mapping[str, Any],
        device: str,
        output_format: str = "text",
        validated: bool = False,
    ) -> ChangeSet:
        """Render a task. ``validated``: the caller has just had :meth:`validate` accept these
        very parameters (with this ``output_format``); they are not checked a second time."""
        template = f"{service}/{platform}.j2"
        if output_format not in OUTPUT_FORMATS:
            raise ConfigurationError(
                f"unknown render format {output_format!r} for {template} (known: {', '.join(OUTPUT_FORMATS)})",
                device=device,
                phase=Phase.RENDER,
            )
        if not self.has(service, platform):
            raise RenderError(f"no template {template} under {self.root}", device=device, phase=Phase.RENDER)
        violations = [] if validated else self.validate(
            service=service, action=action, parameters=parameters, output_format=output_format)
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

        env = self._envs["xml" if output_format == "xml" else "text"]
        content = self._render(env, template, context, device=device)
        undo_name = f"{service}/{platform}.undo.j2"
        undo = None
        if self._is_file(self.root / undo_name):
            undo = self._render(env, undo_name, context, device=device)
        if output_format == "xml":
            _check_xml(template, content, device=device)
            if undo is not None:
                _check_xml(undo_name, undo, device=device)
        checks = tuple(
            self._render_check(spec, platform, i, text, context, device=device)
            for i, text in enumerate(spec.checks_for(platform))
        )
        return ChangeSet(service=service, action=act, content=content, undo=undo, checks=checks)

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
                compiled = self._envs["text"].from_string(text)
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
    def check(self) -> None:
        """Load every service file and compile every template; raise one
        :class:`ConfigurationError` listing every problem (for start-up and CI)."""
        problems: list[str] = []
        for service in self.services():
            try:
                self.spec(service)
            except ConfigurationError as exc:
                problems.append(exc.message)
            for platform in self.platforms(service):
                names = [f"{service}/{platform}.j2"]
                if (self.root / service / f"{platform}.undo.j2").is_file():
                    names.append(f"{service}/{platform}.undo.j2")
                for n in names:
                    try:
                        self._envs["text"].get_template(n)
                    except jinja2.TemplateSyntaxError as exc:
                        problems.append(f"{exc.name or n}, line {exc.lineno}: template syntax error: {exc.message}")
        if problems:
            raise ConfigurationError("; ".join(problems))


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


def _check_xml(name: str, content: str, *, device: str) -> None:
    # a parser per call: lxml parsers must not be shared between threads
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False)
    try:
        etree.fromstring(content.encode("utf-8"), parser)
    except etree.XMLSyntaxError as exc:
        raise RenderError(
            f"{name}: the rendered output is not well-formed XML (line {exc.lineno}: {exc.msg})",
            device=device,
            phase=Phase.RENDER,
        ) from exc


__all__ = ["OUTPUT_FORMATS", "TemplateStore"]
