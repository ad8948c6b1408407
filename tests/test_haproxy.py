"""Zero request loss behind a real load balancer: a rolling restart through HAProxy.

Each row restarts both instances of an app in turn behind HAProxy under continuous load
(tests/haproxy.py). A row that shuts down gracefully owes: no failed request (any non-2xx
answer, HAProxy's own 502/503/504 included, any connection error or timeout), no failed
WebSocket session, exit code 0 for every instance, each stop within delay + longest request
+ hooks + 1 s (far below the 10 s drain bound), and enough traffic to mean anything. The
control row, without a delay, must lose requests: it proves that the test can fail.
``python -m tests.haproxy`` prints the same figures as a markdown table.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .haproxy import CONTROL, ROWS, haproxy_binary, problems, rollout
from .support import require_binary

pytestmark = pytest.mark.slow


@pytest.fixture
def haproxy() -> str:
    """The haproxy binary; the test is skipped without it (fails under HEALTHPROBE_REQUIRE_SERVICES=1)."""
    return haproxy_binary() or require_binary("haproxy", "haproxy")


@pytest.mark.parametrize("name", list(ROWS))
def test_rolling_restart_behind_haproxy_loses_nothing(name: str, haproxy: str, tmp_path: Path) -> None:
    result = rollout(name, ROWS[name], tmp_path, haproxy)
    print(result.summary())
    found = problems(result, ROWS[name])
    assert not found, "\n".join([result.summary(), *found, result.details])


@pytest.mark.parametrize("name", list(CONTROL))
def test_control_without_delay_loses_requests(name: str, haproxy: str, tmp_path: Path) -> None:
    """Without a delay the instance stops accepting while HAProxy still routes to it: HAProxy
    answers those requests with 503. If this passed with no failure, the rows above would
    prove nothing."""
    result = rollout(name, CONTROL[name], tmp_path, haproxy)
    print(result.summary())
    assert result.failed > 0, "\n".join([result.summary(), result.details])
    found = problems(result, CONTROL[name])
    assert not found, "\n".join([result.summary(), *found, result.details])
