"""A small synchronous client of ActivationService, for the ``agw`` command and scripts.

Errors stay ``grpc.RpcError``; :func:`describe_rpc_error` formats one as ``CODE: message``.
"""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any, Iterable, Iterator, Sequence, cast

import grpc

from gateway.api import convert, status
from gateway.api.tls import ClientTls
from gateway.api.generated.activation.v1 import activation_pb2 as pb
from gateway.api.generated.activation.v1 import activation_pb2_grpc as pb_grpc
from gateway.api.generated.activation.v1 import pools_pb2 as ppb
from gateway.api.generated.activation.v1 import pools_pb2_grpc as ppb_grpc
from gateway.model import ActivationRequest
from gateway.results import ActivationResult, ActivationState, Event, SubmitResult, TaskResult

DEFAULT_SERVER = "127.0.0.1:50051"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def describe_rpc_error(exc: grpc.RpcError) -> str:
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    name = code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
    return f"{name}: {details}"


def violations_of(exc: grpc.RpcError) -> list[str]:
    """The field violations of an INVALID_ARGUMENT, one "field: reason" each (rich details)."""
    md = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    # grpc's metadata items are (key, value) named tuples (types-grpcio types them as a plain class)
    return [str(v) for v in status.bad_request_details(cast("Iterable[tuple[str, str | bytes]] | None", md))]


class Client:
    def __init__(self, target: str = DEFAULT_SERVER, *, timeout_s: float = 60.0, tls: ClientTls | None = None) -> None:
        """``tls``: the CA of the server's certificate and, for mutual TLS, the client's own
        certificate and key; None or empty: plain text."""
        self.target = target
        self.timeout_s = timeout_s
        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ]
        if tls is not None and tls.enabled:
            self._channel = grpc.secure_channel(target, tls.credentials(), options=options + tls.options())
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        self._stub = pb_grpc.ActivationServiceStub(self._channel)
        self._pools = ppb_grpc.PoolServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calls -------------------------------------------------------------------------------
    def submit(self, request: ActivationRequest) -> SubmitResult:
        r = self._stub.Submit(convert.request_to_proto(request), timeout=self.timeout_s)
        return SubmitResult(activation_id=r.activation_id, created=r.created)

    def dry_run(self, request: ActivationRequest) -> ActivationResult:
        return convert.activation_from_proto(self._stub.DryRun(convert.request_to_proto(request), timeout=self.timeout_s))

    def watch(self, activation_id: str) -> Iterator[Event]:
        """Past events, then live ones, until the activation is final (no deadline)."""
        for ev in self._stub.Watch(pb.WatchRequest(activation_id=activation_id)):
            yield convert.event_from_proto(ev)

    def get(self, activation_id: str, *, wait_s: float = 0.0) -> ActivationResult:
        """The result; with ``wait_s``, once the activation ended or after that long (long poll)."""
        req = pb.GetRequest(activation_id=activation_id, wait_ms=round(wait_s * 1000))
        return convert.activation_from_proto(self._stub.Get(req, timeout=self.timeout_s + wait_s))

    def cancel(self, activation_id: str) -> ActivationResult:
        return convert.activation_from_proto(
            self._stub.Cancel(pb.CancelRequest(activation_id=activation_id), timeout=self.timeout_s)
        )

    def rollback(self, activation_id: str) -> ActivationResult:
        return convert.activation_from_proto(
            self._stub.Rollback(pb.RollbackRequest(activation_id=activation_id), timeout=self.timeout_s)
        )

    def list(
        self,
        *,
        states: Sequence[ActivationState] = (),
        device: str = "",
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 0,
    ) -> list[ActivationResult]:
        req = pb.ListRequest(
            states=[convert.ACTIVATION_STATE_TO_PB[s] for s in states], device=device, limit=limit
        )
        if since is not None:
            req.since.CopyFrom(convert.ts_from_datetime(since))
        if until is not None:
            req.until.CopyFrom(convert.ts_from_datetime(until))
        resp = self._stub.List(req, timeout=self.timeout_s)
        return [convert.activation_from_proto(a) for a in resp.activations]

    def list_page(
        self,
        *,
        states: Sequence[ActivationState] = (),
        device: str = "",
        since: datetime | None = None,
        until: datetime | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> tuple[builtins.list[ActivationResult], str]:
        """One page (newest first) and the token of the next ("" on the last page); page_size 0:
        the server's default."""
        req = pb.ListRequest(states=[convert.ACTIVATION_STATE_TO_PB[s] for s in states], device=device,
                             page_size=page_size, page_token=page_token)
        if since is not None:
            req.since.CopyFrom(convert.ts_from_datetime(since))
        if until is not None:
            req.until.CopyFrom(convert.ts_from_datetime(until))
        resp = self._stub.List(req, timeout=self.timeout_s)
        return [convert.activation_from_proto(a) for a in resp.activations], resp.next_page_token

    def fallout_page(
        self, *, page_size: int = 0, page_token: str = ""
    ) -> tuple[builtins.list[tuple[str, TaskResult]], str]:
        """One page of the tasks in fallout and the token of the next ("" on the last page)."""
        req = pb.ListFalloutRequest(page_size=page_size, page_token=page_token)
        resp = self._stub.ListFallout(req, timeout=self.timeout_s)
        return [(i.activation_id, convert.task_from_proto(i.task)) for i in resp.items], resp.next_page_token

    def fallout(self) -> builtins.list[tuple[str, TaskResult]]:
        """Every task in fallout (all pages)."""
        out: list[tuple[str, TaskResult]] = []
        token = ""
        while True:
            items, token = self.fallout_page(page_token=token)
            out.extend(items)
            if not token:
                return out

    def retry(self, activation_id: str, task_id: str = "") -> ActivationResult:
        req = pb.FalloutActionRequest(activation_id=activation_id, task_id=task_id)
        return convert.activation_from_proto(self._stub.RetryFallout(req, timeout=self.timeout_s))

    def force_rollback(self, activation_id: str, task_id: str = "") -> ActivationResult:
        req = pb.FalloutActionRequest(activation_id=activation_id, task_id=task_id)
        return convert.activation_from_proto(self._stub.ForceRollbackFallout(req, timeout=self.timeout_s))

    def resolve(self, activation_id: str, task_id: str, note: str) -> ActivationResult:
        req = pb.FalloutActionRequest(activation_id=activation_id, task_id=task_id, note=note)
        return convert.activation_from_proto(self._stub.ResolveFallout(req, timeout=self.timeout_s))

    # -- resource pools (proto/activation/v1/pools.proto): the messages as they come ------------------
    def create_pool(self, pool: ppb.Pool, *, replace: bool = False) -> ppb.CreatePoolResponse:
        r: ppb.CreatePoolResponse = self._pools.CreatePool(ppb.CreatePoolRequest(pool=pool, replace=replace),
                                                           timeout=self.timeout_s)
        return r

    def list_pools(self) -> builtins.list[ppb.Pool]:
        return builtins.list(self._pools.ListPools(ppb.ListPoolsRequest(), timeout=self.timeout_s).pools)

    def get_pool(self, name: str, *, limit: int = 0) -> ppb.Pool:
        p: ppb.Pool = self._pools.GetPool(ppb.GetPoolRequest(name=name, limit=limit), timeout=self.timeout_s)
        return p


__all__ = ["DEFAULT_SERVER", "Client", "describe_rpc_error", "violations_of"]
