"""The CLI driver's platform data, read from a profile's ``settings`` (``device_profiles/<platform>.yaml``).

Everything that differs between IOS-like platforms is here as data: prompts, how to enter and
leave configuration mode, the device's error answers, which lines of ``show running-config`` are
not configuration, and the hier_config platform. :func:`scrapli_definition` turns it into the
scrapli 2.x platform definition, so the transport needs no per-platform code.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Mapping

from drivers.cli.config import NegationRules
from drivers.errors import ConfigurationError
from drivers.profiles import field_names, unknown_keys

log = logging.getLogger(__name__)

TRANSPORTS = ("ssh2", "bin")


@dataclass(frozen=True, kw_only=True)
class CliSettings:
    """The driver's view of a profile's ``settings``: every key a field here, any other refused.
    The CLI driver takes no quirks."""

    prompt_pattern: str = r"^\S{1,63}[>#]\s?$"
    exec_prompt_pattern: str = r"^[\w.\-@/:]{1,63}#\s?$"
    config_prompt_pattern: str = r"^[\w.\-@/:]{1,63}\([\w.\-@/:+]{0,32}\)#\s?$"
    config_enter: str = "configure terminal"
    config_exit: str = "end"
    section_exit: str = "exit"
    on_open: tuple[str, ...] = ("terminal length 0",)
    show_running: str = "show running-config"
    error_patterns: tuple[re.Pattern[str], ...] = ()
    hier_config_platform: str = "cisco_ios"
    strip_lines: tuple[re.Pattern[str], ...] = ()
    transport: str = "ssh2"
    check_settle_s: float = 2.0
    """How long a failing show-command check is retried (operational state lags the config)."""
    max_output_bytes: int = 16 * 1024 * 1024
    """Most bytes one command (or configuration push) may bring back; more is a DeviceReplyError."""
    negation_rewrite: tuple[tuple[re.Pattern[str], str], ...] = ()
    negate_by_children: tuple[re.Pattern[str], ...] = ()
    replace_rules: tuple[re.Pattern[str], ...] = ()
    """Lines that replace their siblings: a line matching a rule replaces every sibling matching
    the same rule with the same captured groups (exact verification, :mod:`drivers.cli.exact`)."""
    keep_empty_sections: bool = True
    """False where the device does not show a section without lines (FRR drops ``interface lo10``
    once its last line is removed)."""

    def negation_rules(self) -> NegationRules:
        return NegationRules(rewrite=self.negation_rewrite, by_children=self.negate_by_children)

    @classmethod
    def from_profile(cls, settings: Mapping[str, Any], *, platform: str, source: str = "") -> "CliSettings":
        """Parse and check ``settings``; an unknown key or a bad value raises ConfigurationError
        naming the profile's file (``source``; else its platform) and the field."""
        problems: list[str] = unknown_keys("settings", settings, field_names(cls), driver="cli")
        kw: dict[str, Any] = {}
        for key in ("prompt_pattern", "exec_prompt_pattern", "config_prompt_pattern", "config_enter",
                    "config_exit", "section_exit", "show_running", "hier_config_platform", "transport"):
            if key in settings:
                value = settings[key]
                if not isinstance(value, str) or not value:
                    problems.append(f"settings.{key}: must be a non-empty string")
                else:
                    kw[key] = value
        if "on_open" in settings:
            value = settings["on_open"]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                problems.append("settings.on_open: must be a list of strings")
            else:
                kw["on_open"] = tuple(value)
        if "keep_empty_sections" in settings:
            value = settings["keep_empty_sections"]
            if not isinstance(value, bool):
                problems.append("settings.keep_empty_sections: must be true or false")
            else:
                kw["keep_empty_sections"] = value
        if "max_output_bytes" in settings:
            value = settings["max_output_bytes"]
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                problems.append("settings.max_output_bytes: must be a positive number of bytes")
            else:
                kw["max_output_bytes"] = value
        if "check_settle_s" in settings:
            value = settings["check_settle_s"]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                problems.append("settings.check_settle_s: must be a number of seconds, 0 or more")
            else:
                kw["check_settle_s"] = float(value)
        raw_rewrite = settings.get("negation_rewrite", [])
        rewrite = []
        if not isinstance(raw_rewrite, list):
            problems.append("settings.negation_rewrite: must be a list of [regex, replacement] pairs")
        else:
            for i, pair in enumerate(raw_rewrite):
                if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, str) for v in pair)):
                    problems.append(f"settings.negation_rewrite[{i}]: must be a [regex, replacement] pair")
                    continue
                try:
                    rewrite.append((re.compile(pair[0]), pair[1]))
                except re.error as exc:
                    problems.append(f"settings.negation_rewrite[{i}]: invalid regular expression: {exc}")
        kw["negation_rewrite"] = tuple(rewrite)
        for key in ("error_patterns", "strip_lines", "negate_by_children", "replace_rules"):
            raw = settings.get(key, [])
            if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
                problems.append(f"settings.{key}: must be a list of regular expressions")
                continue
            compiled = []
            for i, pattern in enumerate(raw):
                try:
                    compiled.append(re.compile(pattern))
                except re.error as exc:
                    problems.append(f"settings.{key}[{i}]: invalid regular expression {pattern!r}: {exc}")
            kw[key] = tuple(compiled)
        for key in ("prompt_pattern", "exec_prompt_pattern", "config_prompt_pattern"):
            if key in kw:
                try:
                    re.compile(kw[key])
                except re.error as exc:
                    problems.append(f"settings.{key}: invalid regular expression: {exc}")
        if kw.get("transport", "ssh2") not in TRANSPORTS:
            problems.append(f"settings.transport: must be one of {', '.join(TRANSPORTS)}")
        if not kw.get("error_patterns"):
            problems.append("settings.error_patterns: a CLI platform needs at least one error pattern")
        if problems:
            raise ConfigurationError(f"{source or f'device profile {platform!r}'}: " + "; ".join(problems))
        return cls(**kw)

    def failure_indicators(self) -> list[str]:
        """Literal prefixes of the error patterns, for scrapli's own stop-on-failure (a hint only:
        the driver checks every line's output with the full patterns itself)."""
        out = []
        for pattern in self.error_patterns:
            literal = re.sub(r"\\(.)", r"\1", pattern.pattern.lstrip("^"))
            if literal and not re.search(r"[\[\](){}*+?|$.]", literal.replace("\\", "")):
                out.append(literal)
        return out


