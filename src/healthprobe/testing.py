"""A pytest plugin: run your app under a real server, probe it as the kubelet does, and
measure what a rolling update of it loses, in your own test suite.

Installed with the package (entry point ``healthprobe`` in the ``pytest11`` group), so its
fixtures are there in every pytest session once ``pip install 'healthprobe[testing]'`` has
brought PyYAML, httpx and pytest::

    def test_a_rollout_loses_nothing(rollout):
        result = rollout("k8s/deployment.yaml", "python -m myapp", env={"PORT": "{port}"})
        assert result.failed == 0, result.report()

* :func:`app_server`: start ``"pkg.module:app"`` under uvicorn, hypercorn, gunicorn,
  waitress or Werkzeug (:func:`server_command`), or any command, on an ephemeral loopback
  port; waits until the port accepts connections; stopped at teardown (``SIGTERM``, then
  ``SIGKILL``), its output shown when the test failed.
* :func:`kubelet`: a :class:`~healthprobe.kubelet.Simulation` of a manifest's probes against
  that app, or against a command the simulator starts itself, the container's ports mapped
  to the app's local port.
* :func:`rollout`: the old replica deleted while load goes through a simulated list of
  endpoints that follows readiness and pod deletion after a propagation lag; returns a
  :class:`RolloutResult` with the failed requests.

Every function here can also be called without pytest's fixtures (:class:`AppServer`,
:func:`simulation`, :func:`run_rollout`). Importing this module imports neither PyYAML nor
httpx: what needs them imports them when called, and raises
:class:`~healthprobe._extras.MissingExtraError` (``pip install 'healthprobe[testing]'``)
when one is missing. Times are in seconds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import itertools
import os
import pathlib
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import typing

from . import _extras

with _extras.requires("testing", __name__):
    import pytest

if typing.TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence

    import httpx

    from .kubelet import Container, Event, Outcome, Simulation

__all__ = [
    "SERVERS",
    "AppServer",
    "AppServerFactory",
    "Failure",
    "KubeletFactory",
    "RolloutFactory",
    "RolloutResult",
    "app_server",
    "free_port",
    "kubelet",
    "load_container",
    "pytest_unconfigure",
    "rollout",
    "run_rollout",
    "server_command",
    "simulation",
    "wait_for_port",
]

#: The servers :func:`server_command` knows, each started as ``python -m <server>`` with this
#: interpreter (Werkzeug, which has no command line, through ``python -c``).
SERVERS = ("uvicorn", "hypercorn", "gunicorn", "waitress", "werkzeug")

#: Most characters of a process's output shown under a failed test (its end).
_SHOWN_OUTPUT = 64 * 1024

#: Werkzeug has no command line: ``make_server(host, port, app, threaded=True).serve_forever()``
#: for ``module:attribute`` given as ``argv[1]``, host and port as ``argv[2]`` and ``argv[3]``.
_WERKZEUG = (
    "import importlib, sys\n"
    "from werkzeug.serving import make_server\n"
    "module, _, name = sys.argv[1].partition(':')\n"
    "app = importlib.import_module(module)\n"
    "for part in (name or 'app').split('.'):\n"
    "    app = getattr(app, part)\n"
    "make_server(sys.argv[2], int(sys.argv[3]), app, threaded=True).serve_forever()\n"
)

#: Run ``argv[2:]`` in the directory ``argv[1]``, keeping the process id (``exec``), so that
#: signals sent to it reach the program itself.


# --- ports and processes -----------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port of ``host`` that was free a moment ago (the kernel's ephemeral choice).

    Returns:
        The port number; nothing holds it, so another process may take it before you do.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(
    port: int,
    *,
    host: str = "127.0.0.1",
    timeout: float = 30.0,
    process: subprocess.Popen[bytes] | None = None,
    output: Callable[[], str] | None = None,
) -> None:
    """Wait until something accepts TCP connections on ``host:port``, trying every 50 ms.

    Args:
        port: the TCP port.
        host: its address.
        timeout: seconds to wait at most.
        process: the process expected to listen; its exit ends the wait at once.
        output: what to add to the error's message (the process's output), called on failure;
            by default what ``process`` wrote to a pipe, if it did.

    Raises:
        RuntimeError: ``process`` exited before anything listened (the message has its exit
            code and ``output()``).
        TimeoutError: nothing listened within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            if output is not None:
                text = output()
            else:
                text = process.stdout.read().decode(errors="replace") if process.stdout else ""
            raise RuntimeError(f"server exited with {process.returncode} before listening:\n{text}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listened on {_address(host, port)} within {timeout} s:\n{output() if output else ''}")


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def server_command(
    app: str, server: str = "uvicorn", port: int = 8000, *, host: str = "127.0.0.1", args: Sequence[str] = ()
) -> list[str]:
    """The command line that serves ``app`` with ``server`` on ``host:port``, run by this
    interpreter (``sys.executable -m <server>``), as a user types it.

    The command of each server, ``args`` where they go:

    * uvicorn: ``python -m uvicorn APP --host HOST --port PORT ARGS``
    * hypercorn: ``python -m hypercorn APP --bind HOST:PORT ARGS``
    * gunicorn: ``python -m gunicorn --bind HOST:PORT ARGS APP``
    * waitress: ``python -m waitress --listen=HOST:PORT ARGS APP``
    * werkzeug: ``python -c ...``: ``make_server(HOST, PORT, app, threaded=True).serve_forever()``

    Werkzeug's ``serve_forever()`` has no graceful shutdown (healthprobe warns at the first request);
    for one, start your own program, which calls :func:`healthprobe.servers.werkzeug.serve`.

    Args:
        app: ``"package.module:attribute"`` (``attribute`` may be dotted; ``app`` by default).
        server: one of :data:`SERVERS`.
        port: the TCP port.
        host: the address to listen on.
        args: more arguments for the server (``["--workers", "2"]``).

    Returns:
        The argv, ready for :class:`AppServer` or :class:`~healthprobe.kubelet.Simulation`'s
        ``cmd``.

    Raises:
        ValueError: ``server`` is not one of :data:`SERVERS`.
    """
    python = sys.executable
    bind = _address(host, port)
    if server == "uvicorn":
        return [python, "-m", "uvicorn", app, "--host", host, "--port", str(port), *args]
    if server == "hypercorn":
        return [python, "-m", "hypercorn", app, "--bind", bind, *args]
    if server == "gunicorn":
        return [python, "-m", "gunicorn", "--bind", bind, *args, app]
    if server == "waitress":
        return [python, "-m", "waitress", f"--listen={bind}", *args, app]
    if server == "werkzeug":
        return [python, "-c", _WERKZEUG, app, host, str(port), *args]
    raise ValueError(f"no command for server {server!r}: expected one of {', '.join(SERVERS)}")


