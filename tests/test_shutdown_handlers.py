"""The application's own signal handler, and a serving task that is cancelled.

Each case runs a real server in a process of its own: signal handlers and event loops are
per process.
"""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from .support import ROOT, free_port

pytestmark = pytest.mark.slow

#: A Starlette app under uvicorn, with an application handler for SIGTERM installed at
#: import (as engines that flush state do), before the coordinator and before uvicorn.
#: argv: port, how the server is started, whether the app has a handler of its own.
APP_HANDLER = """
import logging, os, signal, socket, sys, threading, time

import uvicorn
from starlette.applications import Starlette

from healthprobe import HealthRegistry
from healthprobe.asgi import HealthMiddleware
from healthprobe.shutdown import GracefulShutdown

logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s %(levelname)s %(message)s")
port, how, own = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "own"
registry = HealthRegistry()
registry.mark_started()


def flush(signum, frame):
    print(f"flush {signum} {registry.lifecycle.value}", flush=True)


if own:
    signal.signal(signal.SIGTERM, flush)
shutdown = GracefulShutdown(registry, delay=0.3, drain_timeout=1, hook_timeout=1)
app = HealthMiddleware(Starlette(), registry, shutdown=shutdown)
config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", log_level="warning")


def signal_once_serving():
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.02)
    time.sleep(0.2)
    os.kill(os.getpid(), signal.SIGTERM)


threading.Thread(target=signal_once_serving, daemon=True).start()
if how == "install-first":
    shutdown.install()  # before uvicorn installs its own handlers
    uvicorn.Server(config).run()
elif how == "uvicorn":
    uvicorn.Server(config).run()  # the middleware installs the coordinator at lifespan startup
else:
    import healthprobe.servers.uvicorn

    healthprobe.servers.uvicorn.run(config, shutdown)
handler = signal.getsignal(signal.SIGTERM)
owner = type(getattr(handler, "__self__", None)).__name__
print("returned", {flush: "app", signal.SIG_DFL: "default"}.get(handler, owner), flush=True)
signal.raise_signal(signal.SIGTERM)  # a later SIGTERM: to the app's handler, or the default action
print("after the second SIGTERM", flush=True)
"""


@pytest.mark.parametrize("how", ["install-first", "uvicorn", "healthprobe"])
@pytest.mark.parametrize("own", [True, False], ids=["app-handler", "no-handler"])
def test_the_applications_handler_is_called_once_then_restored(how: str, own: bool) -> None:
    """The handler the application installed before the coordinator is called once, after
    readiness failed, and gets the signals that come once the server returned, whatever the
    install order; without one, a SIGTERM after the server returned has its default action
    (the process ends), never silently ignored."""
    proc = subprocess.run(
        [sys.executable, "-c", APP_HANDLER, str(free_port()), how, "own" if own else "none"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = proc.stdout + proc.stderr
    assert "shutdown: stopped" in output, output
    lines = output.splitlines()
    flushes = [line for line in lines if line.startswith("flush")]
    returned = lines.index(next(line for line in lines if line.startswith("returned")))
    if own:
        # Once during the shutdown, with readiness already failing; once more for the
        # SIGTERM that came after the server returned.
        assert [line for line in lines[:returned] if line.startswith("flush")] == [f"flush {signal.SIGTERM} draining"]
        assert len(flushes) == 2, output
        assert proc.returncode == 0, output
        assert "after the second SIGTERM" in output
    else:
        assert flushes == [], output
        assert proc.returncode == -signal.SIGTERM, output  # the default action of SIGTERM
        assert "after the second SIGTERM" not in output
    # In place once the server returned: what the application had. Installed before
    # uvicorn, the coordinator's handler is what uvicorn restores when it returns (it saved
    # it as the one it found); it then passes every signal on to the application's handler,
    # or to the default action, as checked above.
    expected = "GracefulShutdown" if how == "install-first" else ("app" if own else "default")
    assert lines[returned] == f"returned {expected}", output


#: An embedding program that cancels the task serving the app (what frameworks do on
#: Ctrl-C): the cleanup hooks must still run. argv: port, server.
CANCELLED = """
import logging, socket, sys, time

import anyio
from starlette.applications import Starlette

from healthprobe import HealthRegistry
from healthprobe.asgi import HealthMiddleware
from healthprobe.shutdown import GracefulShutdown

logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s %(levelname)s %(message)s")
port, server = int(sys.argv[1]), sys.argv[2]
registry = HealthRegistry()
registry.mark_started()
shutdown = GracefulShutdown(registry, delay=0, drain_timeout=1, hook_timeout=2)
app = HealthMiddleware(Starlette(), registry, shutdown=shutdown)


@shutdown.hook
async def close_pool():
    await anyio.sleep(0.5)
    print("hook done", flush=True)


async def serve():
    if server == "uvicorn":
        import uvicorn

        import healthprobe.servers.uvicorn

        await healthprobe.servers.uvicorn.serve(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"), shutdown
        )
    else:
        from hypercorn.config import Config

        import healthprobe.servers.hypercorn

        config = Config()
        config.bind = [f"127.0.0.1:{port}"]
        await healthprobe.servers.hypercorn.serve(app, config, shutdown)


async def main():
    async with anyio.create_task_group() as group:
        group.start_soon(serve)
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                await anyio.sleep(0.02)
        print("serving", flush=True)
        group.cancel_scope.cancel()
    print("cancelled", flush=True)


anyio.run(main, backend="trio" if server == "hypercorn-trio" else "asyncio")
"""


@pytest.mark.parametrize("server", ["uvicorn", "hypercorn", "hypercorn-trio"])
def test_cleanup_hooks_run_when_the_serving_task_is_cancelled(server: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CANCELLED, str(free_port()), server],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    lines = output.splitlines()
    assert "serving" in lines and "hook done" in lines and "cancelled" in lines, output
    assert lines.index("hook done") < lines.index("cancelled"), output
    assert "shutdown: stopped" in output, output
