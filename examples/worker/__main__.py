"""Entry point of the queue-consumer example; see the package docstring."""

from __future__ import annotations

import logging
import os
import queue
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from types import FrameType

import healthprobe
from healthprobe import checks
from healthprobe.shutdown import GracefulShutdown

log = logging.getLogger("worker")


def produce(jobs: queue.Queue[int], stopping: Callable[[float], bool], period: float) -> None:
    """Stand-in for a broker: put a numbered job on the queue every ``period`` seconds
    until ``stopping(period)`` (which waits up to ``period`` seconds) returns ``True``."""
    number = 0
    while not stopping(period):
        number += 1
        jobs.put(number)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    host = os.environ.get("PROBE_HOST", "0.0.0.0")
    port = int(os.environ.get("PROBE_PORT", "8081"))
    max_interval = float(os.environ.get("WORKER_MAX_INTERVAL", "5"))
    job_seconds = float(os.environ.get("JOB_SECONDS", "0.1"))

    registry = healthprobe.HealthRegistry()
    beat = checks.heartbeat(max_interval)
    registry.add_check("worker", beat, probes=["liveness"])
    registry.add_check("memory", checks.memory(max_fraction=0.9), probes=["liveness"], critical=False)
    registry.add_check("disk", checks.disk(tempfile.gettempdir(), min_free_ratio=0.01), probes=["readiness"])
    server = healthprobe.serve(registry, host, port)  # stops itself when the registry stops
    log.info("probes on %s (liveness /livez, readiness /readyz)", server.url)

    # No load balancer sends work to a worker, so there is nothing to wait for after the
    # signal: no delay, even inside a pod. SIGTERM and SIGINT fail readiness and end the loop.
    shutdown = GracefulShutdown(registry, delay=0.0)
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
        if wedge.is_set():
            log.warning("job %d: stuck", job)
            threading.Event().wait()  # never set: the worker is wedged
        time.sleep(job_seconds)  # the work
        done += 1
    log.info("stopped after %d jobs", done)
    # Runs the cleanup hook and marks the registry stopped, which stops the probe server.
    return shutdown.finish()


if __name__ == "__main__":
    sys.exit(main())
