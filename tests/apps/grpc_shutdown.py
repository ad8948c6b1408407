"""A gRPC server for the shutdown tests: ``python -m tests.apps.grpc_shutdown sync|aio PORT``.

``sync`` serves a thread-pool ``grpc.server`` with :func:`healthprobe.servers.grpc.serve`,
``aio`` a ``grpc.aio.server`` with :func:`healthprobe.servers.grpc.serve_async`; both on
``127.0.0.1:PORT``, with healthprobe's health servicer (a passing readiness check and a
passing liveness check), the in-flight interceptor, and two unary methods of a service
without a ``.proto`` (raw bytes both ways, no serializer):

* ``/tests.Load/Fast`` answers ``ok <pid>`` at once;
* ``/tests.Load/Slow`` answers ``slow ok <pid>`` after the number of seconds its request
  holds as ASCII text (``b"2"``).

Timings come from the environment: ``HP_DELAY``, ``HP_DRAIN``, ``HP_HOOK_TIMEOUT``,
``HP_REPEAT_WINDOW`` (seconds). The ``cleanup_sleep`` hook prints its start and end; under
``aio`` an async hook also prints ``async hook on the server's loop`` when awaited on the
loop that served.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import grpc.aio

from healthprobe.grpc import AioInFlightInterceptor, InFlightInterceptor, add_to_server
from healthprobe.servers.grpc import serve, serve_async

from . import add_cleanup_sleep, coordinator, started_registry

SERVICE = "tests.Load"
#: gRPC shares a port between servers by default on Linux (``SO_REUSEPORT``): not here.
OPTIONS = [("grpc.so_reuseport", 0)]

registry = started_registry({"dependency": lambda: True, "alive": (lambda: True, {"probes": ["liveness"]})})
shutdown = coordinator(registry)
add_cleanup_sleep(shutdown)


def fast(request: bytes, context: Any) -> bytes:
    return f"ok {os.getpid()}".encode()


def slow(request: bytes, context: Any) -> bytes:
    time.sleep(float(request.decode()))
    return f"slow ok {os.getpid()}".encode()


async def fast_async(request: bytes, context: Any) -> bytes:
    return f"ok {os.getpid()}".encode()


async def slow_async(request: bytes, context: Any) -> bytes:
    await asyncio.sleep(float(request.decode()))
    return f"slow ok {os.getpid()}".encode()


def handler(methods: dict[str, Any]) -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        SERVICE, {name: grpc.unary_unary_rpc_method_handler(method) for name, method in methods.items()}
    )


def run_sync(port: int) -> int:
    server = grpc.server(
        ThreadPoolExecutor(max_workers=32), interceptors=[InFlightInterceptor(shutdown)], options=OPTIONS
    )
    add_to_server(server, registry)
    server.add_generic_rpc_handlers((handler({"Fast": fast, "Slow": slow}),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    return serve(server, shutdown)


async def run_aio(port: int) -> int:
    loop = asyncio.get_running_loop()

    @shutdown.hook
    async def async_hook() -> None:
        if asyncio.get_running_loop() is loop:
            print(f"async hook on the server's loop in {os.getpid()}", flush=True)

    server = grpc.aio.server(interceptors=[AioInFlightInterceptor(shutdown)], options=OPTIONS)
    add_to_server(server, registry)
    server.add_generic_rpc_handlers((handler({"Fast": fast_async, "Slow": slow_async}),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    return await serve_async(server, shutdown)


if __name__ == "__main__":
    mode, port = sys.argv[1], int(sys.argv[2])
    sys.exit(run_sync(port) if mode == "sync" else asyncio.run(run_aio(port)))
