"""A gRPC health server for measurement (8), one per process so that it has an interpreter
(and a GIL) of its own, away from the measuring client.

``python -m benchmarks.grpc_serve SIDE FLAVOUR``: ``SIDE`` is ``stock`` (grpcio-health-checking's
servicer, a static status table), ``healthprobe`` (``healthprobe.grpc``'s servicer over a
registry whose one readiness check has a cached result) or ``interceptor`` (the same, behind
the in-flight interceptor a served application adds); ``FLAVOUR`` is ``sync``
(``grpc.server`` with a thread pool) or ``aio`` (``grpc.aio.server``). It listens on an
ephemeral loopback port, prints the port on a line of its own once serving, and stops when
its standard input closes.
"""

from __future__ import annotations

import asyncio
import sys
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2_grpc

from healthprobe import HealthRegistry
from healthprobe.shutdown import GracefulShutdown

SIDES = ("stock", "healthprobe", "interceptor")
FLAVOURS = ("sync", "aio")
#: Threads of the sync server's pool, as an application would size it for its own RPCs.
WORKERS = 16


def _registry() -> HealthRegistry:
    """A started registry with one sync readiness check whose result is cached for an hour,
    run once here: every ``Check`` of the measurement gets the cached answer."""
    registry = HealthRegistry()
    registry.add_check("database", lambda: None, cache_ttl=3600.0)
    registry.mark_started()
    report = registry.run("readiness")
    if not report.ok:
        raise RuntimeError(f"the benchmark's readiness check failed: {report}")
    return registry


def _parts(side: str, flavour: str) -> tuple[Any, list[Any]]:
    """The servicer and the server interceptors of ``side`` for ``flavour``."""
    if side == "stock":
        return (health.aio.HealthServicer() if flavour == "aio" else health.HealthServicer()), []
    from healthprobe import grpc as health_grpc

    registry = _registry()
    if flavour == "aio":
        servicer: Any = health_grpc.AioHealthServicer(registry)
        interceptor: Any = health_grpc.AioInFlightInterceptor(GracefulShutdown(registry))
    else:
        servicer = health_grpc.HealthServicer(registry)
        interceptor = health_grpc.InFlightInterceptor(GracefulShutdown(registry))
    return servicer, [interceptor] if side == "interceptor" else []


def serve_sync(side: str) -> None:
    servicer, interceptors = _parts(side, "sync")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=WORKERS), interceptors=interceptors)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    sys.stdin.read()
    server.stop(0).wait(5)


async def serve_aio(side: str) -> None:
    servicer, interceptors = _parts(side, "aio")
    server = grpc.aio.server(interceptors=interceptors)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.stop(0)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in SIDES or argv[1] not in FLAVOURS:
        print(f"usage: python -m benchmarks.grpc_serve {{{','.join(SIDES)}}} {{{','.join(FLAVOURS)}}}", file=sys.stderr)
        return 2
    side, flavour = argv
    if flavour == "aio":
        asyncio.run(serve_aio(side))
    else:
        serve_sync(side)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
