"""The activation pipeline: plan → render → lock → snapshot → push → commit → verify →
confirm | rollback, with per-device serialization and crash recovery."""

from gateway.engine.engine import Engine

__all__ = ["Engine"]
