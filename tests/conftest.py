"""Fixtures that several test files use. Plain helpers are in ``tests/support.py``."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from .support import POSTGRES, REDIS, require_service


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """An event that hanging checks wait on; set at teardown so no thread outlives its test."""
    event = threading.Event()
    yield event
    event.set()


@pytest.fixture(scope="session")
def postgres_up() -> None:
    """The machine's PostgreSQL (:data:`tests.support.POSTGRES`) accepts connections: the test
    is skipped otherwise (failed under ``HEALTHPROBE_REQUIRE_SERVICES=1``)."""
    require_service(*POSTGRES, "PostgreSQL")


@pytest.fixture(scope="session")
def redis_up() -> None:
    """The machine's Redis (:data:`tests.support.REDIS`) accepts connections: the test is
    skipped otherwise (failed under ``HEALTHPROBE_REQUIRE_SERVICES=1``)."""
    require_service(*REDIS, "Redis")
