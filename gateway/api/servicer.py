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

from gateway import offload
from gateway.api import convert, paging, status, validate
from gateway.api.auth import Authorizer, current_access, current_caller
from gateway.api.subscribe import subscribe
from gateway.api.policy import Access
from gateway.api.generated.activation.v1 import activation_pb2 as pb
from gateway.api.generated.activation.v1 import activation_pb2_grpc as pb_grpc
from gateway.api.validate import DEFAULT_LIMITS, EdgeLimits
from gateway.model import ANONYMOUS, ActivationRequest, Caller
from gateway.results import ActivationResult, ActivationState, Event, Page, ResultEvent, SubmitResult, TaskResult

log = logging.getLogger(__name__)

LARGE_TASKS = 16
"""A Submit or DryRun with more tasks is validated, converted (and a DryRun's answer built) on a
worker thread."""


class EngineFacade(Protocol):
    """What the edge needs from the engine (the async facade of gateway.engine.Engine)."""

    async def submit(self, request: ActivationRequest, *, caller: Caller = ANONYMOUS) -> SubmitResult: ...
    async def dry_run(self, request: ActivationRequest, *, caller: Caller = ANONYMOUS,
                      deadline_s: float | None = None) -> ActivationResult: ...
    def watch(self, activation_id: str) -> AsyncIterator[Event]: ...
    async def get(self, activation_id: str, *, wait_s: float = 0.0) -> ActivationResult: ...
    async def cancel(self, activation_id: str, *, caller: Caller = ANONYMOUS) -> ActivationResult: ...
    async def rollback(self, activation_id: str, *, caller: Caller = ANONYMOUS) -> ActivationResult: ...
    async def list_page(
        self,
        *,
        states: Sequence[ActivationState] = (),
        device: str = "",
        since: datetime | None = None,
        until: datetime | None = None,
        page_size: int = 50,
        page_token: str = "",
    ) -> Page[ActivationResult]: ...
    async def fallout_page(self, *, page_size: int = 50, page_token: str = "") -> Page[tuple[str, TaskResult]]: ...
    async def retry(self, activation_id: str, task_id: str = "", *, caller: Caller = ANONYMOUS) -> ActivationResult: ...
    async def force_rollback(self, activation_id: str, task_id: str = "", *,
                             caller: Caller = ANONYMOUS) -> ActivationResult: ...
    async def resolve(self, activation_id: str, task_id: str, note: str, *,
                      caller: Caller = ANONYMOUS) -> ActivationResult: ...
    def subscribe(self, *, after: str = "", from_start: bool = False, outcomes: Sequence[str] = (),
                  services: Sequence[str] = (), caller: Caller = ANONYMOUS,
                  keep: Callable[[ResultEvent], bool] | None = None) -> AsyncIterator[ResultEvent]: ...


