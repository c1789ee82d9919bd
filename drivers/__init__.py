"""Southbound drivers: the driver SDK (base, errors, secrets, profiles, incidents, hostkeys), the
registry, the built-in drivers and the conformance kit. Nothing here imports ``gateway``."""
