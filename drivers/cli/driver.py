"""The SSH CLI driver: IOS-like devices (FRR/vtysh in the lab) through scrapli 2.x.

No candidate, no lock, no confirmed commit: ``load`` applies line by line, so the engine's safety
net is ``restore(snapshot)`` — a generated undo (hier_config remediation from the current running
configuration back to the snapshot), after which the engine re-reads and compares.

    read     show running-config → canonical text (Snapshot.scope "running-config")
    preview  hier_config: what the rendered lines would change; nothing is sent
    load     configuration mode, every line's output checked against the profile's error patterns
    verify   re-read: the running configuration must equal the snapshot with the rendered lines
             applied (:mod:`drivers.cli.exact`), then the service's checks (TTP or JSON)
    restore  the change's explicit undo (when given), then generated undo from the snapshot

Parsing with hier_config is the driver's main client CPU cost, so parsed configurations are kept
in a small per-device LRU keyed by their text (:class:`drivers.cli.config.ParseCache`): a hit
needs an equal text, so every check still runs against what the device printed.
"""

from __future__ import annotations

import logging
import re
from typing import ClassVar, Sequence

from drivers.base import (
    Capabilities,
    ChangeSet,
    DeviceProfile,
    Driver,
    Endpoint,
    Mismatch,
    PayloadFormat,
    Snapshot,
    Verification,
)
from drivers.cli import config as cfg
from drivers.cli import exact
from drivers import checks as svc_checks
from drivers.cli.checks import NotJson, output_records
from drivers.cli.errors import rejected_info
from drivers.cli.session import CliSession, SessionOptions
from drivers.cli.settings import CliSettings, scrapli_definition
from drivers.profiles import field_names, refuse_unknown
from drivers.errors import (
    ConfigurationError,
    DeviceErrorInfo,
    DeviceRejectedError,
    FieldViolation,
    InputError,
    Phase,
)

log = logging.getLogger(__name__)

SCOPE = "running-config"
PARSE_CACHE_SIZE = 4
"""Parsed running configurations kept per device (snapshot, verified state, and the previous pair)."""


_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # control characters but tab


def unsafe_lines(lines: Sequence[str]) -> list[FieldViolation]:
    """Lines holding a control character (a newline inside a value would inject a command)."""
    return [FieldViolation(field=f"content line {i + 1}", reason="holds a control character")
            for i, line in enumerate(lines) if _CONTROL.search(line)]


