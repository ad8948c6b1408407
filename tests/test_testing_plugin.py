"""healthprobe.testing, the pytest plugin, as a user meets it: each test writes a user's test
files (and app) into a fresh directory and runs pytest on them in a new process, where the
plugin is loaded from its ``pytest11`` entry point and nothing else of this project's test
suite is; real servers on loopback ports, no mocks."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from healthprobe import testing
from healthprobe.testing import SERVERS, server_command

from .support import ROOT

pytest_plugins = ["pytester"]

#: A user's apps: ``asgi_app:app`` (uvicorn, hypercorn) and ``wsgi_app:app`` (the others),
#: each answering ``hello <pid>``; ``loud:app`` writes a line when imported.
APPS = {
    "asgi_app.py": """
        import os

        async def app(scope, receive, send):
            if scope["type"] == "lifespan":
                while (await receive())["type"] != "lifespan.shutdown":
                    await send({"type": "lifespan.startup.complete"})
                await send({"type": "lifespan.shutdown.complete"})
                return
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": f"hello {os.getpid()}".encode()})
        """,
    "wsgi_app.py": """
        import os

        def app(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [f"hello {os.getpid()}".encode()]
        """,
    "loud.py": """
        import sys

        print("loud app: imported, listening soon", file=sys.stderr, flush=True)
        from wsgi_app import app
        """,
}

#: A manifest whose probes name the container's port by name (readiness) and by number
#: (liveness): both must reach the app's local port.
MANIFEST = """
    apiVersion: v1
    kind: Pod
    metadata:
      name: web
    spec:
      terminationGracePeriodSeconds: 10
      containers:
      - name: app
        ports:
        - name: http
          containerPort: 8080
        readinessProbe:
          httpGet:
            path: /
            port: http
          periodSeconds: 1
        livenessProbe:
          tcpSocket:
            port: 8080
          periodSeconds: 1
    """


def run_user_tests(pytester: pytest.Pytester, tests: str, *args: str) -> pytest.RunResult:
    """Write the apps, the manifest and ``tests`` as ``test_user.py``, and run pytest on them
    in a new process (``-p no:cacheprovider``; the plugin comes from its entry point)."""
    for name, text in APPS.items():
        pytester.path.joinpath(name).write_text(textwrap.dedent(text))
    pytester.path.joinpath("pod.yaml").write_text(textwrap.dedent(MANIFEST))
    pytester.makepyfile(test_user=textwrap.dedent(tests))
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly", *args, timeout=120)


@pytest.mark.slow
def test_the_plugin_loads_from_its_entry_point(pytester: pytest.Pytester) -> None:
    tests = """
        import healthprobe.testing

        def test_registered(request):
            assert request.config.pluginmanager.get_plugin("healthprobe") is healthprobe.testing

        def test_fixtures(app_server, kubelet, rollout):
            assert callable(app_server) and callable(kubelet) and callable(rollout)
        """
    result = run_user_tests(pytester, tests)
    result.assert_outcomes(passed=2)
    # Without the entry point's plugin, its fixtures are unknown.
    blocked = pytester.runpytest_subprocess("-p", "no:healthprobe", "-p", "no:cacheprovider", timeout=120)
    blocked.assert_outcomes(passed=0, failed=1, errors=1)
    assert "fixture 'app_server' not found" in blocked.stdout.str()


@pytest.mark.slow
def test_app_server_serves_under_every_server_and_stops_at_teardown(pytester: pytest.Pytester) -> None:
    tests = """
        import subprocess, sys

        import httpx
        import pytest

        APPS = {"uvicorn": "asgi_app:app", "hypercorn": "asgi_app:app"}
        PIDS = []

        @pytest.mark.parametrize("server", ["uvicorn", "hypercorn", "gunicorn", "waitress", "werkzeug"])
        def test_serves(app_server, server):
            started = app_server(APPS.get(server, "wsgi_app:app"), server=server)
            answer = httpx.get(started.url + "/")
            assert answer.status_code == 200 and answer.text.startswith("hello ")
            assert started.url == f"http://127.0.0.1:{started.port}" and started.process.poll() is None
            assert str(started.port) in " ".join(started.command)
            PIDS.append(started.process)

        def test_each_was_stopped():
            assert len(PIDS) == 5 and all(process.poll() is not None for process in PIDS)

        def test_a_command_with_placeholders(app_server):
            started = app_server(command="python -m http.server {port} --bind {host}", env={"WHERE": "{host}:{port}"})
            assert httpx.get(started.url + "/").status_code == 200
            assert started.command[0] == sys.executable

        def test_a_server_that_exits_before_listening(app_server):
            with pytest.raises(RuntimeError, match="exited with 3 before listening:\\n.*boom"):
                app_server(command=[sys.executable, "-c", "print('boom'); raise SystemExit(3)"])
        """
    run_user_tests(pytester, tests, "-v").assert_outcomes(passed=8)


@pytest.mark.slow
def test_a_failed_test_shows_the_server_output(pytester: pytest.Pytester) -> None:
    tests = """
        def test_fails(app_server):
            app_server("loud:app", server="waitress")
            assert False, "the user's assertion"

        def test_passes(app_server):
            app_server("loud:app", server="waitress")
        """
    result = run_user_tests(pytester, tests)
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert out.count("Captured output of app server 1 (http://127.0.0.1:") == 1, out
    assert out.count("loud app: imported, listening soon") == 1, out


@pytest.mark.slow
def test_kubelet_probes_an_app_server_and_a_command(pytester: pytest.Pytester) -> None:
    tests = """
        def test_app_server(app_server, kubelet):
            server = app_server("wsgi_app:app", server="waitress")
            simulation = kubelet("pod.yaml", server, speed=5, verbose=True)
            assert simulation.port_map == {"http": server.port, "8080": server.port}
            outcome = simulation.run(duration=3)
            assert [e.event for e in outcome.of("Ready")] == ["Ready"] and not outcome.killed
            assert {e.probe for e in outcome.of("Probed")} == {"readiness", "liveness"}
            assert all(e.result == "success" for e in outcome.of("Probed"))

        def test_command_deleted(kubelet):
            simulation = kubelet(
                "pod.yaml", cmd="python -m waitress --listen=127.0.0.1:{port} wsgi_app:app", speed=5
            ).start()
            simulation.wait_for("Ready", timeout=20)
            assert simulation.ready and simulation.process.poll() is None
            simulation.terminate()
            outcome = simulation.wait(10)
            assert outcome.exited_in_time is True and outcome.terminated_at is not None

        def test_never_started(kubelet):
            kubelet("pod.yaml", 1)

        def test_left_running(kubelet):
            kubelet("pod.yaml", cmd="python -m http.server {port} --bind 127.0.0.1", speed=5).start()
        """
    run_user_tests(pytester, tests).assert_outcomes(passed=4)


#: Makes PyYAML and httpx unimportable before pytest starts, then runs pytest on argv[1:].
WITHOUT_EXTRAS = """
import sys

class NotInstalled:
    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] in ("yaml", "httpx"):
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None

