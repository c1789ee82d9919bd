"""Strict YAML loading shared by the inventory, the device profiles and the template store.

PyYAML silently keeps the last of two equal keys; a duplicated device name or parameter would
then vanish without a word. :class:`StrictLoader` refuses duplicates instead.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

from drivers.profiles import type_name  # the SDK's: profile and settings messages use it too
from gateway.errors import ConfigurationError

log = logging.getLogger(__name__)


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate mapping keys."""


def _construct_mapping(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            continue  # the base constructor reports unhashable keys itself
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r} (first on line {seen[key] + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def describe_yaml_error(exc: yaml.YAMLError, *, with_snippet: bool = True) -> str:
    """A one-line description of a YAML error. ``with_snippet=False`` leaves out the quoted
    source text (a credentials file must never have its content copied into a message)."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = exc.problem or exc.context or "invalid YAML"
        if not with_snippet:
            return f"{where}{problem}"
        context = f" ({exc.context})" if exc.context and exc.problem else ""
        return f"{where}{problem}{context}"
    return "invalid YAML" if not with_snippet else str(exc).splitlines()[0]


def load_yaml_text(text: str, *, source: str, with_snippet: bool = True) -> Any:
    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - StrictLoader is a SafeLoader
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{source}: {describe_yaml_error(exc, with_snippet=with_snippet)}") from (
            exc if with_snippet else None
        )


def load_yaml_file(path: Path) -> Any:
    """Parse a YAML file; any problem becomes a :class:`ConfigurationError` naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigurationError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    return load_yaml_text(text, source=str(path))


__all__ = ["StrictLoader", "describe_yaml_error", "load_yaml_file", "load_yaml_text", "type_name"]
