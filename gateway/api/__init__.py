"""The gRPC edge: servicer, status mapping, interceptors, health and reflection.

Generated protobuf code lives in :mod:`gateway.api.generated` (``make proto``; never edited).
"""

from gateway.api.server import serve, start_server, stop_server
from gateway.api.validate import EdgeLimits

__all__ = ["EdgeLimits", "serve", "start_server", "stop_server"]
