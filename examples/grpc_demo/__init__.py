"""A small gRPC service served with healthprobe's ``grpc.health.v1`` servicer and graceful
shutdown: ``python -m examples.grpc_demo``.

The service is ``grpcdemo.v1.KeyValue`` (``keyvalue.proto``: ``Put``, ``Get``, and ``Slow``,
which answers after a given number of seconds), a ``grpc.aio`` server keeping its values in
PostgreSQL (``DATABASE_URL``), on ``HOST:GRPC_PORT`` (``0.0.0.0:50051``). Beside it, on the
same port, ``grpc.health.v1.Health`` answers from one :class:`~healthprobe.HealthRegistry`
(:mod:`healthprobe.grpc`):

* ``startup``: ``warmup`` (``STARTUP_DELAY`` seconds have passed since start);
* ``liveness``: ``event-loop`` (the event loop is not blocked for more than 2 s);
* ``readiness`` (and ``""``, the server as a whole): ``postgres``, a connection of the
  service's own pool runs ``SELECT 1``; ``NOT_SERVING`` while the database cannot be
  reached, so the Service sends no RPC to a replica that would answer ``UNAVAILABLE``.

``k8s/deployment.yaml`` probes those three services with the kubelet's ``grpc:`` probes.

On SIGTERM or SIGINT (:mod:`healthprobe.servers.grpc`): readiness answers ``NOT_SERVING`` at
once while liveness stays ``SERVING``; the server serves on for ``SHUTDOWN_DELAY`` seconds;
then it stops accepting, lets the RPCs in flight finish (``DRAIN_TIMEOUT``), closes the
database pool (the cleanup hook, ``HOOK_TIMEOUT``) and exits 0. The settings are node_demo's,
with the same names and defaults (``HOST``, ``STARTUP_DELAY``, ``SHUTDOWN_DELAY``,
``DRAIN_TIMEOUT``, ``HOOK_TIMEOUT``, ``GRACE_PERIOD``), ``GRPC_PORT`` instead of ``PORT``,
and ``DATABASE_URL``; see :class:`~examples.grpc_demo.service.Settings` and ``README.md``.

``keyvalue_pb2.py``, ``keyvalue_pb2.pyi`` and ``keyvalue_pb2_grpc.py`` are generated from
``keyvalue.proto`` by grpcio-tools 1.85.4 (the ``dev`` extra) and checked in; regenerate
them after changing the ``.proto``, from the repository root::

    python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. \\
        examples/grpc_demo/keyvalue.proto

They need grpcio >= 1.85.4 and protobuf >= 7.35.1 (the versions that generated them say
so when imported); with older ones installed, regenerate them with the grpcio-tools that
matches.
"""
