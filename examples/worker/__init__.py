"""A queue consumer with Kubernetes probes: ``python -m examples.worker``.

A worker has no web server, so it serves its probes with :func:`healthprobe.serve` on a port
of their own (``PROBE_PORT``, 8081), its Prometheus metrics on ``/metrics`` of the same port
(``metrics=True``, with the shutdown coordinator: ``healthprobe_in_flight_requests`` counts
the job being worked on, ``healthprobe_shutdown_phase`` shows the phase), and proves its loop
is making progress with a :func:`healthprobe.checks.heartbeat` that each iteration beats:

* ``/livez`` (and ``/healthz``) fails once the loop has not beaten for ``WORKER_MAX_INTERVAL``
  seconds (5 by default): a wedged worker gets restarted by the kubelet.
* ``/readyz`` fails until the worker has started, and from the first ``SIGTERM`` on.
* ``SIGUSR1`` wedges the next job forever (a stand-in for a deadlock), to watch liveness fail.
* ``SIGTERM``/``SIGINT``: handled by :class:`healthprobe.shutdown.GracefulShutdown` (no
  delay: no load balancer sends work to a worker). Readiness fails at once, the loop
  (``while not shutdown.is_draining``) stops taking jobs and finishes the current one, then
  ``shutdown.finish()`` runs the cleanup hook, marks the registry ``stopped`` (which stops
  the probe server) and returns 0. A second signal, more than a second after the first,
  exits at once with ``128 + signal``.
  A wedged job never lets the loop end: then SIGTERM fails readiness but the worker does
  not exit 0 (see docs/probe-server.md).

Jobs come from an in-process queue that a producer thread fills, standing in for a broker.
Environment: ``PROBE_HOST`` (``0.0.0.0``), ``PROBE_PORT`` (8081), ``WORKER_MAX_INTERVAL``
(seconds, 5), ``JOB_SECONDS`` (seconds each job takes, 0.1). A malformed value, or a probe
address that cannot be bound, is reported on one line and the worker exits 2.
"""
