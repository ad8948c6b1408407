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
from types import FrameType

import healthprobe
from healthprobe import checks

log = logging.getLogger("worker")


def produce(jobs: queue.Queue[int], stop: threading.Event, period: float) -> None:
    """Stand-in for a broker: put a numbered job on the queue every ``period`` seconds."""
    number = 0
    while not stop.wait(period):
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

    stopping = threading.Event()
    wedge = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: finishing the current job, then exiting", signum)
        registry.begin_drain()
        stopping.set()

    def on_usr1(signum: int, frame: FrameType | None) -> None:
        log.warning("SIGUSR1: the next job will hang forever")
        wedge.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGUSR1, on_usr1)

    jobs: queue.Queue[int] = queue.Queue()
    producer = threading.Thread(target=produce, args=(jobs, stopping, 0.2), daemon=True)
    producer.start()
    registry.mark_started()

    done = 0
    while not stopping.is_set():
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
    registry.mark_stopped()
    log.info("stopped after %d jobs", done)
    return 0


if __name__ == "__main__":
    sys.exit(main())
