"""The ActivationService servicer: validate the structure, translate, call the engine. Thin.

Every error ends the call through :func:`gateway.api.status.abort` (the one mapping module).
The engine is anything with the facade of :class:`gateway.engine.Engine` (see :class:`EngineFacade`).
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime
from typing import Any, AsyncIterator, Awaitable, Callable, Protocol, Sequence, TypeVar

import grpc.aio

from gateway.api import convert, status, validate
from gateway.api.auth import current_caller
from gateway.api.generated.activation.v1 import activation_pb2 as pb
from gateway.api.generated.activation.v1 import activation_pb2_grpc as pb_grpc
from gateway.api.validate import DEFAULT_LIMITS, EdgeLimits
from gateway.engine.views import ActivationResult, ActivationState, Event, SubmitResult, TaskResult
from gateway.model import ANONYMOUS, ActivationRequest, Caller

log = logging.getLogger(__name__)

DEFAULT_LIST_LIMIT = 100


class EngineFacade(Protocol):
    """What the edge needs from the engine (the async facade of gateway.engine.Engine)."""

    async def submit(self, request: ActivationRequest, *, caller: Caller = ANONYMOUS) -> SubmitResult: ...
    async def dry_run(self, request: ActivationRequest, *, caller: Caller = ANONYMOUS) -> ActivationResult: ...
    def watch(self, activation_id: str) -> AsyncIterator[Event]: ...
    async def get(self, activation_id: str, *, wait_s: float = 0.0) -> ActivationResult: ...
    async def cancel(self, activation_id: str, *, caller: Caller = ANONYMOUS) -> ActivationResult: ...
    async def rollback(self, activation_id: str, *, caller: Caller = ANONYMOUS) -> ActivationResult: ...
    async def list(
        self,
        *,
        states: Sequence[ActivationState] = (),
        device: str = "",
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[ActivationResult]: ...
    async def fallout(self) -> list[tuple[str, TaskResult]]: ...
    async def retry(self, activation_id: str, task_id: str = "", *, caller: Caller = ANONYMOUS) -> ActivationResult: ...
    async def force_rollback(self, activation_id: str, task_id: str = "", *,
                             caller: Caller = ANONYMOUS) -> ActivationResult: ...
    async def resolve(self, activation_id: str, task_id: str, note: str, *,
                      caller: Caller = ANONYMOUS) -> ActivationResult: ...


Req = TypeVar("Req")
Resp = TypeVar("Resp")
Ctx = grpc.aio.ServicerContext


def _unary(fn: Callable[[Any, Req, Ctx], Awaitable[Resp]]) -> Callable[[Any, Req, Ctx], Awaitable[Resp]]:
    @functools.wraps(fn)
    async def wrapper(self: Any, request: Req, context: Ctx) -> Resp:
        try:
            return await fn(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # noqa: BLE001 - every error becomes a status, in status.py
            await status.abort(context, exc)

    return wrapper


class ActivationServicer(pb_grpc.ActivationServiceServicer):
    def __init__(self, engine: EngineFacade, *, limits: EdgeLimits = DEFAULT_LIMITS) -> None:
        self._engine = engine
        self._limits = limits

    # -- helpers ----------------------------------------------------------------------------
    def _request(self, msg: pb.SubmitRequest) -> ActivationRequest:
        validate.raise_if_any(validate.submit_violations(msg, self._limits))
        return convert.request_from_proto(msg)

    def _id(self, activation_id: str) -> str:
        validate.raise_if_any(validate.activation_id_violations(activation_id, self._limits))
        return activation_id

    # -- RPCs -------------------------------------------------------------------------------
    @_unary
    async def Submit(self, request: pb.SubmitRequest, context: Ctx) -> pb.SubmitResponse:
        result = await self._engine.submit(self._request(request), caller=current_caller())
        return convert.submit_to_proto(result)

    @_unary
    async def DryRun(self, request: pb.SubmitRequest, context: Ctx) -> pb.Activation:
        return convert.activation_to_proto(await self._engine.dry_run(self._request(request), caller=current_caller()))

    async def Watch(self, request: pb.WatchRequest, context: Ctx) -> AsyncIterator[pb.Event]:
        events: AsyncIterator[Event] | None = None
        try:
            events = self._engine.watch(self._id(request.activation_id))
            async for event in events:
                yield convert.event_to_proto(event)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # noqa: BLE001 - every error becomes a status, in status.py
            await status.abort(context, exc)
        finally:  # the watcher left (or the stream ended): release the engine's subscription now
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()

    @_unary
    async def Get(self, request: pb.GetRequest, context: Ctx) -> pb.Activation:
        validate.raise_if_any(validate.get_violations(request, self._limits))
        result = await self._engine.get(request.activation_id, wait_s=request.wait_ms / 1000)
        return convert.activation_to_proto(result)

    @_unary
    async def Cancel(self, request: pb.CancelRequest, context: Ctx) -> pb.Activation:
        return convert.activation_to_proto(await self._engine.cancel(self._id(request.activation_id),
                                                                     caller=current_caller()))

    @_unary
    async def Rollback(self, request: pb.RollbackRequest, context: Ctx) -> pb.Activation:
        return convert.activation_to_proto(await self._engine.rollback(self._id(request.activation_id),
                                                                       caller=current_caller()))

    @_unary
    async def List(self, request: pb.ListRequest, context: Ctx) -> pb.ListResponse:
        validate.raise_if_any(validate.list_violations(request, self._limits))
        results = await self._engine.list(
            states=[convert.ACTIVATION_STATE_FROM_PB[s] for s in request.states],
            device=request.device,
            since=convert.datetime_from_ts(request.since) if request.HasField("since") else None,
            until=convert.datetime_from_ts(request.until) if request.HasField("until") else None,
            limit=request.limit or DEFAULT_LIST_LIMIT,
        )
        return pb.ListResponse(activations=[convert.activation_to_proto(a) for a in results])

    @_unary
    async def ListFallout(self, request: pb.ListFalloutRequest, context: Ctx) -> pb.ListFalloutResponse:
        items = await self._engine.fallout()
        return pb.ListFalloutResponse(
            items=[pb.FalloutItem(activation_id=aid, task=convert.task_to_proto(t)) for aid, t in items]
        )

    @_unary
    async def RetryFallout(self, request: pb.FalloutActionRequest, context: Ctx) -> pb.Activation:
        validate.raise_if_any(validate.fallout_violations(request, resolve=False, limits=self._limits))
        return convert.activation_to_proto(await self._engine.retry(request.activation_id, request.task_id,
                                                                    caller=current_caller()))

    @_unary
    async def ForceRollbackFallout(self, request: pb.FalloutActionRequest, context: Ctx) -> pb.Activation:
        validate.raise_if_any(validate.fallout_violations(request, resolve=False, limits=self._limits))
        result = await self._engine.force_rollback(request.activation_id, request.task_id, caller=current_caller())
        return convert.activation_to_proto(result)

    @_unary
    async def ResolveFallout(self, request: pb.FalloutActionRequest, context: Ctx) -> pb.Activation:
        validate.raise_if_any(validate.fallout_violations(request, resolve=True, limits=self._limits))
        result = await self._engine.resolve(request.activation_id, request.task_id, request.note,
                                            caller=current_caller())
        return convert.activation_to_proto(result)


__all__ = ["ActivationServicer", "EngineFacade"]
