"""Plugin registries, one per plugin kind, filled from entry points.

Built-in drivers register through the ``agw.drivers`` entry-point group exactly as a
third-party package does. A driver's module is imported only when :meth:`Registry.get` is asked
for it (the first time a device of that platform is used), so a missing optional dependency of
one driver never stops the others.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from importlib import metadata
from typing import Generic, TypeVar

from drivers.base import Driver, PayloadFormat
from drivers.errors import ConfigurationError, DriverNotFoundError, DriverUnavailableError

log = logging.getLogger(__name__)

T = TypeVar("T")

DRIVER_GROUP = "agw.drivers"


@dataclass(frozen=True)
class PluginInfo:
    name: str
    value: str  # "module:attr"
    distribution: str


class Registry(Generic[T]):
    """Named plugins of one kind. Each registry holds its own table."""

    def __init__(self, group: str, kind: type[T]) -> None:
        self.group = group
        self.kind = kind
        self._entry_points: dict[str, metadata.EntryPoint] | None = None
        self._loaded: dict[str, type[T]] = {}
        self._lock = threading.Lock()

    # discovery ---------------------------------------------------------------------------
    def _discover(self) -> dict[str, metadata.EntryPoint]:
        if self._entry_points is None:
            eps: dict[str, metadata.EntryPoint] = {}
            for ep in metadata.entry_points(group=self.group):
                if ep.name in eps and eps[ep.name].value != ep.value:
                    raise ConfigurationError(
                        f"{self.group}: plugin {ep.name!r} is registered twice "
                        f"({eps[ep.name].value} and {ep.value})"
                    )
                eps[ep.name] = ep
            self._entry_points = eps
        return self._entry_points

    def names(self) -> list[str]:
        return sorted(set(self._discover()) | set(self._loaded))

    def info(self, name: str) -> PluginInfo:
        ep = self._discover().get(name)
        if ep is None:
            raise DriverNotFoundError(f"no {self.group} plugin named {name!r}; installed: {', '.join(self.names()) or 'none'}")
        dist = ep.dist.name if ep.dist is not None else "?"
        return PluginInfo(name=name, value=ep.value, distribution=dist)

    # registration (tests and embedding) ---------------------------------------------------
    def register(self, name: str, plugin: type[T]) -> None:
        with self._lock:
            if name in self._loaded or name in self._discover():
                raise ConfigurationError(f"{self.group}: plugin {name!r} is already registered")
            self._loaded[name] = plugin

    def unregister(self, name: str) -> None:
        with self._lock:
            self._loaded.pop(name, None)

    # lookup -------------------------------------------------------------------------------
    def get(self, name: str) -> type[T]:
        with self._lock:
            if name in self._loaded:
                return self._loaded[name]
            ep = self._discover().get(name)
            if ep is None:
                raise DriverNotFoundError(
                    f"no {self.group} plugin named {name!r}; installed: {', '.join(self.names()) or 'none'}"
                )
            try:
                plugin = ep.load()
            except ModuleNotFoundError as exc:
                extra = ep.dist.name if ep.dist is not None else "the package"
                raise DriverUnavailableError(
                    f"{self.group} plugin {name!r} needs the Python module {exc.name!r}, which is not "
                    f"installed; install it with: pip install '{extra}[{name}]'"
                ) from exc
            if not (isinstance(plugin, type) and issubclass(plugin, self.kind)):
                raise ConfigurationError(
                    f"{self.group} plugin {name!r} ({ep.value}) is not a {self.kind.__name__}"
                )
            if issubclass(plugin, Driver) and not isinstance(getattr(plugin, "payload_format", None), PayloadFormat):
                raise ConfigurationError(
                    f"{self.group} plugin {name!r} ({ep.value}) declares no payload_format (one of "
                    f"{', '.join(f.value for f in PayloadFormat)}): the gateway renders templates for it in that format"
                )
            self._loaded[name] = plugin
            log.debug("loaded %s plugin %s from %s", self.group, name, ep.value)
            return plugin


# Driver is abstract: the registry only checks plugins against it (issubclass) and never instantiates
# it, but mypy refuses any abstract class where type[T] is expected (python/mypy#4717).
drivers: Registry[Driver] = Registry(DRIVER_GROUP, Driver)  # type: ignore[type-abstract]

__all__ = ["DRIVER_GROUP", "PluginInfo", "Registry", "drivers"]
