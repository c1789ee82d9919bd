"""Who is calling, and may they: identities from TLS client certificates, and the policy.

:class:`AuthInterceptor` runs on every call. With a client CA (mutual TLS), the caller's identity
is read from its verified certificate: the first SAN URI (a SPIFFE id such as
``spiffe://agw.local/orchestrator``), else the subject CN. A certificate that is missing or from
another CA never gets this far: the TLS handshake refuses it. With a policy
(:mod:`gateway.api.policy`) an identity the policy does not name is ``UNAUTHENTICATED`` and a role
too low for the method, or a permission the method needs and no grant holds (``events:subscribe``
for Subscribe), is ``PERMISSION_DENIED`` naming what is needed. Health checks stay open;
server reflection needs the reader role. The caller and its access are kept in context variables
for the servicer (:func:`current_caller`, :func:`current_access`).

:class:`Authorizer` makes the finer decisions the servicer asks for, which need the request or the
activation: every (device, service) a call touches must be covered by a grant of a high enough
role; Cancel and Rollback of one's own activation need ``submitter``, of someone else's
``operator``.

Without a client CA there are no identities: every call is anonymous and unrestricted (only
allowed on loopback, or with ``--insecure``: see :mod:`gateway.api.tls`).
"""

from __future__ import annotations

import contextvars
import logging
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Mapping, cast

import grpc
import grpc.aio

from gateway.api.policy import UNRESTRICTED, Access, Need, Policy, Role, denied
from gateway.errors import PermissionDeniedError, UnauthenticatedError
from gateway.model import ANONYMOUS, ActivationRequest, Caller
from gateway.results import ActivationResult, ResultEvent, TaskResult

log = logging.getLogger(__name__)

_Context = grpc.aio.ServicerContext[Any, Any]
"""The server side of a call, whatever its messages."""

SERVICE = "/agw.activation.v1.ActivationService/"
METHOD_ROLES: dict[str, Role] = {
    "Get": Role.READER,
    "Watch": Role.READER,
    "List": Role.READER,
    "ListFallout": Role.READER,
    "Submit": Role.SUBMITTER,
    "DryRun": Role.SUBMITTER,
    "Cancel": Role.SUBMITTER,
    "Rollback": Role.SUBMITTER,
    "RetryFallout": Role.OPERATOR,
    "ForceRollbackFallout": Role.OPERATOR,
    "ResolveFallout": Role.OPERATOR,
    "Subscribe": Role.READER,
}
"""The least role each method needs (the servicer then checks the devices and services)."""
METHOD_PERMISSIONS: dict[str, str] = {"Subscribe": "events:subscribe"}
"""The permission (:data:`gateway.api.policy.PERMISSIONS`) a method needs besides its role."""
POOL_SERVICE = "/agw.activation.v1.PoolService/"
POOL_PERMISSIONS: dict[str, str] = {"ListPools": "pools:read", "GetPool": "pools:read", "CreatePool": "pools:admin"}
"""PoolService: every method needs the reader role and this permission (any other: pools:admin)."""
OPEN_PREFIXES = ("/grpc.health.v1.Health/",)
"""Methods anyone may call, identity or not."""

_caller: contextvars.ContextVar[Caller] = contextvars.ContextVar("agw_caller", default=ANONYMOUS)
_access: contextvars.ContextVar[Access] = contextvars.ContextVar("agw_access", default=UNRESTRICTED)


def current_caller() -> Caller:
    """The caller of the call being served (anonymous when the gateway runs without identities)."""
    return _caller.get()


def current_access() -> Access:
    """What the caller of the call being served may do."""
    return _access.get()


def identity_of(auth_context: Mapping[str, Iterable[bytes]]) -> str:
    """The identity of a TLS peer: its first SAN URI, else its subject CN; "" without a certificate."""
    for key in ("peer_uri", "x509_common_name"):
        values = auth_context.get(key) or []
        for value in values:
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
            if text:
                return text
    return ""