def _expand(text: str, fields: Mapping[str, str]) -> str:
    """``text`` with each ``{name}`` of ``fields`` replaced (no other brace is touched)."""
    for name, value in fields.items():
        text = text.replace("{" + name + "}", value)
    return text


def _argv(command: str | Sequence[str], fields: Mapping[str, str]) -> list[str]:
    """A command line as argv, ``fields`` expanded; ``python`` or ``python3`` first is this
    interpreter (the tests' virtual environment, whether or not it is activated)."""
    parts = [_expand(part, fields) for part in (shlex.split(command) if isinstance(command, str) else command)]
    if parts and parts[0] in ("python", "python3"):
        parts[0] = sys.executable
    return parts


def _environment(env: Mapping[str, str] | None, fields: Mapping[str, str]) -> dict[str, str]:
    return {name: _expand(value, fields) for name, value in (env or {}).items()}


def _tail(path: pathlib.Path) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return text if len(text) <= _SHOWN_OUTPUT else "[...]\n" + text[-_SHOWN_OUTPUT:]


class AppServer:
    """A server process on a local port, started at once; its output (stdout and stderr)
    goes to a file. Also a context manager that stops it on exit.

    The process leads a session of its own (so that ``SIGKILL`` reaches its workers too) and
    gets ``PYTHONUNBUFFERED=1``, so that its output is there to read as it is written.

    Args:
        command: the argv (:func:`server_command`, or your own).
        port: the TCP port it listens on.
        host: the address it listens on (for :attr:`url` and the wait).
        env: environment on top of this process's.
        cwd: its working directory (default: this process's).
        log: the file its output goes to (default: a temporary file, removed by :meth:`stop`).

    Attributes:
        command: the argv it was started with.
        port: its TCP port.
        host: its address.
        process: the :class:`subprocess.Popen` of the process.
        log_path: the file that holds its output.
    """

    def __init__(
        self,
        command: Sequence[str],
        port: int,
        *,
        host: str = "127.0.0.1",
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        log: str | os.PathLike[str] | None = None,
    ) -> None:
        self.command = list(command)
        self.port = port
        self.host = host
        self._owned_log = log is None
        self._log: typing.IO[bytes]
        if log is None:
            import tempfile

            self._log = tempfile.NamedTemporaryFile(prefix="healthprobe-", suffix=".log", delete=False)  # noqa: SIM115
            self.log_path = pathlib.Path(self._log.name)
        else:
            self.log_path = pathlib.Path(log)
            self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed by stop() and kill()
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        try:
            self.process: subprocess.Popen[bytes] = subprocess.Popen(
                self.command,
                cwd=cwd,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except BaseException:
            self._close_log()
            raise

    @property
    def url(self) -> str:
        """``http://HOST:PORT``, without a trailing slash."""
        return f"http://{_address(self.host, self.port)}"

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until the server accepts connections on its port (see :func:`wait_for_port`).

        Raises:
            RuntimeError: the process exited first (the message has its output).
            TimeoutError: not within ``timeout`` seconds.
        """
        wait_for_port(self.port, host=self.host, timeout=timeout, process=self.process, output=self.output)

    def output(self) -> str:
        """Everything the process has written so far (stdout and stderr, interleaved)."""
        with contextlib.suppress(ValueError):  # closed already
            self._log.flush()
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> int:
        """Stop the process as the kubelet stops a container: ``SIGTERM`` to it, then, if it
        is still running after ``timeout`` seconds, ``SIGKILL`` to its whole session.

        Returns:
            Its exit code (negative: the signal that ended it, as :attr:`subprocess.Popen.returncode`).
        """
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        return self.kill()

    def kill(self) -> int:
        """``SIGKILL`` to the process's session if it still runs; returns its exit code."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self._close_log()
        return int(self.process.returncode)

    def _close_log(self) -> None:
        self._log.close()
        if self._owned_log:
            with contextlib.suppress(OSError):
                self.log_path.unlink()

    def __enter__(self) -> AppServer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<AppServer {self.url} pid {self.process.pid}: {shlex.join(self.command)}>"


# --- the simulator -----------------------------------------------------------------------


def load_container(manifest: str | os.PathLike[str] | Container, name: str | None = None) -> Container:
    """The container of a manifest to simulate.

    Args:
        manifest: a path to a YAML file (a :class:`~pathlib.Path`, or a string naming an
            existing file or ending in ``.yaml`` or ``.yml``), YAML text, or a
            :class:`~healthprobe.kubelet.Container` (returned as it is).
        name: ``CONTAINER`` or ``POD/CONTAINER`` when several containers have probes.

    Returns:
        The container (:func:`healthprobe.kubelet.load_containers`, :func:`~healthprobe.kubelet.pick_container`).

    Raises:
        FileNotFoundError: a path that does not exist.
        ValueError: the manifest is not valid, or ``name`` does not pick one container.
        MissingExtraError: PyYAML is not installed (``pip install 'healthprobe[testing]'``).
    """
    from . import kubelet as _kubelet

    if isinstance(manifest, _kubelet.Container):
        return manifest
    if isinstance(manifest, os.PathLike) or (
        "\n" not in manifest and (manifest.endswith((".yaml", ".yml")) or pathlib.Path(manifest).is_file())
    ):
        text = pathlib.Path(manifest).read_text(encoding="utf-8")
    else:
        text = manifest
    with _extras.requires("testing", "healthprobe.testing.load_container()"):
        import yaml  # noqa: F401 - the testing extra's message rather than the kubelet's
    return _kubelet.pick_container(_kubelet.load_containers(text), name)


def _port_map(container: Container, port: int) -> dict[str | int, int]:
    """Every port the container's probes and hooks name, and every named port, to ``port``."""
    from . import kubelet as _kubelet

    found: dict[str | int, int] = {}
    actions: list[object] = [probe.action for probe in container.probes.values()]
    if container.pre_stop is not None:
        actions.append(container.pre_stop)
    # A name the container does not declare stays unmapped: the probe then errors ("unable
    # to find port"), as the kubelet's does.
    for action in actions:
        if isinstance(action, (_kubelet.HTTPGetAction, _kubelet.TCPSocketAction, _kubelet.GRPCAction)) and (
            isinstance(action.port, int) or action.port.isdigit() or action.port in container.ports
        ):
            found[action.port] = port
    for name, number in container.ports.items():
        found[name] = port
        found[number] = port
    return found


def simulation(
    manifest: str | os.PathLike[str] | Container,
    app: AppServer | int | None = None,
    *,
    cmd: str | Sequence[str] | None = None,
    port: int | None = None,
    container: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    port_map: Mapping[str | int, int] | None = None,
    speed: float = 1.0,
    restart_cmd: str | Sequence[str] | None = None,
    verbose: bool = False,
    on_event: Callable[[Event], object] | None = None,
    output: int | typing.TextIO | None = None,
) -> Simulation:
    """A :class:`~healthprobe.kubelet.Simulation` of ``manifest``'s container, not started,
    whose probes reach a local app: every port the probes name (``port: http``,
    ``port: 8080``) and every named port of the container goes to the app's port.

    Either probe a running ``app`` (an :class:`AppServer` or a port), or give ``cmd``: the
    simulator starts it as the container's process (with the container's ``env`` and
    ``env``), so that it owns ``SIGTERM``, ``SIGKILL`` and the grace period
    (:meth:`~healthprobe.kubelet.Simulation.terminate`).

    Args:
        manifest: see :func:`load_container`.
        app: what the probes reach when the simulator starts nothing.
        cmd: the container's process; ``{port}`` in it (and in ``env``'s values) becomes
            ``port``.
        port: the port ``cmd`` listens on (default: a free one, :func:`free_port`).
        container: ``CONTAINER`` or ``POD/CONTAINER`` when several have probes.
        env: environment for ``cmd`` and ``restart_cmd``, over the container's ``env``.
        cwd: the directory ``cmd`` and ``restart_cmd`` run in (default: this process's).
        port_map: ports to map yourself (a manifest's port name or number to a local
            port), over the automatic ones.
        speed: simulated seconds per real second (> 0): periods, delays, timeouts and the
            grace period shrink by it; the app's own clocks do not.
        restart_cmd: after ``Killing``, the new container's process (``{port}`` expanded too).
        verbose: also an event for every probe (``Probed``).
        on_event: called with each :class:`~healthprobe.kubelet.Event` as it happens.
        output: where the processes' output goes (default: this process's stderr).

    Returns:
        The simulation: :meth:`~healthprobe.kubelet.Simulation.run` it to the end, or
        :meth:`~healthprobe.kubelet.Simulation.start` it in the background.

    Raises:
        ValueError: neither or both of ``app`` and ``cmd``; see also :func:`load_container`.
    """
    from . import kubelet as _kubelet

    if (app is None) == (cmd is None):
        raise ValueError("give either app (a running server or its port) or cmd (a command to start)")
    chosen = load_container(manifest, container)
    fields: dict[str, str] = {}
    if isinstance(app, AppServer):
        local, target = app.port, app.host
    elif app is not None:
        local, target = app, "127.0.0.1"
    else:
        local, target = (free_port() if port is None else port), "127.0.0.1"
        fields = {"port": str(local), "host": target}
    commands = [None if c is None else _argv(c, fields) for c in (cmd, restart_cmd)]
    full_env = {"PYTHONUNBUFFERED": "1", **_environment(env, fields)} if cmd is not None else dict(env or {})
    return _kubelet.Simulation(
        chosen,
        target=target,
        port_map={**_port_map(chosen, local), **(port_map or {})},
        speed=speed,
        cmd=commands[0],
        restart_cmd=commands[1],
        env=full_env,
        verbose=verbose,
        on_event=on_event,
        output=output,
        cwd=cwd,
    )


# --- the rollout ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Failure:
    """One failed request of a rollout.

    Attributes:
        t: seconds since the rollout began (wall clock).
        endpoint: ``"old"`` or ``"new"``, the replica it was sent to; ``None`` when the list
            of ready endpoints was empty.
        what: what went wrong: ``status 503``, ``ConnectError: [Errno 111] Connection
            refused``, ``ReadTimeout: ...``, ``no ready endpoint``.
    """

    t: float
    endpoint: str | None
    what: str

    def __str__(self) -> str:
        return f"{self.t:7.2f}s  {self.endpoint or '-':<4} {self.what}"


class RolloutResult:
    """What a rollout measured (:func:`run_rollout`).

    Attributes:
        requests: requests sent (attempts with no ready endpoint included).
        failed: how many of them failed: no answer (refused, reset, closed, timed out), a
            status at or above the rollout's ``failure_status``, or no ready endpoint.
        failures: the first ``max_failures`` failures, in order.
        sent: requests sent to each replica (``{"old": 310, "new": 295}``).
        exit_code: the old replica's exit code (negative: killed by that signal); ``None``
            if it is not known.
        exited_in_time: whether the old replica exited inside its grace period.
        timeline: ``(seconds since the rollout began, step)``: each replica started, ready
            and not ready, added to and removed from the endpoints, the deletion, the exit.
        old_events: the simulator's events of the old replica (``t`` in simulated seconds).
        new_events: the simulator's events of the new replica.
        lag: the propagation lag used, in seconds.
    """

    def __init__(
        self,
        *,
        requests: int,
        failed: int,
        failures: list[Failure],
        sent: dict[str, int],
        exit_code: int | None,
        exited_in_time: bool | None,
        timeline: list[tuple[float, str]],
        old_events: list[Event],
        new_events: list[Event],
        lag: float,
    ) -> None:
        self.requests = requests
        self.failed = failed
        self.failures = failures
        self.sent = sent
        self.exit_code = exit_code
        self.exited_in_time = exited_in_time
        self.timeline = timeline
        self.old_events = old_events
        self.new_events = new_events
        self.lag = lag

    @property
    def ok(self) -> bool:
        """No failed request, and the old replica exited with 0 inside its grace period."""
        return self.failed == 0 and bool(self.exited_in_time) and self.exit_code == 0

    def report(self) -> str:
        """Everything measured, as text: the counts, the timeline, the failures kept and both
        replicas' events. For an assertion's message (pytest shows a message that is not a
        string by its ``repr``, cut at 240 characters)::

            assert result.failed == 0, result.report()
        """
        lines = [
            f"rollout: {self.failed} failed of {self.requests} requests "
            f"(old {self.sent.get('old', 0)}, new {self.sent.get('new', 0)}; lag {self.lag:g} s); "
            f"old replica exited with {self.exit_code}, "
            + ("inside its grace period" if self.exited_in_time else "NOT inside its grace period"),
            "timeline (real seconds since the rollout began):",
            *(f"{t:7.2f}s  {step}" for t, step in self.timeline),
        ]
        if self.failures:
            more = self.failed - len(self.failures)
            lines += ["failures:", *(str(failure) for failure in self.failures)]
            if more > 0:
                lines.append(f"... and {more} more")
        clock = "simulated seconds since the replica started"
        lines += [f"old replica's events ({clock}):", *(event.line() for event in self.old_events)]
        lines += [f"new replica's events ({clock}):", *(event.line() for event in self.new_events)]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.report()

    def __repr__(self) -> str:
        return (
            f"<RolloutResult requests={self.requests} failed={self.failed} "
            f"exit_code={self.exit_code} exited_in_time={self.exited_in_time}>"
        )


class _Endpoints:
    """The ready endpoints a load balancer routes to, each change applied ``lag`` seconds
    after the status change that caused it (EndpointSlice, then kube-proxy or the load
    balancer), in the order the changes happened."""

    def __init__(self, lag: float, note: Callable[[str], None]) -> None:
        self.lag = lag
        self._note = note
        self._current: list[tuple[str, str]] = []
        self._pending: list[tuple[float, int, str, str, bool]] = []
        self._order = itertools.count()
        self._changed = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._apply, name="healthprobe-endpoints", daemon=True)
        self._thread.start()

    def schedule(self, name: str, url: str, present: bool) -> None:
        with self._changed:
            heapq.heappush(self._pending, (time.monotonic() + self.lag, next(self._order), name, url, present))
            self._changed.notify_all()

    def current(self) -> list[tuple[str, str]]:
        with self._changed:
            return list(self._current)

    def wait(self, name: str, present: bool, timeout: float, check: Callable[[], None] = lambda: None) -> None:
        """Wait until ``name`` is listed (or not); ``check()`` runs every 0.1 s and may raise."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while any(n == name for n, _ in self._current) != present:
                left = deadline - time.monotonic()
                if left <= 0:
                    what = "added to" if present else "removed from"
                    raise TimeoutError(f"the {name} replica was not {what} the endpoints within {timeout:g} s")
                self._changed.wait(min(left, 0.1))
                check()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        self._thread.join(5)

    def _apply(self) -> None:
        with self._changed:
            while not self._closed:
                if not self._pending:
                    self._changed.wait()
                    continue
                due, _, name, url, present = self._pending[0]
                left = due - time.monotonic()
                if left > 0:
                    self._changed.wait(left)
                    continue
                heapq.heappop(self._pending)
                listed = any(n == name for n, _ in self._current)
                if present and not listed:
                    self._current.append((name, url))
                    self._note(f"{name} endpoint added")
                elif not present and listed:
                    self._current = [(n, u) for n, u in self._current if n != name]
                    self._note(f"{name} endpoint removed")
                self._changed.notify_all()


@dataclasses.dataclass
class _Load:
    """Client threads sending requests through the endpoints, each to the next endpoint of
    the current list, with a kept-alive connection to each endpoint."""

    endpoints: _Endpoints
    clients: int
    path: str
    interval: float
    timeout: float
    failure_status: int
    max_failures: int
    started: float
    requests: int = 0
    failed: int = 0
    failures: list[Failure] = dataclasses.field(default_factory=list)
    sent: dict[str, int] = dataclasses.field(default_factory=dict)
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    _done: threading.Event = dataclasses.field(default_factory=threading.Event)
    _threads: list[threading.Thread] = dataclasses.field(default_factory=list)

    def start(self) -> None:
        for index in range(self.clients):
            thread = threading.Thread(target=self._client, args=(index,), name=f"healthprobe-load-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._done.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)

    def _record(self, endpoint: str | None, what: str | None) -> None:
        with self._lock:
            self.requests += 1
            if endpoint is not None:
                self.sent[endpoint] = self.sent.get(endpoint, 0) + 1
            if what is not None:
                self.failed += 1
                if len(self.failures) < self.max_failures:
                    self.failures.append(Failure(time.monotonic() - self.started, endpoint, what))

    def _client(self, index: int) -> None:
        import httpx

        connections: dict[str, httpx.Client] = {}
        turn = index
        try:
            while not self._done.is_set():
                current = self.endpoints.current()
                if not current:
                    self._record(None, "no ready endpoint")
                    self._done.wait(max(self.interval, 0.01))
                    continue
                name, url = current[turn % len(current)]
                turn += 1
                client = connections.get(name)
                if client is None:
                    client = connections[name] = httpx.Client(base_url=url, timeout=self.timeout)
                try:
                    response = client.get(self.path)
                except httpx.HTTPError as exc:
                    self._record(name, f"{type(exc).__name__}: {exc}")
                else:
                    failed = response.status_code >= self.failure_status
                    self._record(name, f"status {response.status_code}" if failed else None)
                if self.interval:
                    self._done.wait(self.interval)
        finally:
            for client in connections.values():
                client.close()


class _Replica:
    """One replica of a rollout: its simulation, started with ``cmd`` on a port of its own."""

    def __init__(self, name: str, simulation: Simulation, port: int, log: typing.IO[bytes] | None) -> None:
        self.name = name
        self.simulation = simulation
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self.deleted = False

    def check(self) -> None:
        """Raise when the replica's process has exited (while it is awaited)."""
        process = self.simulation.process
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the {self.name} replica exited with {process.returncode} before it was ready")


