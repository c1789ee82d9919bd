"""Device profiles: every ``device_profiles/<platform>.yaml`` of a directory, by platform.

What one file may hold, and :func:`parse_profile`, are the driver SDK's (:mod:`drivers.profiles`,
re-exported here): a plugin parses the profile it ships with the same code. This store reads the
files with the gateway's strict YAML loader (a duplicate key is refused) and reports every problem
of every file at once, each naming its file. The drivers' own ``settings`` and ``quirks`` are
checked when the gateway starts (:func:`gateway.app.check_catalogue` calls each profile's
:meth:`Driver.settings_from <drivers.base.Driver.settings_from>`), as is ``settings.render_format``
against the driver's payload format.
"""

from __future__ import annotations

import logging
from pathlib import Path

from drivers.base import DeviceProfile
from drivers.profiles import HOST_KEY_SETTINGS, RENDER_FORMATS, parse_profile
from gateway.errors import ConfigurationError
from gateway.inventory._yaml import load_yaml_file

log = logging.getLogger(__name__)


class ProfileStore:
    """Every profile of a ``device_profiles/`` directory, by platform."""

    def __init__(self, profiles: dict[str, DeviceProfile], *, root: Path | None = None) -> None:
        self._profiles = dict(profiles)
        self.root = root

    @classmethod
    def load(cls, root: Path) -> "ProfileStore":
        root = Path(root)
        if not root.is_dir():
            raise ConfigurationError(f"{root}: the device profile directory does not exist")
        profiles: dict[str, DeviceProfile] = {}
        problems: list[str] = []
        for path in sorted(root.iterdir()):
            if path.suffix == ".yml":
                problems.append(f"{path}: device profiles must be named <platform>.yaml")
                continue
            if path.suffix != ".yaml" or not path.is_file():
                continue
            try:
                profile = parse_profile(load_yaml_file(path), source=str(path), expected_platform=path.stem)
            except ConfigurationError as exc:
                problems.append(exc.message)
                continue
            profiles[profile.platform] = profile
        if problems:
            raise ConfigurationError("; ".join(problems))
        log.info("device profiles from %s: %s", root, ", ".join(sorted(profiles)) or "none")
        return cls(profiles, root=root)

    def get(self, platform: str) -> DeviceProfile:
        try:
            return self._profiles[platform]
        except KeyError:
            where = f" in {self.root}" if self.root else ""
            raise ConfigurationError(
                f"no device profile for platform {platform!r}{where} "
                f"(known: {', '.join(self.platforms()) or 'none'})"
            ) from None

    def platforms(self) -> list[str]:
        return sorted(self._profiles)

    def __contains__(self, platform: object) -> bool:
        return platform in self._profiles


__all__ = ["HOST_KEY_SETTINGS", "RENDER_FORMATS", "ProfileStore", "parse_profile"]
