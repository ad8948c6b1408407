"""A rolling update of examples/node_demo (ASGI flavour) loses no request, measured with
healthprobe's pytest plugin as a user would measure their own app: the Deployment's probes
and grace period (examples/node_demo/k8s/deployment.yaml) under the kubelet simulator, load
through a list of endpoints that drops the old pod ``lag`` seconds after its deletion. The
control, with no shutdown delay, loses requests: the measurement can fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from healthprobe.testing import RolloutFactory

from .support import ROOT

MANIFEST = ROOT / "examples" / "node_demo" / "k8s" / "deployment.yaml"
COMMAND = "python -m examples.node_demo.asgi_app"
#: Seconds from the deletion to the endpoint's removal: short, to keep the test short.
LAG = 0.5


def demo_env(tmp_path: Path, shutdown_delay: float) -> dict[str, str]:
    """Each replica on its own port and healthy file; no warm-up (the manifest says 5 s)."""
    return {
        "HOST": "127.0.0.1",
        "PORT": "{port}",
        "HEALTHY_FILE": str(tmp_path / "healthy-{replica}"),
        "STARTUP_DELAY": "0",
        "SHUTDOWN_DELAY": str(shutdown_delay),
    }


@pytest.mark.slow
def test_a_rollout_of_the_demo_loses_nothing(rollout: RolloutFactory, tmp_path: Path) -> None:
    # The delay covers the lag with a margin; speed 4 shortens the probes' periods and the
    # grace period (35 s: 8.75 s here), not the demo's own delay.
    result = rollout(MANIFEST, COMMAND, env=demo_env(tmp_path, LAG + 0.5), lag=LAG, speed=4, cwd=ROOT)
    assert result.failed == 0, result.report()
    assert result.exit_code == 0 and result.exited_in_time, result.report()
    assert result.sent["old"] > 20 and result.sent["new"] > 20, result.report()
    steps = [step for _, step in result.timeline]
    order = [steps.index(step) for step in ("new endpoint added", "old deleted", "old endpoint removed")]
    assert order == sorted(order), result.report()
    assert any(e.event == "NotReady" for e in result.old_events), result.report()  # /readyz failed during the delay


@pytest.mark.slow
def test_without_a_shutdown_delay_a_rollout_loses_requests(rollout: RolloutFactory, tmp_path: Path) -> None:
    result = rollout(MANIFEST, COMMAND, env=demo_env(tmp_path, 0), lag=1.0, speed=4, cwd=ROOT)
    assert result.failed > 0, result.report()
    assert all(failure.endpoint == "old" for failure in result.failures), result.report()
    assert result.exit_code == 0 and result.exited_in_time, result.report()  # it exits cleanly, too soon