@dataclass(frozen=True)
class AuthMode:
    """How calls are authenticated: ``identities`` (a client CA is configured: mutual TLS) and
    an optional ``policy`` (needs identities)."""

    identities: bool = False
    policy: Policy | None = None

    def decide(self, identity: str, method: str) -> tuple[Caller, Access]:
        """The caller and its access for one call; raises for an unknown identity or a role too low."""
        if not self.identities:
            return ANONYMOUS, UNRESTRICTED
        caller = Caller(identity=identity)
        if self.policy is None:
            if not identity:
                raise UnauthenticatedError("the client certificate names no identity (no SAN URI, no CN)")
            return caller, Access(identity=identity, grants=(), unrestricted=True)
        if not identity:
            raise UnauthenticatedError("the client certificate names no identity (no SAN URI, no CN)")
        access = self.policy.access(identity)
        if access is None:
            raise UnauthenticatedError(f"identity {identity!r} is not known to the gateway's policy")
        needed = required_role(method)
        name = method.rsplit('/', 1)[-1]
        if needed is not None and not access.has_role(needed):
            raise PermissionDeniedError(f"{identity} holds role {access.role.label}; {name} needs role {needed.label}")
        permission = required_permission(method)
        if permission and not access.permits(permission):
            raise PermissionDeniedError(f"{identity} may not call {name}: it needs the permission {permission} "
                                        f"(permissions: [{permission}] on one of its grants, or role admin)")
        return caller, access


def required_permission(method: str) -> str:
    """The permission ``method`` needs besides its role ("" for none)."""
    if method.startswith(SERVICE):
        return METHOD_PERMISSIONS.get(method[len(SERVICE):], "")
    if method.startswith(POOL_SERVICE):
        return POOL_PERMISSIONS.get(method[len(POOL_SERVICE):], "pools:admin")
    return ""


def required_role(method: str) -> Role | None:
    """The least role ``method`` needs; None for open methods (health)."""
    if method.startswith(OPEN_PREFIXES):
        return None
    if method.startswith(SERVICE):
        return METHOD_ROLES.get(method[len(SERVICE):], Role.ADMIN)
    return Role.READER  # server reflection and anything else served: read-only, but not anonymous


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates every call and applies the method's role; open methods pass untouched."""

    def __init__(self, mode: AuthMode) -> None:
        self.mode = mode

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or required_role(method) is None:
            return handler
        mode = self.mode

        async def admit(context: _Context) -> tuple[contextvars.Token[Caller], contextvars.Token[Access]]:
            try:
                caller, access = mode.decide(identity_of(context.auth_context()), method)
            except UnauthenticatedError as exc:
                log.info("refused %s: %s", method, exc.message)
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, exc.message)
                raise
            except PermissionDeniedError as exc:
                log.info("refused %s: %s", method, exc.message)
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, exc.message)
                raise
            return _caller.set(caller), _access.set(access)

        def release(tokens: tuple[contextvars.Token[Caller], contextvars.Token[Access]]) -> None:
            for var, token in ((_caller, tokens[0]), (_access, tokens[1])):
                try:
                    var.reset(token)  # type: ignore[arg-type]
                except ValueError:  # a stream finished in another context: nothing to reset
                    pass

        # grpc.aio serves coroutines and async generators, given an aio context: the stubs type the
        # behaviours of an RpcMethodHandler after the synchronous server's.
        if handler.unary_unary is not None:
            inner_uu: Callable[..., Awaitable[Any]] = handler.unary_unary

            async def unary_unary(request: Any, context: _Context) -> Any:
                tokens = await admit(context)
                try:
                    return await inner_uu(request, context)
                finally:
                    release(tokens)

            return grpc.unary_unary_rpc_method_handler(unary_unary, request_deserializer=handler.request_deserializer,
                                                       response_serializer=handler.response_serializer)
        if handler.unary_stream is not None:
            inner_us = cast("Callable[..., AsyncIterator[Any]]", handler.unary_stream)

            async def unary_stream(request: Any, context: _Context) -> AsyncIterator[Any]:
                tokens = await admit(context)
                try:
                    async for item in inner_us(request, context):
                        yield item
                finally:
                    release(tokens)

            return grpc.unary_stream_rpc_method_handler(unary_stream, request_deserializer=handler.request_deserializer,
                                                        response_serializer=handler.response_serializer)
        if handler.stream_stream is not None:
            inner_ss = cast("Callable[..., AsyncIterator[Any]]", handler.stream_stream)

            async def stream_stream(requests: Any, context: _Context) -> AsyncIterator[Any]:
                tokens = await admit(context)
                try:
                    async for item in inner_ss(requests, context):
                        yield item
                finally:
                    release(tokens)

            return grpc.stream_stream_rpc_method_handler(stream_stream,
                                                         request_deserializer=handler.request_deserializer,
                                                         response_serializer=handler.response_serializer)
        return handler  # stream-unary: none is served


