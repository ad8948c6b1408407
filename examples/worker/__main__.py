"""Entry point of the queue-consumer example; see the package docstring."""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from types import FrameType

import healthprobe
from examples.settings import seconds
from healthprobe import checks
from healthprobe.shutdown import GracefulShutdown

log = logging.getLogger("worker")

#: Exit code for a malformed setting or a probe address that cannot be bound (as node_demo).
EXIT_SETTINGS = 2


@dataclasses.dataclass(frozen=True)
class Settings:
    """The worker's settings (see the package docstring for their meaning and defaults)."""

    probe_host: str = "0.0.0.0"
    probe_port: int = 8081
    max_interval: float = 5.0
    job_seconds: float = 0.1

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read ``PROBE_HOST``, ``PROBE_PORT``, ``WORKER_MAX_INTERVAL`` and ``JOB_SECONDS``
        from ``environ`` (default ``os.environ``); an empty value counts as unset.

        Raises:
            ValueError: with a one-line reason when a value is malformed: a port outside
                0-65535, a ``WORKER_MAX_INTERVAL`` not > 0, a ``JOB_SECONDS`` not >= 0.
        """
        env = os.environ if environ is None else environ
        raw_port = env.get("PROBE_PORT", "").strip() or str(cls.probe_port)
        if not raw_port.isdigit() or int(raw_port) > 65535:
            raise ValueError(f"PROBE_PORT must be a TCP port number from 0 to 65535, got {raw_port!r}")
        max_interval = seconds(env, "WORKER_MAX_INTERVAL", cls.max_interval)
        if max_interval == 0:
            raise ValueError("WORKER_MAX_INTERVAL must be a number of seconds > 0, got '0'")
        return cls(
            probe_host=env.get("PROBE_HOST", "").strip() or cls.probe_host,
            probe_port=int(raw_port),
            max_interval=max_interval,
            job_seconds=seconds(env, "JOB_SECONDS", cls.job_seconds),
        )


def produce(jobs: queue.Queue[int], stopping: Callable[[float], bool], period: float) -> None:
    """Stand-in for a broker: put a numbered job on the queue every ``period`` seconds
    until ``stopping(period)`` (which waits up to ``period`` seconds) returns ``True``."""
    number = 0
    while not stopping(period):
        number += 1
        jobs.put(number)


def main() -> int:
    """Run the worker until shutdown; return the exit code: 0 after a clean shutdown, 2
    (:data:`EXIT_SETTINGS`) on a malformed setting or a probe address that cannot be
    bound, each logged on one line."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        log.error("%s", exc)
        return EXIT_SETTINGS
    max_interval, job_seconds = settings.max_interval, settings.job_seconds

    registry = healthprobe.HealthRegistry()
    beat = checks.heartbeat(max_interval)
    registry.add_check("worker", beat, probes=["liveness"])
    registry.add_check("memory", checks.memory(max_fraction=0.9), probes=["liveness"], critical=False)
    registry.add_check("disk", checks.disk(tempfile.gettempdir(), min_free_ratio=0.01), probes=["readiness"])
    # No load balancer sends work to a worker, so there is nothing to wait for after the
    # signal: no delay, even inside a pod. SIGTERM and SIGINT fail readiness and end the loop.
    shutdown = GracefulShutdown(registry, delay=0.0)
    try:
        # Probes and metrics on one port; the server stops when the registry stops. The
        # coordinator feeds healthprobe_in_flight_requests (the job being worked on) and
        # healthprobe_shutdown_phase.
        server = healthprobe.serve(registry, settings.probe_host, settings.probe_port, metrics=True, shutdown=shutdown)
    except OSError as exc:
        reason = " ".join(str(exc).split())
        log.error("cannot serve probes on %s:%d (PROBE_HOST, PROBE_PORT): %s", *_address(settings), reason)
        return EXIT_SETTINGS
    log.info("probes on %s (liveness /livez, readiness /readyz), metrics on %s", server.url, server.metrics_url)
    jobs: queue.Queue[int] = queue.Queue()

    @shutdown.hook
    def release_jobs() -> None:
        """Stand-in for handing unacknowledged messages back to the broker."""
        left = jobs.qsize()
        log.info("%d job(s) left on the queue for another worker", left)

    shutdown.install()
    wedge = threading.Event()

    def on_usr1(signum: int, frame: FrameType | None) -> None:
        log.warning("SIGUSR1: the next job will hang forever")
        wedge.set()

    signal.signal(signal.SIGUSR1, on_usr1)

    producer = threading.Thread(target=produce, args=(jobs, shutdown.wait, 0.2), daemon=True)
    producer.start()
    registry.mark_started()

    done = 0
    while not shutdown.is_draining:  # the current job finishes before the loop ends
        beat.beat()
        try:
            job = jobs.get(timeout=min(1.0, max_interval / 2))  # bounded: an idle loop still beats
        except queue.Empty:
            continue
        shutdown.request_started()  # counted in flight: the drain waits for it, the metrics show it
        try:
            if wedge.is_set():
                log.warning("job %d: stuck", job)
                threading.Event().wait()  # never set: the worker is wedged
            time.sleep(job_seconds)  # the work
        finally:
            shutdown.request_finished()
        done += 1
    log.info("stopped after %d jobs", done)
    # Runs the cleanup hook and marks the registry stopped, which stops the probe server.
    return shutdown.finish()


def _address(settings: Settings) -> tuple[str, int]:
    host = f"[{settings.probe_host}]" if ":" in settings.probe_host else settings.probe_host
    return host, settings.probe_port


if __name__ == "__main__":
    sys.exit(main())
