"""The PoolService servicer (proto/activation/v1/pools.proto): validate, translate, call the
journal's pool store (:mod:`gateway.journal.pool_store`). Thin; every error ends the call through
:func:`gateway.api.status.abort`. Permissions (pools:read, pools:admin) are checked by the auth
interceptor (:mod:`gateway.api.auth`) before a method runs.
"""

from __future__ import annotations

import logging
from typing import Any

from gateway.api import convert
from gateway.api.generated.activation.v1 import pools_pb2 as ppb
from gateway.api.generated.activation.v1 import pools_pb2_grpc as ppb_grpc
from gateway.api.servicer import Ctx, _unary
from gateway.api.validate import _CONTROL
from gateway.engine.context import utcnow
from gateway.errors import FieldViolation, InputError, NotFoundError
from gateway.journal.pool_store import MAX_SHOWN, PoolInfo
from gateway.resources.pools import PoolDefinitionError, PoolKind, parse_pool

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 100
SERVICE_NAME = ppb.DESCRIPTOR.services_by_name["PoolService"].full_name


def pool_to_proto(info: PoolInfo) -> ppb.Pool:
    p = info.pool
    msg = ppb.Pool(name=p.name, kind=p.kind.value, prefix=p.prefix, first=p.first, last=p.last,
                   description=p.description, allocated=info.allocated, free=str(info.free))
    for a in info.allocations:
        msg.allocations.append(ppb.PoolAllocation(
            value=a.value, activation_id=a.activation_id, task_id=a.task_id, param=a.param,
            allocated_at=convert.ts_from_datetime(a.allocated_at), release_activation_id=a.release_activation,
            release_task_id=a.release_task))
    if info.created_at is not None:
        msg.created_at.CopyFrom(convert.ts_from_datetime(info.created_at))
    if info.updated_at is not None:
        msg.updated_at.CopyFrom(convert.ts_from_datetime(info.updated_at))
    return msg


def _name_violations(field: str, name: str) -> list[FieldViolation]:
    if not name:
        return [FieldViolation(field, "required")]
    if len(name) > 63 or _CONTROL.search(name):
        return [FieldViolation(field, "not a pool name (lower-case letters, digits, '_', '.', '-'; at most 63)")]
    return []


def definition_from_proto(msg: ppb.Pool) -> Any:
    """The definition a CreatePool gives; InputError naming the field."""
    problems = _name_violations("pool.name", msg.name)
    if problems:
        raise InputError(problems)
    kinds = [k.value for k in PoolKind]
    if msg.kind not in kinds:
        raise InputError([FieldViolation("pool.kind", f"must be one of {', '.join(kinds)}, not {msg.kind!r}"[:200])])
    kind = PoolKind(msg.kind)
    data: dict[str, Any] = {"kind": kind.value}
    if kind.is_ip:
        if msg.first or msg.last:
            raise InputError([FieldViolation("pool.first", f"an {kind.value} pool takes a prefix, not first/last")])
        data["prefix"] = msg.prefix
    else:
        if msg.prefix:
            raise InputError([FieldViolation("pool.prefix", f"a {kind.value} pool takes first and last, not a prefix")])
        data["first"], data["last"] = msg.first, msg.last
    if msg.description:
        data["description"] = msg.description
    try:
        return parse_pool(msg.name, data)
    except PoolDefinitionError as exc:  # "NAME.field: reason" -> the message's field
        text = str(exc)
        head, _, reason = text.partition(": ")
        if head == "name":
            field = "pool.name"
        elif head.startswith(msg.name + "."):
            field = "pool." + head[len(msg.name) + 1:]
        else:
            field = "pool"
        raise InputError([FieldViolation(field, (reason or text)[:300])]) from None


class PoolServicer(ppb_grpc.PoolServiceServicer):
    def __init__(self, engine: Any) -> None:
        self._engine = engine

    @property
    def _pools(self) -> Any:
        return self._engine.journal.pools

    @_unary
    async def CreatePool(self, request: ppb.CreatePoolRequest, context: Ctx) -> ppb.CreatePoolResponse:
        if not request.HasField("pool"):
            raise InputError([FieldViolation("pool", "required")])
        definition = definition_from_proto(request.pool)
        (_, outcome), = await self._pools.define([definition], replace=request.replace, now=utcnow())
        log.info("pool %s %s", definition.name, outcome)
        info = await self._pools.get(definition.name, limit=0)
        return ppb.CreatePoolResponse(pool=pool_to_proto(info), outcome=outcome)

    @_unary
    async def ListPools(self, request: ppb.ListPoolsRequest, context: Ctx) -> ppb.ListPoolsResponse:
        return ppb.ListPoolsResponse(pools=[pool_to_proto(i) for i in await self._pools.list()])

    @_unary
    async def GetPool(self, request: ppb.GetPoolRequest, context: Ctx) -> ppb.Pool:
        problems = _name_violations("name", request.name)
        if not 0 <= request.limit <= MAX_SHOWN:
            problems.append(FieldViolation("limit", f"must be 0 to {MAX_SHOWN}, not {request.limit}"))
        if problems:
            raise InputError(problems)
        info = await self._pools.get(request.name, limit=request.limit or DEFAULT_LIMIT)
        if info is None:
            raise NotFoundError(f"pool {request.name} does not exist")
        return pool_to_proto(info)


__all__ = ["PoolServicer", "SERVICE_NAME", "definition_from_proto", "pool_to_proto"]