sys.meta_path.insert(0, NotInstalled())
import pytest
sys.exit(pytest.main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_the_plugin_loads_without_its_extras_and_names_them_when_used(tmp_path: Path) -> None:
    (tmp_path / "test_user.py").write_text(
        textwrap.dedent(
            """
            import pytest
            from healthprobe._extras import MissingExtraError
            from healthprobe.kubelet import Container, Probe, TCPSocketAction

            POD = Container("app", {"readiness": Probe("readiness", TCPSocketAction(8080))})

            def test_unrelated():
                assert True

            def test_rollout(rollout):
                with pytest.raises(MissingExtraError, match=r"pip install 'healthprobe\\[testing\\]'"):
                    rollout(POD, "python -m app")

            def test_load_container(kubelet):
                with pytest.raises(MissingExtraError, match=r"needs pyyaml: pip install 'healthprobe\\[testing\\]'"):
                    kubelet("kind: Pod\\n", 8080)
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRAS, "-W", "error", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout and "warning" not in done.stdout.lower(), done.stdout


def test_server_command_places_the_address_and_the_arguments() -> None:
    python = sys.executable
    assert server_command("m:app", "uvicorn", 81, args=["--workers", "2"]) == [
        *(python, "-m", "uvicorn", "m:app", "--host", "127.0.0.1", "--port", "81", "--workers", "2")
    ]
    assert server_command("m:app", "gunicorn", 81, host="::1", args=["-w", "2"]) == [
        *(python, "-m", "gunicorn", "--bind", "[::1]:81", "-w", "2", "m:app")
    ]
    assert server_command("m:app", "waitress", 81)[-2:] == ["--listen=127.0.0.1:81", "m:app"]
    assert server_command("m:app", "hypercorn", 81)[-2:] == ["--bind", "127.0.0.1:81"]
    assert server_command("m:app", "werkzeug", 81)[-3:] == ["m:app", "127.0.0.1", "81"]
    assert set(SERVERS) == {"uvicorn", "hypercorn", "gunicorn", "waitress", "werkzeug"}
    with pytest.raises(ValueError, match="no command for server 'daphne'"):
        server_command("m:app", "daphne")


def test_the_manifest_is_a_path_text_or_container() -> None:
    path = ROOT / "examples" / "node_demo" / "k8s" / "deployment.yaml"
    by_path = testing.load_container(path)
    assert testing.load_container(str(path)) == by_path == testing.load_container(path.read_text())
    assert testing.load_container(by_path) is by_path
    assert (by_path.label, by_path.ports, by_path.termination_grace_period_seconds) == (
        "node-demo/node-demo",
        {"http": 8080},
        35,
    )
    with pytest.raises(FileNotFoundError):
        testing.load_container("k8s/missing.yaml")


@pytest.mark.slow
def test_sigterm_to_the_session_stops_what_the_fixtures_started(pytester: pytest.Pytester) -> None:
    """A CI job's timeout sends SIGTERM to pytest: the session ends as on Ctrl-C, running the
    teardowns, and no server process (gunicorn's master or its worker) is left running."""
    import signal
    import sys
    import time

    for name, text in APPS.items():
        pytester.path.joinpath(name).write_text(textwrap.dedent(text))
    pids = pytester.path / "pids"
    pytester.makepyfile(
        test_user=textwrap.dedent(
            f"""
            import time, httpx

            def test_waits(app_server):
                server = app_server("wsgi_app:app", server="gunicorn")
                worker = httpx.get(server.url).text.split()[1]
                open({str(pids)!r}, "w").write(f"{{server.process.pid}} {{worker}}")
                time.sleep(600)
            """
        )
    )
    session = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "test_user.py"],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not (pids.exists() and pids.read_text().count(" ") == 1):
            assert time.monotonic() < deadline and session.poll() is None, session.stdout
            time.sleep(0.05)
        session.send_signal(signal.SIGTERM)
        output = session.communicate(timeout=60)[0].decode()
    finally:
        if session.poll() is None:
            session.kill()
    assert session.returncode == 2, output  # pytest's "interrupted"
    assert "KeyboardInterrupt" in output
    for pid in map(int, pids.read_text().split()):
        deadline = time.monotonic() + 10
        while _alive(pid):
            assert time.monotonic() < deadline, f"process {pid} is still running"
            time.sleep(0.05)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its parent to reap it does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")
