"""Apps the shutdown tests start as real server processes."""

from __future__ import annotations

import logging
import os
import time

from healthprobe import HealthRegistry
from healthprobe.shutdown import REPEAT_WINDOW, GracefulShutdown


def show_logs() -> None:
    """Log each process's lines with its pid (the coordinator's from DEBUG on)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
    # "shutdown: handlers installed in process N": the tests' sign that a worker is ready.
    logging.getLogger("healthprobe.shutdown").setLevel(logging.DEBUG)


def bounds() -> dict[str, float]:
    """The shutdown bounds of a test app, in seconds, as ``GracefulShutdown``'s keyword
    arguments: from ``HP_DELAY``, ``HP_DRAIN``, ``HP_HOOK_TIMEOUT`` and ``HP_REPEAT_WINDOW``."""
    return {
        "delay": float(os.environ.get("HP_DELAY", "1.0")),
        "drain_timeout": float(os.environ.get("HP_DRAIN", "4.0")),
        "hook_timeout": float(os.environ.get("HP_HOOK_TIMEOUT", "1.0")),
        "repeat_window": repeat_window(),
    }


def coordinator(registry: HealthRegistry) -> GracefulShutdown:
    """The coordinator of a test app, its bounds from :func:`bounds`, with :func:`show_logs`."""
    show_logs()
    return GracefulShutdown(registry, **bounds())


def repeat_window() -> float:
    """``HP_REPEAT_WINDOW`` in seconds, else the default :data:`REPEAT_WINDOW`."""
    return float(os.environ.get("HP_REPEAT_WINDOW", REPEAT_WINDOW))


def add_cleanup_sleep(shutdown: GracefulShutdown) -> None:
    """Give ``shutdown`` the tests' ``cleanup_sleep`` hook: it prints ``cleanup_sleep start
    <pid> <time>``, sleeps 0.5 s, then prints ``cleanup_sleep done in <pid>``."""

    def cleanup_sleep() -> None:
        print(f"cleanup_sleep start {os.getpid()} {time.time():.3f}", flush=True)
        time.sleep(0.5)
        print(f"cleanup_sleep done in {os.getpid()}", flush=True)

    shutdown.add_hook(cleanup_sleep)
