"""Zero request loss behind a real load balancer: a rolling restart through HAProxy.

Each row restarts both instances of an app in turn behind HAProxy under continuous load
(tests/haproxy.py). A row that shuts down gracefully owes: no failed request (any non-2xx
answer, HAProxy's own 502/503/504 included, any connection error or timeout), no failed
WebSocket session, exit code 0 for every instance, each stop within delay + longest request
+ hooks + 1 s (far below the 10 s drain bound), and enough traffic to mean anything. The
control row, without a delay, must lose requests: it proves that the test can fail.
The node demo's disable file (``DISABLE_FILE``) takes one of the two instances out of
rotation and back under the same load, with no failed request.
``python -m tests.haproxy`` prints the same figures as a markdown table.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .haproxy import CONTROL, ROWS, haproxy_binary, out_of_rotation, problems, rollout
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


@pytest.mark.parametrize("name", ["node-demo-asgi", "node-demo-wsgi"])
def test_disable_file_takes_an_instance_out_of_rotation_and_back_losing_nothing(
    name: str, haproxy: str, tmp_path: Path
) -> None:
    """The file appears: HAProxy's readiness checks fail and it stops sending requests to the
    instance, which keeps serving and living; the file goes: the instance is UP and served
    again. No request fails on the way out or back."""
    result = out_of_rotation(name, ROWS[name], tmp_path, haproxy)
    print(result.summary())
    message = "\n".join([result.summary(), result.details])
    assert result.failed == 0, message
    assert result.sent_while_out == 0, message
    assert result.sent_after > 0, message
    # HAProxy checks every 200 ms and needs two failures (fall 2), one success (rise 1).
    assert result.down_after < 1.5 and result.up_after < 1.0, message