def run_rollout(
    manifest: str | os.PathLike[str] | Container,
    cmd: str | Sequence[str] | None = None,
    *,
    app: str | None = None,
    server: str = "uvicorn",
    args: Sequence[str] = (),
    container: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    lag: float = 1.0,
    speed: float = 1.0,
    clients: int = 4,
    path: str = "/",
    interval: float = 0.01,
    request_timeout: float = 5.0,
    failure_status: int = 500,
    max_failures: int = 20,
    ready_timeout: float = 60.0,
    log_dir: str | os.PathLike[str] | None = None,
) -> RolloutResult:
    """Roll one replica of an app over to a new one, under load, as a Deployment does, and
    count the requests a load balancer would lose.

    1. The old replica starts under the simulator (``cmd``, or ``app`` served by ``server``,
       on a free port), which probes it as the manifest says and owns its ``SIGTERM``,
       ``SIGKILL`` and grace period; it joins the endpoints ``lag`` seconds after it is Ready.
    2. ``clients`` threads send ``GET path`` without stopping (``interval`` seconds apart),
       each request to the next endpoint of the current list, over a kept-alive connection
       to that endpoint (httpx), as a client behind a proxy with a connection pool per
       endpoint does.
    3. The new replica starts the same way (its own port) and joins the endpoints ``lag``
       seconds after it is Ready.
    4. Then the old pod is deleted (:meth:`~healthprobe.kubelet.Simulation.terminate`:
       ``preStop``, ``SIGTERM``, ``SIGKILL`` at the end of the grace period; readiness
       probed on). Its endpoint is removed ``lag`` seconds after the deletion, or after it
       turned NotReady if that came first: Kubernetes takes a terminating pod out of its
       Services' ready endpoints at the deletion, in parallel with the ``SIGTERM``, and
       kube-proxy, ingress controllers and load balancers follow after their own
       propagation time ("Pod Lifecycle: Termination of Pods", Kubernetes documentation).
       Any replica turning NotReady (or Ready again) is removed (or added) after ``lag``
       as well.
    5. The load goes on until the old process has exited and its endpoint is gone; then
       the new replica is killed (its shutdown is not measured) and the result returned.

    ``{port}`` in ``cmd`` and in ``env``'s values becomes the replica's port, ``{replica}``
    ``old`` or ``new`` (for a file of its own: ``{"HEALTHY_FILE": "/tmp/healthy-{replica}"}``).

    Args:
        manifest: the Deployment, Pod or container spec whose probes and grace period apply
            (see :func:`load_container`).
        cmd: the replica's command line (a string split as a shell does, or a list).
        app: instead of ``cmd``, ``"package.module:attribute"`` served by ``server`` (:func:`server_command`).
        server: the server for ``app``.
        args: more arguments for ``server``.
        container: ``CONTAINER`` or ``POD/CONTAINER`` when several have probes.
        env: environment of both replicas, over the container's ``env``.
        cwd: the directory the replicas run in (default: this process's).
        lag: seconds from a change (Ready, NotReady, the deletion) to the load balancer
            acting on it: EndpointSlice update plus kube-proxy or load-balancer propagation.
        speed: simulated seconds per real second for the probes and the grace period
            (the lag and the app's own clocks are real seconds).
        clients: threads sending requests.
        path: what they request.
        interval: seconds each client waits between two requests.
        request_timeout: seconds a request may take before it counts as failed.
        failure_status: an answer with this status or above counts as failed.
        max_failures: how many failures :attr:`RolloutResult.failures` keeps.
        ready_timeout: seconds each replica has to become Ready and join the endpoints.
        log_dir: where the replicas' output (``old.log``, ``new.log``) and the events
            (``events.log``) go; default: the output is discarded.

    Returns:
        The :class:`RolloutResult`; ``assert result.failed == 0, result.report()`` shows
        the whole story when it fails.

    Raises:
        ValueError: neither or both of ``cmd`` and ``app``, a bad number, or a bad manifest.
        TimeoutError: a replica was not Ready within ``ready_timeout``, or the old one did
            not exit within its grace period and 30 s more.
        RuntimeError: a replica's process exited before it was Ready.
        MissingExtraError: httpx or PyYAML is not installed (``pip install 'healthprobe[testing]'``).
    """
    if (cmd is None) == (app is None):
        raise ValueError("give either cmd (a command line) or app (package.module:attribute)")
    with _extras.requires("testing", "healthprobe.testing.run_rollout()"):
        import httpx  # noqa: F401 - checked before anything starts; the clients import it again
    if not (lag >= 0 and clients >= 1 and interval >= 0 and request_timeout > 0 and max_failures >= 0):
        raise ValueError("lag, interval >= 0; clients >= 1; request_timeout > 0; max_failures >= 0")
    chosen = load_container(manifest, container)
    started = time.monotonic()
    timeline: list[tuple[float, str]] = []
    notes = threading.Lock()
    directory = None if log_dir is None else pathlib.Path(log_dir)
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
    events_log = None if directory is None else open(directory / "events.log", "w", encoding="utf-8")  # noqa: SIM115

    def note(step: str) -> None:
        with notes:
            timeline.append((time.monotonic() - started, step))

    endpoints = _Endpoints(lag, note)
    replicas: list[_Replica] = []

    def replica(name: str) -> _Replica:
        port = free_port()
        fields = {"port": str(port), "host": "127.0.0.1", "replica": name}
        argv = _argv(cmd, fields) if cmd is not None else server_command(app or "", server, port, args=args)
        log = None if directory is None else open(directory / f"{name}.log", "wb")  # noqa: SIM115

        def on_event(event: Event) -> None:
            if events_log is not None:
                events_log.write(f"{name}: {event.line()}\n")
                events_log.flush()
            if event.event in ("Ready", "NotReady"):
                note(f"{name} {event.event}")
                if event.event == "NotReady" or not current.deleted:
                    endpoints.schedule(name, current.url, event.event == "Ready")
            elif event.event == "Exited":
                note(f"{name} exited: {event.message}")

        current = _Replica(
            name,
            simulation(
                chosen,
                cmd=argv,
                port=port,
                env=_environment(env, fields),
                cwd=cwd,
                speed=speed,
                on_event=on_event,
                output=subprocess.DEVNULL if log is None else log.fileno(),
            ),
            port,
            log,
        )
        replicas.append(current)
        note(f"{name} started on port {port}")
        current.simulation.start()
        return current

    load = _Load(
        endpoints,
        clients=clients,
        path=path,
        interval=interval,
        timeout=request_timeout,
        failure_status=failure_status,
        max_failures=max_failures,
        started=started,
    )
    try:
        old = replica("old")
        endpoints.wait("old", True, ready_timeout, old.check)
        load.start()
        note("load started")
        new = replica("new")
        endpoints.wait("new", True, ready_timeout, new.check)
        old.deleted = True
        note("old deleted")
        endpoints.schedule("old", old.url, False)
        old.simulation.terminate()
        grace = chosen.termination_grace_period_seconds / speed
        outcome: Outcome = old.simulation.wait(grace + 30)
        endpoints.wait("old", False, lag + 30)
        load.stop()
        note("load stopped")
        _kill(new)
    finally:
        load.stop()
        try:
            for each in replicas:
                with contextlib.suppress(Exception):  # the next replica is killed all the same
                    _kill(each)
        finally:
            endpoints.close()
        if events_log is not None:
            events_log.close()
    return RolloutResult(
        requests=load.requests,
        failed=load.failed,
        failures=list(load.failures),
        sent=dict(load.sent),
        exit_code=outcome.exit_code,
        exited_in_time=outcome.exited_in_time,
        timeline=sorted(timeline),
        old_events=list(old.simulation.events),
        new_events=list(new.simulation.events),
        lag=lag,
    )


