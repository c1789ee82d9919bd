"""Secrets that cannot leak by accident: :class:`Secret`, :class:`Credential` and :data:`MASK` live
in the driver SDK (:mod:`drivers.secrets`, a driver is given a Credential); re-exported here for the
gateway (credential resolution, log redaction).
"""

from __future__ import annotations

from drivers.secrets import MASK, Credential, Secret

__all__ = ["MASK", "Credential", "Secret"]