class Authorizer:
    """The servicer's per-call decisions on devices, services and ownership.

    ``groups_of(device)`` gives the inventory groups of a device (a grant may name ``group:X``).
    Every decision raises :class:`PermissionDeniedError` naming the role and scope needed.
    """

    def __init__(self, *, groups_of: Callable[[str], frozenset[str]] | None = None) -> None:
        self._groups_of = groups_of or (lambda _device: frozenset())

    def _require(self, access: Access, needs: Iterable[Need], what: str) -> None:
        missing = denied(access, needs, self._groups_of)
        if missing is not None:
            groups = sorted(self._groups_of(missing.device))
            in_groups = f" (groups {', '.join(groups)})" if groups else ""
            raise PermissionDeniedError(
                f"{access.identity or 'the caller'} may not {what}: it needs role {missing.role.label} with a scope "
                f"covering device {missing.device}{in_groups} and service {missing.service}")

    def submit(self, access: Access, request: ActivationRequest, *, what: str = "submit") -> None:
        self._require(access, (Need(Role.SUBMITTER, t.device, t.service) for t in request.tasks), what)

    def read(self, access: Access, activation: ActivationResult) -> None:
        self._require(access, _needs(Role.READER, activation.tasks), f"read activation {activation.id}")

    def visible(self, access: Access, tasks: Iterable[TaskResult]) -> bool:
        return denied(access, _needs(Role.READER, tasks), self._groups_of) is None

    def sees(self, access: Access, event: ResultEvent) -> bool:
        """Subscribe: a result event reaches the caller when it may read every task of it."""
        return access.unrestricted or denied(
            access, [Need(Role.READER, device, service) for device, service in event.tasks], self._groups_of) is None

    def change(self, access: Access, caller: Caller, activation: ActivationResult, what: str) -> None:
        """Cancel or Rollback: the submitter may act on its own activation; anyone else needs operator."""
        own = bool(caller.identity) and caller.identity == activation.submitted_by
        role = Role.SUBMITTER if own else Role.OPERATOR
        self._require(access, _needs(role, activation.tasks), f"{what} activation {activation.id}"
                      + ("" if own else f" submitted by {activation.submitted_by or 'an anonymous caller'}"))

    def fallout(self, access: Access, activation: ActivationResult, task_id: str, what: str) -> None:
        tasks = [t for t in activation.tasks if not task_id or t.id == task_id]
        self._require(access, _needs(Role.OPERATOR, tasks), f"{what} on activation {activation.id}")


def _needs(role: Role, tasks: Iterable[TaskResult]) -> list[Need]:
    return [Need(role, t.device, t.service) for t in tasks]


__all__ = [
    "METHOD_PERMISSIONS",
    "METHOD_ROLES",
    "AuthInterceptor",
    "AuthMode",
    "Authorizer",
    "current_access",
    "current_caller",
    "identity_of",
    "required_permission",
    "required_role",
]