def _kill(replica: _Replica) -> None:
    """End a replica's simulation, its process killed first (its shutdown is not measured).
    A simulation interrupted before it started has nothing to wait for."""
    try:
        process = replica.simulation.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        replica.simulation.stop()
        with contextlib.suppress(TimeoutError, RuntimeError):  # RuntimeError: never started
            replica.simulation.wait(30)
    finally:
        if replica.log is not None:
            replica.log.close()


# --- the fixtures ------------------------------------------------------------------------


class _Outputs:
    """Files whose contents a fixture shows under a failed test: at teardown each becomes a
    report section (``Captured <title> teardown``), which pytest prints after the failure
    (and only there, or with ``-rP``)."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self._node = request.node
        self._files: list[tuple[str, pathlib.Path]] = []

    def add(self, title: str, path: pathlib.Path) -> None:
        self._files.append((title, path))

    def show(self) -> None:
        for title, path in self._files:
            text = _tail(path)
            if text:
                self._node.add_report_section("teardown", title, text)


class AppServerFactory:
    """What the :func:`app_server` fixture returns: call it (:meth:`start`) to start a server.

    Every server it started is stopped when the test ends (``SIGTERM``, then ``SIGKILL``
    after ``stop_timeout`` seconds); their output is shown under a failed test.
    """

    def __init__(self, directory: pathlib.Path, outputs: _Outputs | None = None, *, stop_timeout: float = 10.0) -> None:
        self._directory = directory
        self._outputs = outputs
        self._counter = itertools.count(1)
        self.stop_timeout = stop_timeout
        #: The servers started, in order.
        self.started: list[AppServer] = []

    def start(
        self,
        app: str | None = None,
        *,
        server: str = "uvicorn",
        command: str | Sequence[str] | None = None,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        timeout: float = 30.0,
    ) -> AppServer:
        """Start ``app`` under ``server``, or ``command``, on ``host`` and a free port, and
        wait until that port accepts connections.

        Args:
            app: ``"package.module:attribute"``, served by ``server`` (:func:`server_command`).
            server: one of :data:`SERVERS`.
            command: instead of ``app``, a command line (a string split as a shell does, or
                a list); ``{port}`` and ``{host}`` in it and in ``env``'s values are replaced.
            args: more arguments for ``server``.
            env: environment over this process's (``{port}`` and ``{host}`` replaced).
            cwd: the working directory (default: this process's, where ``python -m`` finds
                your package).
            host: the loopback address to listen on.
            port: the port (default: a free one).
            timeout: seconds the server has to accept connections.

        Returns:
            The running :class:`AppServer` (``url``, ``port``, ``process``, ``command``).

        Raises:
            ValueError: neither or both of ``app`` and ``command``, or an unknown ``server``.
            RuntimeError: the process exited before listening (the message has its output).
            TimeoutError: it did not listen within ``timeout`` seconds.
        """
        if (app is None) == (command is None):
            raise ValueError("give either app (package.module:attribute) or command")
        chosen = free_port(host) if port is None else port
        fields = {"port": str(chosen), "host": host}
        if app is not None:
            argv = server_command(app, server, chosen, host=host, args=[_expand(a, fields) for a in args])
        else:
            assert command is not None
            argv = _argv(command, fields)
        number = next(self._counter)
        log = self._directory / f"server-{number}.log"
        started = AppServer(argv, chosen, host=host, env=_environment(env, fields), cwd=cwd, log=log)
        self.started.append(started)
        if self._outputs is not None:
            self._outputs.add(f"output of app server {number} ({started.url})", log)
        started.wait_ready(timeout)
        return started

    __call__ = start

    def close(self) -> None:
        """Stop every server started (in the reverse order)."""
        for started in reversed(self.started):
            started.stop(self.stop_timeout)


class KubeletFactory:
    """What the :func:`kubelet` fixture returns: call it (:meth:`build`) to build a simulation.

    Every simulation it built is stopped when the test ends (with its process, if it
    started one); their processes' output and their events are shown under a failed test.
    """

    def __init__(self, directory: pathlib.Path, outputs: _Outputs | None = None) -> None:
        self._directory = directory
        self._outputs = outputs
        self._counter = itertools.count(1)
        self._logs: list[typing.IO[typing.Any]] = []
        #: The simulations built, in order.
        self.built: list[Simulation] = []

    def build(
        self,
        manifest: str | os.PathLike[str] | Container,
        app: AppServer | int | None = None,
        *,
        on_event: Callable[[Event], object] | None = None,
        **options: typing.Any,
    ) -> Simulation:
        """A simulation of ``manifest``'s probes against ``app``, or against ``cmd=``: the
        arguments of :func:`simulation` (``cmd``, ``port``, ``container``, ``env``, ``cwd``,
        ``port_map``, ``speed``, ``restart_cmd``, ``verbose``, ``on_event``) but ``output``:
        the processes' output goes to a file of the test, shown if it fails.

        Returns:
            The :class:`~healthprobe.kubelet.Simulation`, not started: ``.run(duration=S)``
            returns its :class:`~healthprobe.kubelet.Outcome`; ``.start()`` runs it in the
            background, with ``.wait_for(event, probe=..., timeout=...)``, ``.ready``,
            ``.terminate()``, ``.wait()``.

        Raises:
            ValueError: see :func:`simulation`.
        """
        number = next(self._counter)
        log_path = self._directory / f"kubelet-{number}.log"
        events_path = self._directory / f"kubelet-{number}-events.log"
        log = open(log_path, "wb")  # noqa: SIM115 - closed by close()
        self._logs.append(log)
        events = open(events_path, "w", encoding="utf-8")  # noqa: SIM115 - closed by close()
        self._logs.append(events)

        def record(event: Event) -> None:
            with contextlib.suppress(ValueError):  # written after the test ended
                events.write(event.line() + "\n")
                events.flush()
            if on_event is not None:
                on_event(event)

        built = simulation(manifest, app, on_event=record, output=log.fileno(), **options)
        self.built.append(built)
        if self._outputs is not None:
            self._outputs.add(f"kubelet simulation {number}: events", events_path)
            self._outputs.add(f"kubelet simulation {number}: process output", log_path)
        return built

    __call__ = build

    def close(self) -> None:
        """Stop every simulation built, and its process (``SIGTERM``, ``SIGKILL`` after its
        grace period, as :meth:`~healthprobe.kubelet.Simulation.stop` does)."""
        for built in self.built:
            built.stop()
        for built in self.built:
            with contextlib.suppress(TimeoutError, RuntimeError):  # RuntimeError: never started
                built.wait(60)
        for log in self._logs:
            log.close()


class RolloutFactory:
    """What the :func:`rollout` fixture returns: call it (:meth:`run`) as :func:`run_rollout`
    (same arguments but ``log_dir``); the replicas' output and the events are shown under a
    failed test."""

    def __init__(self, directory: pathlib.Path, outputs: _Outputs | None = None) -> None:
        self._directory = directory
        self._outputs = outputs
        self._counter = itertools.count(1)
        #: The results of the rollouts run, in order.
        self.results: list[RolloutResult] = []

    def run(
        self,
        manifest: str | os.PathLike[str] | Container,
        cmd: str | Sequence[str] | None = None,
        **options: typing.Any,
    ) -> RolloutResult:
        """Run :func:`run_rollout` with ``options``, its logs in a directory of the test.

        Returns:
            The :class:`RolloutResult`.

        Raises:
            ValueError, TimeoutError, MissingExtraError: as :func:`run_rollout`.
        """
        number = next(self._counter)
        directory = self._directory / f"rollout-{number}"
        directory.mkdir()
        if self._outputs is not None:
            for name in ("events", "old", "new"):
                self._outputs.add(f"rollout {number}: {name}", directory / f"{name}.log")
        result = run_rollout(manifest, cmd, log_dir=directory, **options)
        self.results.append(result)
        return result

    __call__ = run

    def close(self) -> None:
        """Nothing to stop: each rollout stops its replicas before it returns."""


_Factory = typing.TypeVar("_Factory", "AppServerFactory", "KubeletFactory", "RolloutFactory")

#: SIGTERM's handler before :func:`_end_on_sigterm` replaced it (empty while it has not).
_SIGTERM_BEFORE: list[typing.Any] = []


def _end_on_sigterm() -> None:
    """From the first use of a fixture on, a SIGTERM to the test session (what a CI job's
    timeout sends) ends it as Ctrl-C does: pytest's interrupt runs every teardown, so no
    process a fixture started is left running; a second SIGTERM ends it at once. Only when
    SIGTERM still has its default action, and from the main thread (where Python runs
    handlers); :func:`pytest_unconfigure` puts the default back."""
    if _SIGTERM_BEFORE or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def interrupt(_signum: int, _frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise KeyboardInterrupt

    _SIGTERM_BEFORE.append(signal.SIG_DFL)
    signal.signal(signal.SIGTERM, interrupt)


def pytest_unconfigure(config: pytest.Config) -> None:
    """pytest hook: SIGTERM gets back its default action at the end of the session."""
    if _SIGTERM_BEFORE:
        signal.signal(signal.SIGTERM, _SIGTERM_BEFORE.pop())


def _provide(
    request: pytest.FixtureRequest, directory: pathlib.Path, kind: Callable[[pathlib.Path, _Outputs], _Factory]
) -> Iterator[_Factory]:
    """A fixture's factory, its files in ``directory``: closed at teardown, then its files
    shown under the test if it failed."""
    _end_on_sigterm()
    outputs = _Outputs(request)
    factory = kind(directory, outputs)
    try:
        yield factory
    finally:
        factory.close()
        outputs.show()


@pytest.fixture
def app_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServerFactory]:
    """Start your app under a real server on an ephemeral loopback port::

        def test_ready(app_server):
            server = app_server("myapp.main:app", server="uvicorn")
            assert httpx.get(f"{server.url}/readyz").status_code == 200

    Returns an :class:`AppServerFactory`; each server is stopped at teardown (``SIGTERM``,
    ``SIGKILL`` 10 s later) and its output shown if the test failed.
    """
    yield from _provide(request, tmp_path_factory.mktemp("app_server"), AppServerFactory)


@pytest.fixture
def kubelet(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeletFactory]:
    """Probe your app as the kubelet does, with a manifest's probes::

        def test_probes(app_server, kubelet):
            server = app_server("myapp.main:app")
            outcome = kubelet("k8s/deployment.yaml", server, speed=10).run(duration=60)
            assert outcome.of("Ready") and not outcome.killed

    Returns a :class:`KubeletFactory`; each simulation is stopped at teardown, and its
    events and process output shown if the test failed.
    """
    yield from _provide(request, tmp_path_factory.mktemp("kubelet"), KubeletFactory)


@pytest.fixture
def rollout(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RolloutFactory]:
    """Measure what a rolling update of your app loses (:func:`run_rollout`)::

        def test_rollout(rollout):
            result = rollout("k8s/deployment.yaml", "python -m myapp", env={"PORT": "{port}"})
            assert result.failed == 0, result.report()

    Returns a :class:`RolloutFactory`; the replicas' output and the events are shown if the
    test failed.
    """
    yield from _provide(request, tmp_path_factory.mktemp("rollout"), RolloutFactory)