def scrapli_definition(settings: CliSettings) -> str:
    """A scrapli 2.x platform definition (YAML text) built from the profile's data."""
    definition = {
        "prompt_pattern": settings.prompt_pattern,
        "default_mode": "privileged_exec",
        "modes": [
            {
                "name": "privileged_exec",
                "prompt_pattern": settings.exec_prompt_pattern,
                "accessible_modes": [
                    {"name": "configuration", "instructions": [{"send_input": {"input": settings.config_enter}}]}
                ],
            },
            {
                "name": "configuration",
                "prompt_pattern": settings.config_prompt_pattern,
                "accessible_modes": [
                    {"name": "privileged_exec", "instructions": [{"send_input": {"input": settings.config_exit}}]}
                ],
            },
        ],
        "failure_indicators": settings.failure_indicators(),
        "on_open_instructions": [{"enter_mode": {"requested_mode": "privileged_exec"}}]
        + [{"send_input": {"input": cmd}} for cmd in settings.on_open],
        "on_close_instructions": [
            {"enter_mode": {"requested_mode": "privileged_exec"}},
            {"write": {"input": "exit"}},
        ],
    }
    return "---\n" + "".join(_emit(definition, 0))


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _emit(node: Any, indent: int) -> list[str]:
    """YAML in the exact shape libscrapli's parser accepts (plain keys, quoted scalars, lists
    indented under their key); PyYAML's output is valid YAML that libscrapli 0.0.6 refuses."""
    pad = " " * indent
    out: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, (dict, list)):
                out.append(f"{pad}{key}:\n")
                out.extend(_emit(value, indent + 2))
            else:
                out.append(f"{pad}{key}: {_quote(str(value))}\n")
    elif isinstance(node, list):
        for item in node:
            lines = _emit(item, indent + 2) if isinstance(item, (dict, list)) else [f"{pad}  {_quote(str(item))}\n"]
            first = lines[0]
            out.append(f"{pad}- {first[indent + 2:]}")
            out.extend(lines[1:])
    return out


__all__ = ["CliSettings", "scrapli_definition"]