class CliDriver(Driver):
    name: ClassVar[str] = "cli"
    payload_format: ClassVar[PayloadFormat] = PayloadFormat.LINES
    supported: ClassVar[Capabilities] = Capabilities()  # lifecycle without lock/candidate/commit
    check_kinds: ClassVar[frozenset[str]] = frozenset({"cli"})

    @classmethod
    def settings_from(cls, profile: DeviceProfile) -> CliSettings:
        refuse_unknown(profile, driver=cls.name, settings=field_names(CliSettings))
        return CliSettings.from_profile(profile.settings, platform=profile.platform, source=profile.source)

    @classmethod
    def check_change(cls, change: ChangeSet, profile: DeviceProfile) -> None:
        violations = unsafe_lines(change.content.replace("\r\n", "\n").split("\n"))
        if change.undo:
            violations += unsafe_lines(change.undo.replace("\r\n", "\n").split("\n"))
        if violations:
            raise InputError(violations)

    def __init__(self, *, endpoint: Endpoint, profile: DeviceProfile) -> None:
        super().__init__(endpoint=endpoint, profile=profile)
        self.settings = self.settings_from(profile)
        self._platform = cfg.platform_of(self.settings.hier_config_platform)
        try:
            self._managed = tuple(re.compile(p) for p in profile.device_managed)
        except re.error as exc:
            raise ConfigurationError(f"device profile {profile.platform!r}: device_managed: invalid regular "
                                     f"expression: {exc}") from None
        self._strip = self.settings.strip_lines or cfg.DEFAULT_STRIP
        self._parsed = cfg.ParseCache(platform=self._platform, strip=self._strip, size=PARSE_CACHE_SIZE)
        cred = endpoint.credential
        self._session = CliSession(
            SessionOptions(
                device=endpoint.device,
                host=endpoint.host,
                port=endpoint.port,
                username=cred.username,
                password=cred.password,
                private_key_path=cred.private_key_path,
                definition=scrapli_definition(self.settings),
                platform=profile.platform,
                transport=self.settings.transport,
                connect_timeout_s=profile.timeouts.connect_s,
                known_hosts=endpoint.known_hosts,
                host_key_check=endpoint.host_key_check,
                max_output_bytes=self.settings.max_output_bytes,
            )
        )
        self._known_running: str | None = None
        """The last running-config read, while nothing was pushed since (this driver is the only
        writer during a change: the engine serializes a device). Saves restore a read."""

    @property
    def parse_cache(self) -> cfg.ParseCache:
        """The parsed running configurations this driver keeps (hits/misses for measurements)."""
        return self._parsed

    # -- session -------------------------------------------------------------------------
    async def open(self) -> None:
        await self._session.open()

    async def close(self) -> None:
        self._known_running = None
        await self._session.close()

    @property
    def is_open(self) -> bool:
        return self._session.is_open

    async def _ready(self) -> CliSession:
        """The session, reopened if a timeout or a dropped connection closed it."""
        if not self._session.is_open:
            self._known_running = None
            log.info("%s: (re)opening the CLI session", self.device)
            await self._session.open()
        return self._session

    @property
    def _op_s(self) -> float:
        return self.profile.timeouts.operation_s

    # -- reading -------------------------------------------------------------------------
    async def _running(self, phase: Phase) -> str:
        session = await self._ready()
        self._known_running = None
        text = await session.send(self.settings.show_running, timeout_s=self._op_s, phase=phase)
        self._known_running = text
        return text

    def _canonical(self, text: str) -> str:
        return self._parsed.get(text).canonical

    def scope_of(self, change: ChangeSet) -> str:
        """The whole running configuration: an IOS-like CLI reads nothing smaller reliably, and
        exact verification then sees any line that changed."""
        return SCOPE

    async def read(self, scope: str) -> Snapshot:
        self._check_scope(scope, Phase.SNAPSHOT)
        return Snapshot(content=self._canonical(await self._running(Phase.SNAPSHOT)), scope=SCOPE)

    def _check_scope(self, scope: str, phase: Phase) -> None:
        if scope != SCOPE:
            raise InputError([FieldViolation(field="scope", reason=f"expected {SCOPE!r}, not {scope[:40]!r}")],
                             device=self.device, phase=phase)

    async def preview(self, change: ChangeSet, snapshot: Snapshot) -> str:
        """A unified diff of the running configuration as hier_config predicts it after the change."""
        self._check_lines(change.content, Phase.DIFF)
        running = self._parsed.get(snapshot.content).tree
        after = cfg.future(running, change.content, platform=self._platform)
        # hier_config puts new lines first: diff order-insensitive views (sorted top-level blocks)
        return cfg.unified_diff(_blocks_sorted(snapshot.content), _blocks_sorted(cfg.canonical(after)),
                                before_name=f"{self.device}:{SCOPE}", after_name=f"{self.device}:{SCOPE} (after)")

    def diff(self, before: Snapshot, after: Snapshot) -> str:
        return cfg.unified_diff(before.content, after.content,
                                before_name=f"{self.device}:{before.scope} (before)",
                                after_name=f"{self.device}:{after.scope} (after)")

    # -- pushing -------------------------------------------------------------------------
    def _check_lines(self, content: str, phase: Phase) -> None:
        violations = unsafe_lines(content.replace("\r\n", "\n").split("\n"))
        if violations:
            raise InputError(violations, device=self.device, phase=phase)

    async def _push(self, lines: Sequence[cfg.PushLine], phase: Phase) -> None:
        if not lines:
            return
        self._known_running = None
        session = await self._ready()
        timeout_s = self.profile.timeouts.commit_s if len(lines) > 50 else self._op_s
        answered = await session.configure([p.text for p in lines], timeout_s=timeout_s, phase=phase)
        for push_line, (_, output) in zip(lines, answered):
            info = rejected_info(line=push_line.text, output=output, parents=push_line.parents,
                                 patterns=self.settings.error_patterns)
            if info is not None:
                where = f" under {info.path!r}" if info.path else ""
                raise DeviceRejectedError(
                    f"the device rejected line {push_line.text!r}{where}: {info.message}",
                    device=self.device, phase=phase, info=info,
                )
        if len(answered) < len(lines):  # the transport stopped early without a pattern we know
            last_line, last_output = answered[-1] if answered else ("", "")
            raise DeviceRejectedError(
                f"the device stopped the push after line {last_line!r}: {last_output.strip() or 'no message'}",
                device=self.device, phase=phase,
                info=DeviceErrorInfo(message=last_output.strip() or "push stopped", line=last_line),
            )
        log.debug("%s: pushed %d lines", self.device, len(lines))

    async def load(self, change: ChangeSet) -> None:
        self._check_lines(change.content, Phase.PUSH)
        if change.undo:
            self._check_lines(change.undo, Phase.PUSH)
        await self._push(cfg.push_lines(change.content, section_exit=self.settings.section_exit), Phase.PUSH)

    # -- verifying -----------------------------------------------------------------------
    async def verify(self, change: ChangeSet, before: Snapshot) -> Verification:
        """The running configuration must be ``before`` with the rendered lines applied, exactly
        (:mod:`drivers.cli.exact`); then every show-command check of the service must pass
        (:mod:`drivers.checks`, polled until it holds or its wait ends)."""
        parsed = self._parsed.get(await self._running(Phase.VERIFY))
        rules = self.settings.replace_rules
        want = exact.expected(before.content, change.content, rules=rules, section_exit=self.settings.section_exit,
                              keep_empty_sections=self.settings.keep_empty_sections)
        checked, mismatches = exact.compare(want, parsed.canonical, rules=rules, managed=self._managed)
        details = [f"{checked} lines compared with the snapshot plus the change: "
                   + (f"{len(mismatches)} differ ({sum(m.unexpected for m in mismatches)} not named by the change)"
                      if mismatches else "all equal")]
        checked += await svc_checks.run_all(svc_checks.parse_all(change, self.profile, svc_checks.CLI),
                                            self._run_check, mismatches=mismatches, details=details)
        return Verification(ok=not mismatches, checked=checked, mismatches=tuple(mismatches),
                            detail="; ".join(details), readback=Snapshot(content=parsed.canonical, scope=SCOPE))

    async def _run_check(self, check: svc_checks.Check) -> svc_checks.Outcome:
        """Run a show-command check until its condition holds or its wait ends (operational
        state, a route in the RIB or a link's state, follows the configuration)."""
        query = check.query
        assert isinstance(query, svc_checks.CliQuery)  # parse_all gave CLI checks only

        async def probe() -> list[dict[str, str]]:
            session = await self._ready()
            output = await session.send(query.command, timeout_s=self._op_s, phase=Phase.VERIFY)
            try:
                return output_records(query, output)
            except NotJson as exc:
                return [{"error": str(exc)}]

        return await svc_checks.run(check, probe)

    # -- rolling back --------------------------------------------------------------------
    async def restore(self, snapshot: Snapshot, undo: str | None = None) -> None:
        """The change's explicit ``undo`` first (when its service has one), then the generated
        undo from the running configuration back to the snapshot."""
        self._check_scope(snapshot.scope, Phase.ROLLBACK)
        if undo:
            self._check_lines(undo, Phase.ROLLBACK)
            try:
                await self._push(cfg.push_lines(undo, section_exit=self.settings.section_exit), Phase.ROLLBACK)
            except DeviceRejectedError as exc:  # the generated undo below still repairs it
                log.warning("%s: explicit undo rejected (%s); using the generated undo", self.device, exc.message)
        wanted = self._parsed.get(snapshot.content).tree
        running = self._known_running if self._known_running is not None else await self._running(Phase.ROLLBACK)
        current = self._parsed.get(running).tree
        lines = cfg.undo_lines(current, wanted, section_exit=self.settings.section_exit,
                               rules=self.settings.negation_rules())
        log.info("%s: restoring the snapshot with %d generated line(s)", self.device, len(lines))
        await self._push(lines, Phase.ROLLBACK)


def _blocks_sorted(text: str) -> str:
    """Top-level blocks (a line and its indented children) sorted: an order-insensitive view."""
    blocks: list[str] = []
    for line in text.splitlines(keepends=True):
        if line.startswith(" ") and blocks:
            blocks[-1] += line
        else:
            blocks.append(line)
    return "".join(sorted(blocks))


__all__ = ["CliDriver", "unsafe_lines"]
