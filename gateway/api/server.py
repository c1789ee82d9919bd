"""The grpc.aio server: ActivationService + health checking + server reflection.

:func:`start_server` binds (port 0 in tests) and returns the server and its bound port;
:func:`stop_server` shuts down gracefully (health NOT_SERVING first, then in-flight calls get
``grace_s`` to finish); :func:`serve` runs until SIGTERM/SIGINT (or a given event).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import weakref
from typing import Callable

import grpc
import grpc.aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gateway.api.generated.activation.v1 import activation_pb2 as pb
from gateway.api.generated.activation.v1 import activation_pb2_grpc as pb_grpc
from gateway.api.auth import AuthInterceptor, AuthMode, Authorizer
from gateway.api.generated.activation.v1 import pools_pb2_grpc as ppb_grpc
from gateway.api.interceptors import ObservabilityInterceptor
from gateway.api.pools import SERVICE_NAME as POOL_SERVICE_NAME
from gateway.api.pools import PoolServicer
from gateway.api.servicer import ActivationServicer, EngineFacade
from gateway.api.tls import ServerTls, check_listen
from gateway.api.validate import DEFAULT_LIMITS, MIB, EdgeLimits
from gateway.errors import ConfigurationError

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ActivationService"].full_name
DEFAULT_LISTEN = "127.0.0.1:50051"
DEFAULT_MAX_MESSAGE_BYTES = 8 * MIB
"""gRPC transport limit; above EdgeLimits.max_request_bytes so the edge answers oversize first."""
DEFAULT_GRACE_S = 10.0

_health: "weakref.WeakKeyDictionary[grpc.aio.Server, health.aio.HealthServicer]" = weakref.WeakKeyDictionary()
_close_streams: "weakref.WeakKeyDictionary[grpc.aio.Server, Callable[[], None]]" = weakref.WeakKeyDictionary()


async def start_server(
    engine: EngineFacade,
    *,
    listen: str = DEFAULT_LISTEN,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    limits: EdgeLimits = DEFAULT_LIMITS,
    tls: ServerTls | None = None,
    auth: AuthMode | None = None,
    insecure: bool = False,
) -> tuple[grpc.aio.Server, int]:
    """Start serving ``engine`` on ``listen`` ("host:port"; port 0 picks a free one).

    With ``tls`` the server speaks TLS (mutual TLS when it has a client CA); ``auth`` says how
    calls are authenticated and authorized (default: identities exactly when there is a client
    CA, no policy). Plain text is only served on loopback unless ``insecure``.

    Returns the started server and the bound port. Raises ConfigurationError when the address
    cannot be bound, the limits are inconsistent, or TLS/auth settings do not fit together.
    """
    if auth is None:
        auth = AuthMode(identities=tls is not None and tls.client_ca is not None)
    if auth.identities and (tls is None or tls.client_ca is None):
        raise ConfigurationError("caller identities need mutual TLS: give --client-ca (with --tls-cert and --tls-key)")
    if auth.policy is not None and not auth.identities:
        raise ConfigurationError("a policy needs caller identities: give --client-ca (with --tls-cert and --tls-key)")
    check_listen(listen, tls=tls, insecure=insecure)
    credentials = tls.credentials() if tls is not None else None
    if max_message_bytes <= limits.max_request_bytes:
        raise ConfigurationError(
            f"max_message_bytes ({max_message_bytes}) must exceed limits.max_request_bytes "
            f"({limits.max_request_bytes}) so that oversized requests get a clear answer"
        )
    server = grpc.aio.server(
        interceptors=[ObservabilityInterceptor(), AuthInterceptor(auth)],
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
    )
    inventory = getattr(engine, "inventory", None)
    authorizer = Authorizer(groups_of=getattr(inventory, "groups_of", None))
    pb_grpc.add_ActivationServiceServicer_to_server(
        ActivationServicer(engine, limits=limits, authorizer=authorizer), server)
    ppb_grpc.add_PoolServiceServicer_to_server(PoolServicer(engine), server)  # resource pools: docs/pools.md
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, POOL_SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    try:
        port = server.add_secure_port(listen, credentials) if credentials is not None else server.add_insecure_port(listen)
    except RuntimeError as exc:
        raise ConfigurationError(f"cannot listen on {listen!r}: {exc}") from exc
    if port == 0:
        raise ConfigurationError(f"cannot listen on {listen!r}")
    await server.start()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    _health[server] = health_servicer
    close_streams = getattr(engine, "close_streams", None)
    if callable(close_streams):
        _close_streams[server] = close_streams
    log.info("serving %s on %s (port %d, %s%s)", SERVICE_NAME, listen, port,
             "plain text" if tls is None else ("mutual TLS" if tls.client_ca else "TLS"),
             f", policy {auth.policy.source}" if auth.policy is not None else "")
    return server, port


async def stop_server(server: grpc.aio.Server, *, grace_s: float = DEFAULT_GRACE_S) -> None:
    """Graceful shutdown: report NOT_SERVING, refuse new calls, give in-flight ones ``grace_s``."""
    health_servicer = _health.pop(server, None)
    if health_servicer is not None:
        await health_servicer.enter_graceful_shutdown()
    close_streams = _close_streams.pop(server, None)
    if close_streams is not None:  # open Watch/Subscribe streams end now (UNAVAILABLE), not at the grace's end
        close_streams()
    await server.stop(grace_s)
    log.info("server stopped")


async def serve(
    engine: EngineFacade,
    *,
    listen: str = DEFAULT_LISTEN,
    grace_s: float = DEFAULT_GRACE_S,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    limits: EdgeLimits = DEFAULT_LIMITS,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[int], None] | None = None,
    tls: ServerTls | None = None,
    auth: AuthMode | None = None,
    insecure: bool = False,
) -> None:
    """Serve until SIGTERM/SIGINT (or until ``stop`` is set), then shut down gracefully."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            pass
    server, port = await start_server(engine, listen=listen, max_message_bytes=max_message_bytes, limits=limits,
                                      tls=tls, auth=auth, insecure=insecure)
    try:
        if on_ready is not None:
            on_ready(port)
        await stop.wait()
        log.info("shutting down (grace %.1fs)", grace_s)
    finally:
        await stop_server(server, grace_s=grace_s)
        for sig in installed:
            loop.remove_signal_handler(sig)


__all__ = [
    "DEFAULT_GRACE_S",
    "DEFAULT_LISTEN",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "SERVICE_NAME",
    "serve",
    "start_server",
    "stop_server",
]
