"""Logging of the gateway: the work a record belongs to, and ``--log-format json``.

The engine binds the activation, task and device it works on (:func:`bind`) in context variables;
the gRPC edge binds the call's correlation id (:data:`correlation_id`). asyncio copies the context
into every task it starts, so a record logged anywhere below — the engine, a driver, the journal's
caller — carries the ids of that work, and an activation started by a call carries the call's
correlation id. :class:`ContextFilter` puts them on each record; :class:`JsonFormatter` writes one
JSON object per line with them. Secrets are masked before formatting by the redaction filter
(:mod:`gateway.inventory.redaction`), which sees the same records.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from datetime import datetime, timezone
from typing import IO, Any, Iterator

correlation_id: contextvars.ContextVar[str] = contextvars.ContextVar("agw_correlation_id", default="")
"""The correlation id of the gRPC call being served (set by the edge's interceptor)."""
activation_id: contextvars.ContextVar[str] = contextvars.ContextVar("agw_activation_id", default="")
task_id: contextvars.ContextVar[str] = contextvars.ContextVar("agw_task_id", default="")
device: contextvars.ContextVar[str] = contextvars.ContextVar("agw_device", default="")

CONTEXT_FIELDS = ("activation_id", "task_id", "device", "correlation_id")
_VARS = {"activation_id": activation_id, "task_id": task_id, "device": device, "correlation_id": correlation_id}


def bind(*, activation: str | None = None, task: str | None = None, on_device: str | None = None) -> None:
    """Bind the work of the current asyncio task (and of the tasks it starts from here on)."""
    if activation is not None:
        activation_id.set(activation)
    if task is not None:
        task_id.set(task)
    if on_device is not None:
        device.set(on_device)


@contextlib.contextmanager
def bound(*, activation: str = "", task: str = "", on_device: str = "") -> Iterator[None]:
    """Bind for the ``with`` block only (where the current asyncio task goes on after it)."""
    tokens = [activation_id.set(activation), task_id.set(task), device.set(on_device)]
    try:
        yield
    finally:
        for var, token in zip((activation_id, task_id, device), tokens):
            var.reset(token)


class ContextFilter(logging.Filter):
    """Put the bound ids on every record (as attributes named as :data:`CONTEXT_FIELDS`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _VARS.items():
            if not getattr(record, name, ""):
                setattr(record, name, var.get())
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the bound ids
    that are set, and the exception's text if any."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, "")
            if value:
                out[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        return json.dumps(out, ensure_ascii=False, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(*, level: int, fmt: str = "text", stream: IO[str] | None = None) -> logging.Handler:
    """The root logger's one handler, in ``fmt`` (``text`` or ``json``), with the context filter."""
    if fmt not in ("text", "json"):
        raise ValueError(f"log format must be text or json, not {fmt!r}")
    root = logging.getLogger()
    root.setLevel(level)
    if root.handlers and stream is None:  # configured already (an embedding program, a test runner):
        for existing in root.handlers:     # keep its handlers, add the ids to what they write
            if not any(isinstance(f, ContextFilter) for f in existing.filters):
                existing.addFilter(ContextFilter())
        return root.handlers[0]
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(ContextFilter())
    root.addHandler(handler)
    return handler


__all__ = ["CONTEXT_FIELDS", "ContextFilter", "JsonFormatter", "bind", "bound", "configure", "correlation_id"]