Req = TypeVar("Req")
Resp = TypeVar("Resp")
Ctx = grpc.aio.ServicerContext[Any, Any]


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
    def __init__(self, engine: EngineFacade, *, limits: EdgeLimits = DEFAULT_LIMITS,
                 authorizer: Authorizer | None = None) -> None:
        self._engine = engine
        self._limits = limits
        self._authz = authorizer or Authorizer()

    # -- helpers ----------------------------------------------------------------------------
    def _request(self, msg: pb.SubmitRequest) -> ActivationRequest:
        validate.raise_if_any(validate.submit_violations(msg, self._limits))
        return convert.request_from_proto(msg)

    @staticmethod
    async def _off_loop(tasks: int, fn: Callable[[Any], Resp], arg: Any) -> Resp:
        """``fn(arg)``, on a worker thread when the message has more than ``LARGE_TASKS`` tasks
        (validating and converting a thousand takes tens of milliseconds: the event loop keeps
        answering other calls meanwhile)."""
        if tasks <= LARGE_TASKS:
            return fn(arg)
        return await offload.run(fn, arg)

    def _id(self, activation_id: str) -> str:
        validate.raise_if_any(validate.activation_id_violations(activation_id, self._limits))
        return activation_id

    async def _fallout_allowed(self, request: pb.FalloutActionRequest, what: str) -> None:
        activation = await self._scoped(request.activation_id)
        if activation is not None:
            self._authz.fallout(current_access(), activation, request.task_id, what)

    def _authorized(self, msg: pb.SubmitRequest, access: Access, what: str) -> ActivationRequest:
        """Validated, converted and authorized (each task's device and service): one step, which
        runs off the loop for large requests."""
        wanted = self._request(msg)
        self._authz.submit(access, wanted, what=what)
        return wanted

    def _visible_activation(self) -> Callable[[ActivationResult], bool] | None:
        """For List: what the caller may read (None: everything)."""
        access = current_access()
        if access.unrestricted:
            return None
        return lambda a: self._authz.visible(access, a.tasks)

    def _visible_fallout(self) -> Callable[[tuple[str, TaskResult]], bool] | None:
        access = current_access()
        if access.unrestricted:
            return None
        return lambda item: self._authz.visible(access, (item[1],))

    async def _scoped(self, activation_id: str) -> ActivationResult | None:
        """The activation, when the caller's access is scoped and a decision needs it (else None)."""
        if current_access().unrestricted:
            return None
        return await self._engine.get(activation_id)

    def _reply(self, result: ActivationResult) -> pb.Activation:
        """An activation as sent: under the response cap, big text clipped if it alone passes it."""
        msg = convert.activation_to_proto(result)
        paging.fit(msg, self._limits.max_response_bytes, cap=self._limits.max_response_bytes)
        return msg

    def _page_budget(self) -> int:
        return self._limits.max_response_bytes - paging.token_reserve(self._limits.max_page_token_length)

    # -- RPCs -------------------------------------------------------------------------------
    @_unary
    async def Submit(self, request: pb.SubmitRequest, context: Ctx) -> pb.SubmitResponse:
        access = current_access()
        wanted = await self._off_loop(len(request.tasks), lambda m: self._authorized(m, access, "submit"), request)
        result = await self._engine.submit(wanted, caller=current_caller())
        return convert.submit_to_proto(result)

    @_unary
    async def DryRun(self, request: pb.SubmitRequest, context: Ctx) -> pb.Activation:
        access = current_access()
        wanted = await self._off_loop(len(request.tasks), lambda m: self._authorized(m, access, "dry-run"), request)
        result = await self._engine.dry_run(wanted, caller=current_caller(), deadline_s=context.time_remaining())
        return await self._off_loop(len(result.tasks), self._reply, result)

    async def Watch(self, request: pb.WatchRequest, context: Ctx) -> AsyncIterator[pb.Event]:
        events: AsyncIterator[Event] | None = None
        try:
            activation = await self._scoped(self._id(request.activation_id))
            if activation is not None:
                self._authz.read(current_access(), activation)
            events = self._engine.watch(request.activation_id)
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
        if not current_access().unrestricted:  # before waiting: a refused caller does not wait
            self._authz.read(current_access(), await self._engine.get(request.activation_id))
        result = await self._engine.get(request.activation_id, wait_s=request.wait_ms / 1000)
        return self._reply(result)

    @_unary
    async def Cancel(self, request: pb.CancelRequest, context: Ctx) -> pb.Activation:
        activation = await self._scoped(self._id(request.activation_id))
        if activation is not None:
            self._authz.change(current_access(), current_caller(), activation, "cancel")
        return self._reply(await self._engine.cancel(request.activation_id, caller=current_caller()))

    @_unary
    async def Rollback(self, request: pb.RollbackRequest, context: Ctx) -> pb.Activation:
        activation = await self._scoped(self._id(request.activation_id))
        if activation is not None:
            self._authz.change(current_access(), current_caller(), activation, "roll back")
        return self._reply(await self._engine.rollback(request.activation_id, caller=current_caller()))

    @_unary
    async def List(self, request: pb.ListRequest, context: Ctx) -> pb.ListResponse:
        validate.raise_if_any(validate.list_violations(request, self._limits))
        states = [convert.ACTIVATION_STATE_FROM_PB[s] for s in request.states]
        since = convert.datetime_from_ts(request.since) if request.HasField("since") else None
        until = convert.datetime_from_ts(request.until) if request.HasField("until") else None

        async def fetch(n: int, token: str) -> Page[ActivationResult]:
            return await self._engine.list_page(states=states, device=request.device, since=since, until=until,
                                                page_size=n, page_token=token)

        found, token = await paging.fill_page(
            fetch, convert.activation_to_proto, page_size=validate.page_size(request.page_size, self._limits,
                                                                             limit=request.limit),
            page_token=request.page_token, budget=self._page_budget(), cap=self._limits.max_response_bytes,
            keep=self._visible_activation())
        return pb.ListResponse(activations=found, next_page_token=token)

    @_unary
    async def ListFallout(self, request: pb.ListFalloutRequest, context: Ctx) -> pb.ListFalloutResponse:
        validate.raise_if_any(validate.fallout_list_violations(request, self._limits))

        async def fetch(n: int, token: str) -> Page[tuple[str, TaskResult]]:
            return await self._engine.fallout_page(page_size=n, page_token=token)

        def to_msg(item: tuple[str, TaskResult]) -> pb.FalloutItem:
            return pb.FalloutItem(activation_id=item[0], task=convert.task_to_proto(item[1]))

        found, token = await paging.fill_page(
            fetch, to_msg, page_size=validate.page_size(request.page_size, self._limits),
            page_token=request.page_token, budget=self._page_budget(), cap=self._limits.max_response_bytes,
            keep=self._visible_fallout())
        return pb.ListFalloutResponse(items=found, next_page_token=token)

    @_unary
    async def RetryFallout(self, request: pb.FalloutActionRequest, context: Ctx) -> pb.Activation:
        validate.raise_if_any(validate.fallout_violations(request, resolve=False, limits=self._limits))
        await self._fallout_allowed(request, "retry")
        return self._reply(await self._engine.retry(request.activation_id, request.task_id, caller=current_caller()))

    @_unary
    async def ForceRollbackFallout(self, request: pb.FalloutActionRequest, context: Ctx) -> pb.Activation:
        validate.raise_if_any(validate.fallout_violations(request, resolve=False, limits=self._limits))
        await self._fallout_allowed(request, "force a rollback")
        result = await self._engine.force_rollback(request.activation_id, request.task_id, caller=current_caller())
        return self._reply(result)

    @_unary
    async def ResolveFallout(self, request: pb.FalloutActionRequest, context: Ctx) -> pb.Activation:
        validate.raise_if_any(validate.fallout_violations(request, resolve=True, limits=self._limits))
        await self._fallout_allowed(request, "resolve a fallout")
        result = await self._engine.resolve(request.activation_id, request.task_id, request.note,
                                            caller=current_caller())
        return self._reply(result)

    async def Subscribe(self, request: pb.SubscribeRequest, context: Ctx) -> AsyncIterator[pb.ResultEvent]:
        events = subscribe(self._engine, request, context, limits=self._limits, authorizer=self._authz)
        try:
            async for event in events:
                yield event
        finally:
            await events.aclose()


__all__ = ["ActivationServicer", "EngineFacade"]
