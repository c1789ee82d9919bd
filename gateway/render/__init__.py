"""Strict, sandboxed Jinja rendering with per-service parameter schemas.

Layout: ``templates/<service>/service.yaml`` (description, JSON Schema ``parameters``, ``keys``,
optional ``checks``) and ``templates/<service>/<platform>.j2`` (+ optional
``<platform>.undo.j2``). See ``templates/README.md``.
"""

from gateway.render.schema import RESERVED_NAMES, ServiceSpec
from gateway.render.store import PAYLOAD_FORMATS, TemplateStore, payload_format_of

__all__ = ["PAYLOAD_FORMATS", "RESERVED_NAMES", "ServiceSpec", "TemplateStore", "payload_format_of"]
