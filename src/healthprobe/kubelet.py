"""The kubelet's probe rules as a simulator: run a manifest's startup, readiness and liveness
probes against a running process with the kubelet's timing, thresholds and messages, and
see the events ``kubectl describe pod`` would show, without a cluster.

Each rule follows the kubelet's source (Kubernetes ``pkg/kubelet/prober/worker.go``,
``prober.go``, ``pkg/probe/http/http.go``, ``tcp/tcp.go``, ``exec/exec.go``,
``grpc/grpc.go``) and the API's defaults and validation (``pkg/apis/core/v1/defaults.go``,
``validation.go``); docs/kubelet.md lists them one by one with the line each follows.

* One worker per probe, ticking every ``periodSeconds`` from the container's start; a tick
  probes only once the container has run ``initialDelaySeconds`` (whole seconds, as the
  kubelet truncates them), so the first probe lands on the first tick at or after the delay,
  not at it. A probe slower than the period delays the next tick; missed ticks are dropped,
  one is kept (Go's ``time.Ticker``).
* Startup gates the others: readiness and liveness do not probe until startup has passed;
  startup stops once it has (it latches until the container restarts). A changed result
  syncs the pod, and a started container that is not ready then gets a readiness probe at
  once (``prober_manager.go``, ``UpdatePodStatus``).
* A result counts after ``failureThreshold`` failures or ``successThreshold`` successes in a
  row. A failed attempt is a ``Unhealthy`` event each time; an *error* (a probe that could not
  run, such as an exec command that does not exist) is retried up to 3 times at once and then
  thrown away, counting neither way.
* ``httpGet``: a status from 200 to 399 passes; a 3xx is a redirect the kubelet did not
  follow (to another host) and passes with a ``ProbeWarning``; redirects to the same host
  are followed (at most 10); at most 10 KiB of a body is read; ``timeoutSeconds`` bounds
  the whole exchange; ``User-Agent: kube-probe/...`` and ``Accept: */*`` unless
  ``httpHeaders`` says otherwise.
* Liveness or startup failing ``failureThreshold`` times: ``Killing`` (``Container NAME
  failed liveness probe, will be restarted``); that worker holds until a new container.
* Pod deletion: liveness and startup stop at once; readiness keeps being probed until the
  container exits; ``preStop`` runs, then ``SIGTERM``, then ``SIGKILL`` at the end of
  ``terminationGracePeriodSeconds`` (counted from the deletion, ``preStop`` included; at
  least 2 s after ``SIGTERM`` when ``preStop`` used the grace period up).

Time is simulated seconds from the container's start (``t``); ``speed`` runs it ``speed``
times faster than the wall clock. Everything in the scenario is scaled (periods, delays,
timeouts, grace periods, the back-off before a restart); a probe's timeout never goes below
:data:`MIN_TIMEOUT` real seconds, and the app's own clocks are not scaled.

Usage (``healthprobe kubelet``, see :func:`run_command`)::

    healthprobe kubelet k8s/pod.yaml --port-map 8080=18080 --speed 10 --duration 60
    healthprobe kubelet k8s/deployment.yaml --cmd 'python -m app' --terminate-at 20 --json
"""

from __future__ import annotations

import argparse
import collections.abc
import contextlib
import dataclasses
import http.client
import json
import math
import os
import re
import shlex
import signal
import ssl
import subprocess
import sys
import threading
import time
import typing
import urllib.parse

from . import _extras, _watchdog

if typing.TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence
    from typing import Any, TextIO

__all__ = [
    "DESCRIPTION",
    "KUBE_PROBE_USER_AGENT",
    "MAX_BODY_BYTES",
    "MIN_TIMEOUT",
    "Action",
    "Container",
    "Event",
    "ExecAction",
    "GRPCAction",
    "HTTPGetAction",
    "Hook",
    "Outcome",
    "Probe",
    "Simulation",
    "SleepAction",
    "TCPSocketAction",
    "add_arguments",
    "load_containers",
    "main",
    "pick_container",
    "run_command",
]

#: The ``User-Agent`` the kubelet sends (``kube-probe/<major>.<minor>``,
#: ``pkg/probe/http/request.go``) unless a probe's ``httpHeaders`` gives one.
KUBE_PROBE_USER_AGENT = "kube-probe/1.34"
#: Most bytes of an HTTP probe's body, or of an exec probe's output, the kubelet keeps
#: (``maxRespBodyLength`` in ``pkg/probe/http/http.go``, ``maxReadLength`` in
#: ``pkg/probe/exec/exec.go``: 10 KiB).
MAX_BODY_BYTES = 10 * 1024
#: What ``healthprobe kubelet --help`` says it does.
DESCRIPTION = "Simulate the kubelet's probes of a manifest's container against a local process."
#: Real seconds a process gets to exit after SIGTERM when the simulation is interrupted.
_INTERRUPTED_GRACE = 2.0
#: Least real seconds a probe's timeout is given at any ``speed``.
MIN_TIMEOUT = 0.5
#: Attempts of a probe that errors before its result is thrown away (``maxProbeRetries``,
#: ``pkg/kubelet/prober/prober.go``).
_MAX_PROBE_RETRIES = 3
#: Redirects an httpGet probe follows to the same host (Go's ``http.Client`` default, kept by
#: ``RedirectChecker`` in ``pkg/probe/http/http.go``).
_MAX_REDIRECTS = 10
#: Least seconds between SIGTERM and SIGKILL when a preStop hook used the grace period up
#: (``minimumGracePeriodInSeconds``, ``pkg/kubelet/kuberuntime/kuberuntime_container.go``).
_MIN_GRACE_AFTER_PRESTOP = 2.0
#: The kubelet's restart back-off: none before the first restart, then 10 s doubling up to
#: 300 s (``backOffPeriod`` and ``MaxContainerBackOff``, ``pkg/kubelet/kubelet.go``).
_BACKOFF_START, _BACKOFF_MAX = 10.0, 300.0
_KINDS = ("startup", "readiness", "liveness")
#: Most entries of a list in a manifest, and most documents in one.
_MOST_ITEMS = 10_000
_FIELD = {"startup": "startupProbe", "readiness": "readinessProbe", "liveness": "livenessProbe"}
#: Workloads whose pods come from ``spec.template`` (and CronJob's from its job template).
_TEMPLATED = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "Job"})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


# --- manifests ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class HTTPGetAction:
    """An ``httpGet`` handler: ``GET scheme://host:port/path`` with ``headers``.

    ``port`` is a number or the name of one of the container's ports; ``host`` ``""`` means
    the pod's address (the simulation's target).
    """

    port: int | str
    path: str = "/"
    host: str = ""
    scheme: str = "HTTP"
    headers: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class TCPSocketAction:
    """A ``tcpSocket`` handler: connect to ``host:port`` and close."""

    port: int | str
    host: str = ""


@dataclasses.dataclass(frozen=True)
class ExecAction:
    """An ``exec`` handler: run ``command`` (here, on this machine; no shell unless the
    command starts one); exit status 0 passes."""

    command: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class GRPCAction:
    """A ``grpc`` handler: ``grpc.health.v1.Health/Check`` for ``service`` on ``port``."""

    port: int
    service: str = ""


@dataclasses.dataclass(frozen=True)
class SleepAction:
    """A ``sleep`` lifecycle handler (``preStop`` only): wait ``seconds``."""

    seconds: int


#: What a probe does: one of the four handlers of a Probe (Kubernetes API, ProbeHandler v1).
Action = HTTPGetAction | TCPSocketAction | ExecAction | GRPCAction
#: What a ``preStop`` hook does (Kubernetes API, LifecycleHandler v1).
Hook = HTTPGetAction | TCPSocketAction | ExecAction | SleepAction


@dataclasses.dataclass(frozen=True)
class Probe:
    """One probe of a container, with the API's defaults (Kubernetes API reference, Probe v1;
    ``pkg/apis/core/v1/defaults.go``). Times are whole seconds, as in a manifest.

    Attributes:
        kind: ``"startup"``, ``"readiness"`` or ``"liveness"``.
        action: what the probe does.
        initial_delay_seconds: seconds after the container starts before the first probe (>= 0).
        period_seconds: seconds between probes (>= 1).
        timeout_seconds: seconds one probe may take (>= 1).
        success_threshold: successes in a row that count (1 for liveness and startup).
        failure_threshold: failures in a row that count (>= 1).
        termination_grace_period_seconds: the grace period when this probe kills the
            container (liveness and startup), instead of the pod's.
    """

    kind: str
    action: Action
    initial_delay_seconds: int = 0
    period_seconds: int = 10
    timeout_seconds: int = 1
    success_threshold: int = 1
    failure_threshold: int = 3
    termination_grace_period_seconds: int | None = None

    @property
    def title(self) -> str:
        """``Startup``, ``Readiness`` or ``Liveness``, as the kubelet's messages say it."""
        return self.kind.title()


@dataclasses.dataclass(frozen=True)
class Container:
    """A container to simulate: its probes and what they need from the pod.

    Attributes:
        name: the container's name.
        pod: the pod's (or workload's) name, ``""`` for a bare container spec.
        probes: its probes by kind.
        ports: its named ports (``ports[].name`` to ``containerPort``).
        env: its ``env`` entries that have a plain ``value``.
        pre_stop: its ``lifecycle.preStop`` handler, if any.
        termination_grace_period_seconds: the pod's (default 30).
    """

    name: str
    probes: collections.abc.Mapping[str, Probe]
    pod: str = ""
    ports: collections.abc.Mapping[str, int] = dataclasses.field(default_factory=dict)
    env: collections.abc.Mapping[str, str] = dataclasses.field(default_factory=dict)
    pre_stop: Hook | None = None
    termination_grace_period_seconds: int = 30

    @property
    def label(self) -> str:
        """``pod/container``, or the container's name alone."""
        return f"{self.pod}/{self.name}" if self.pod else self.name


def load_containers(text: str) -> list[Container]:
    """The containers of a manifest that have at least one probe.

    Args:
        text: YAML, one or several documents: Pods, workloads with a pod template
            (Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job,
            CronJob), a bare pod spec (``containers:``) or a bare container spec (a mapping
            with ``livenessProbe``, ``readinessProbe`` or ``startupProbe``). Other kinds
            (Service, ConfigMap...) are skipped. Init containers are not probed.

    Returns:
        The containers in document order, with their probes validated and defaulted.

    Raises:
        ValueError: the YAML does not parse, or a probe breaks the API's validation (one
            line naming the field, such as ``pod "web" container "app" livenessProbe:
            successThreshold must be 1``).
        ImportError: PyYAML is not installed (``pip install 'healthprobe[kubelet]'``).
    """
    with _extras.requires("kubelet", "healthprobe.kubelet"):
        import yaml
    try:
        documents = []
        for document in yaml.safe_load_all(text):
            if document is not None:
                documents.append(document)
            if len(documents) > _MOST_ITEMS:
                raise ValueError(f"more than {_MOST_ITEMS} documents")
    except yaml.YAMLError as exc:
        raise ValueError(f"not YAML: {' '.join(str(exc).split())}") from None
    found: list[Container] = []
    for document in documents:
        if not isinstance(document, dict):
            raise ValueError(f"a manifest document is a mapping, not {type(document).__name__}")
        name, spec = _pod_spec(document)
        if spec is None:
            if any(field in document for field in _FIELD.values()):
                found.extend(_containers({"containers": [{"name": document.get("name", "container"), **document}]}, ""))
            continue
        found.extend(_containers(spec, name))
    return found


def pick_container(containers: Sequence[Container], name: str | None = None) -> Container:
    """The container ``name`` names (``CONTAINER`` or ``POD/CONTAINER``), or the only one.

    Raises:
        ValueError: none has probes, ``name`` matches none, or several match (the message
            lists them).
    """
    if not containers:
        raise ValueError("no container with a startupProbe, readinessProbe or livenessProbe in the manifest")
    chosen = [c for c in containers if name in (None, c.name, c.label)]
    if len(chosen) == 1:
        return chosen[0]
    listed = ", ".join(c.label for c in containers[:10]) + (
        f" and {len(containers) - 10} more" if len(containers) > 10 else ""
    )
    if not chosen:
        raise ValueError(f"no container {name!r} with probes in the manifest (there are: {listed})")
    raise ValueError(f"several containers with probes ({listed}): choose one with --container")


def _pod_spec(document: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    kind = document.get("kind")
    metadata = document.get("metadata") or {}
    name = str(metadata.get("name", "")) if isinstance(metadata, dict) else ""
    spec = document.get("spec")
    if kind == "Pod":
        return name, _mapping(spec, "Pod spec")
    if kind in _TEMPLATED:
        template = _mapping(_mapping(spec, f"{kind} spec").get("template"), f"{kind} spec.template")
        return name, _mapping(template.get("spec"), f"{kind} spec.template.spec")
    if kind == "CronJob":
        job = _mapping(_mapping(spec, "CronJob spec").get("jobTemplate"), "CronJob spec.jobTemplate")
        template = _mapping(_mapping(job.get("spec"), "jobTemplate.spec").get("template"), "jobTemplate.spec.template")
        return name, _mapping(template.get("spec"), "jobTemplate.spec.template.spec")
    if kind is None and "containers" in document:
        return name, document
    return name, None


def _mapping(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{what} is a mapping, not {type(value).__name__}")
    return value


def _containers(spec: dict[str, Any], pod: str) -> Iterator[Container]:
    grace = spec.get("terminationGracePeriodSeconds", 30)
    where = f'pod "{pod}"' if pod else "pod"
    grace = _whole(grace, f"{where} terminationGracePeriodSeconds", 0)
    for item in _items(spec.get("containers"), f"{where} spec.containers", required=True):
        entry = _mapping(item, f"{where} container")
        name = str(entry.get("name", ""))
        at = f'{where} container "{name}"'
        probes = {}
        for kind, field in _FIELD.items():
            if entry.get(field) is not None:
                probes[kind] = _probe(kind, _mapping(entry[field], f"{at} {field}"), f"{at} {field}")
        if not probes:
            continue
        ports = {}
        for port in _items(entry.get("ports"), f"{at} ports"):
            if isinstance(port, dict) and port.get("name"):
                ports[str(port["name"])] = _port_number(port.get("containerPort"), f"{at} port {port['name']!r}")
        env = {
            str(var["name"]): str(var["value"])
            for var in _items(entry.get("env"), f"{at} env")
            if isinstance(var, dict) and "name" in var and "value" in var
        }
        lifecycle = entry.get("lifecycle") or {}
        pre_stop = None
        if isinstance(lifecycle, dict) and lifecycle.get("preStop") is not None:
            pre_stop = _hook(_mapping(lifecycle["preStop"], f"{at} preStop"), f"{at} lifecycle.preStop")
        yield Container(name, probes, pod, ports, env, pre_stop, grace)


def _items(value: object, what: str, *, required: bool = False) -> list[Any]:
    """A manifest's list, at most :data:`_MOST_ITEMS` long (YAML aliases can make a short
    text a list of millions; Kubernetes' own limits are far lower)."""
    if value is None and not required:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{what} is a list, not {type(value).__name__}")
    if len(value) > _MOST_ITEMS:
        raise ValueError(f"{what}: more than {_MOST_ITEMS} entries")
    return value


def _whole(value: object, what: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{what}: expected a whole number >= {least}, got {value!r}")
    return value


def _probe(kind: str, spec: dict[str, Any], at: str) -> Probe:
    action = _action(spec, at, hooks=False)
    assert not isinstance(action, SleepAction)
    fields = {
        "initial_delay_seconds": _whole(spec.get("initialDelaySeconds", 0), f"{at}.initialDelaySeconds", 0),
        "period_seconds": _whole(spec.get("periodSeconds", 10), f"{at}.periodSeconds", 1),
        "timeout_seconds": _whole(spec.get("timeoutSeconds", 1), f"{at}.timeoutSeconds", 1),
        "success_threshold": _whole(spec.get("successThreshold", 1), f"{at}.successThreshold", 1),
        "failure_threshold": _whole(spec.get("failureThreshold", 3), f"{at}.failureThreshold", 1),
    }
    if kind != "readiness" and fields["success_threshold"] != 1:
        raise ValueError(f"{at}.successThreshold: must be 1 for a {kind} probe")
    grace = spec.get("terminationGracePeriodSeconds")
    if grace is not None:
        if kind == "readiness":
            raise ValueError(f"{at}.terminationGracePeriodSeconds: only liveness and startup probes have one")
        grace = _whole(grace, f"{at}.terminationGracePeriodSeconds", 1)
    return Probe(kind, action, termination_grace_period_seconds=grace, **fields)


def _action(spec: dict[str, Any], at: str, *, hooks: bool) -> Action | SleepAction:
    names = ("exec", "httpGet", "tcpSocket", "sleep") if hooks else ("exec", "httpGet", "tcpSocket", "grpc")
    given = [name for name in names if spec.get(name) is not None]
    if len(given) != 1:
        raise ValueError(f"{at}: expected exactly one of {', '.join(names)}, got {len(given)}")
    name = given[0]
    body = _mapping(spec[name], f"{at}.{name}")
    if name == "exec":
        command = body.get("command")
        if not isinstance(command, list) or not command or len(command) > _MOST_ITEMS:
            raise ValueError(f"{at}.exec.command: a non-empty list of strings")
        return ExecAction(tuple(str(part) for part in command))
    if name == "sleep":
        return SleepAction(_whole(body.get("seconds"), f"{at}.sleep.seconds", 0))
    if name == "grpc":
        return GRPCAction(_port_number(body.get("port"), f"{at}.grpc.port"), str(body.get("service") or ""))
    port = body.get("port")
    if isinstance(port, bool) or not isinstance(port, (int, str)) or port == "":
        raise ValueError(f"{at}.{name}.port: a port number or a port name, got {port!r}")
    if isinstance(port, int):
        port = _port_number(port, f"{at}.{name}.port")
    host = str(body.get("host") or "")
    if name == "tcpSocket":
        return TCPSocketAction(port, host)
    scheme = str(body.get("scheme") or "HTTP").upper()
    if scheme not in ("HTTP", "HTTPS"):
        raise ValueError(f"{at}.httpGet.scheme: HTTP or HTTPS, got {scheme!r}")
    headers = tuple(
        (str(h.get("name", "")), str(h.get("value", "")))
        for h in _items(body.get("httpHeaders"), f"{at}.httpGet.httpHeaders")
        if isinstance(h, dict)
    )
    return HTTPGetAction(port, str(body.get("path") or "/"), host, scheme, headers)


def _port_number(value: object, what: str) -> int:
    """A port number, 1 to 65535 (the API's validation: ``validation.IsValidPortNum``)."""
    number = _whole(value, what, 1)
    if number > 65535:
        raise ValueError(f"{what}: a port number is 1 to 65535, got {number}")
    return number


def _hook(spec: dict[str, Any], at: str) -> Hook:
    action = _action(spec, at, hooks=True)
    assert not isinstance(action, GRPCAction)
    return action


# --- events ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Event:
    """One thing the simulated kubelet saw or did.

    Attributes:
        t: simulated seconds since the first container started.
        container: the container's name.
        probe: ``"startup"``, ``"readiness"``, ``"liveness"``, or ``None``.
        result: ``"success"``, ``"warning"``, ``"failure"``, ``"error"``, or ``None``.
        event: the kubelet's event reason (``Started``, ``Unhealthy``, ``ProbeWarning``,
            ``Killing``, ``BackOff``, ``FailedPreStopHook``), a container status change
            (``StartupSucceeded``, ``Ready``, ``NotReady``), or the simulator's (``Probed``:
            one probe, with ``verbose``; ``Signalled``; ``Exited``; ``Summary``).
        message: the event's message, as ``kubectl describe pod`` shows it.
        type: ``Normal`` or ``Warning``.
    """

    t: float
    container: str
    probe: str | None
    result: str | None
    event: str
    message: str
    type: str = "Normal"

    def as_dict(self) -> dict[str, Any]:
        """The event as a JSON object: ``t`` (rounded to milliseconds) and the other fields."""
        return {**dataclasses.asdict(self), "t": round(self.t, 3)}

    def line(self) -> str:
        """The event as one line of text, control characters escaped."""
        message = _CONTROL.sub(lambda m: repr(m.group())[1:-1], self.message.replace("\n", "\\n"))
        return f"{self.t:8.1f}s  {self.type:<7}  {self.event:<16}  {self.container}: {message}"


@dataclasses.dataclass
class Outcome:
    """How a simulation ended.

    Attributes:
        events: every event, in order.
        killed: a liveness or startup probe failed its threshold (``Killing``).
        crashed: the container's process exited by itself, not after a deletion or a kill,
            with a status other than 0 (a crash, as ``CrashLoopBackOff`` counts them).
        exit_code: the last container process's exit status, ``None`` if it is not known
            (no ``cmd``, or still running when the simulation ended) or it was killed by a
            signal (then negative, as :attr:`subprocess.Popen.returncode`).
        exited_in_time: after a pod deletion, whether the process exited before the end of
            its grace period (``None`` without a deletion).
        terminated_at: simulated seconds of the pod deletion, ``None`` without one.
    """

    events: list[Event]
    killed: bool = False
    crashed: bool = False
    exit_code: int | None = None
    exited_in_time: bool | None = None
    terminated_at: float | None = None

    @property
    def ok(self) -> bool:
        """No ``Killing``, no crash, and after a deletion an exit with status 0 inside the
        grace period."""
        if self.killed or self.crashed:
            return False
        if self.terminated_at is not None:
            return bool(self.exited_in_time) and self.exit_code == 0
        return True

    def of(self, event: str, probe: str | None = None) -> list[Event]:
        """The events named ``event`` (and of ``probe``, when given)."""
        return [e for e in self.events if e.event == event and (probe is None or e.probe == probe)]


# --- probing -----------------------------------------------------------------------------


class _Attempt(typing.NamedTuple):
    result: str  # success, warning, failure, error
    output: str
    #: For an httpGet: an answer came (``http.Client.Do`` returned no error).
    answered: bool = True


def _http_attempt(url: str, headers: Sequence[tuple[str, str]], timeout: float) -> _Attempt:
    """One ``httpGet`` probe the way ``DoHTTPProbe`` (``pkg/probe/http/http.go``) judges it."""
    deadline = time.monotonic() + timeout
    first_host = urllib.parse.urlsplit(url).hostname
    given = {name.lower(): value for name, value in headers}
    lines = [(name, value) for name, value in headers if name.lower() != "host"]
    if "user-agent" not in given:
        lines.append(("User-Agent", KUBE_PROBE_USER_AGENT))
    if "accept" not in given:
        lines.append(("Accept", "*/*"))
    lines = [(name, value) for name, value in lines if not (name.lower() == "user-agent" and not value)]
    lines.append(("Connection", "close"))  # the kubelet's transport has DisableKeepAlives
    shown = url
    for hops in range(_MAX_REDIRECTS + 1):
        parts = urllib.parse.urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        left = deadline - time.monotonic()
        if left <= 0:
            return _Attempt(
                "failure",
                f'Get "{shown}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)',
                answered=False,
            )
        if parts.scheme == "https":
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # InsecureSkipVerify
            connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                parts.hostname or "", port, timeout=left, context=context
            )
        else:
            connection = http.client.HTTPConnection(parts.hostname or "", port, timeout=left)
        target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
        awaiting = f'Get "{shown}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)'
        # The timeout bounds the whole exchange (Go's http.Client.Timeout), body included.
        with _watchdog.expire_after(connection, left) as expired:
            try:
                try:
                    connection.putrequest("GET", target, skip_host="host" in given, skip_accept_encoding=True)
                    if given.get("host"):
                        connection.putheader("Host", given["host"])
                    for name, value in lines:
                        connection.putheader(name, value)
                    connection.endheaders()
                    expired.watch()
                    response = connection.getresponse()
                except TimeoutError:
                    return _Attempt("failure", awaiting, answered=False)
                except ConnectionRefusedError:
                    return _Attempt(
                        "failure",
                        f'Get "{shown}": dial tcp {_address(parts.hostname, port)}: connect: connection refused',
                        answered=False,
                    )
                except (OSError, http.client.HTTPException) as exc:
                    failure = awaiting if expired.is_set() else f'Get "{shown}": {_go_error(exc)}'
                    return _Attempt("failure", failure, answered=False)
                location = response.getheader("Location")
                if response.status in _REDIRECTS and location:
                    following = urllib.parse.urljoin(url, location)
                    # Go's client follows a redirect; RedirectChecker stops it at another host
                    # (the 3xx is the answer) or after 10 (an error).
                    if urllib.parse.urlsplit(following).hostname == first_host:
                        if hops == _MAX_REDIRECTS:
                            return _Attempt(
                                "failure",
                                f'Get "{following}": stopped after {_MAX_REDIRECTS} redirects',
                                answered=False,
                            )
                        response.close()
                        url = following
                        continue
                try:
                    body = response.read(MAX_BODY_BYTES)
                    if expired.is_set():
                        raise TimeoutError
                except (OSError, http.client.HTTPException) as exc:
                    # A body cut short is an error, not a failure: DoHTTPProbe returns it as
                    # err, and the prober throws the result away.
                    if expired.is_set() or isinstance(exc, TimeoutError):
                        return _Attempt(
                            "error",
                            "context deadline exceeded (Client.Timeout or context cancellation while reading body)",
                        )
                    return _Attempt("error", _go_error(exc))
            finally:
                connection.close()
        text = body.decode("utf-8", "replace")
        if 200 <= response.status < 400:
            if response.status >= 300:
                return _Attempt("warning", f"Probe terminated redirects, Response body: {text}")
            return _Attempt("success", text)
        return _Attempt("failure", f"HTTP probe failed with statuscode: {response.status}")
    raise AssertionError("unreachable")  # pragma: no cover


def _address(host: str | None, port: int) -> str:
    host = host or ""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _go_error(exc: BaseException) -> str:
    """An exception as the end of a Go error message (``connection reset by peer``, ``EOF``)."""
    if isinstance(exc, ConnectionResetError):
        return "read: connection reset by peer"
    if isinstance(exc, (http.client.RemoteDisconnected, http.client.IncompleteRead, EOFError)):
        return "EOF"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return type(exc).__name__


def _tcp_attempt(host: str, port: int, timeout: float) -> _Attempt:
    """One ``tcpSocket`` probe (``DoTCPProbe``, ``pkg/probe/tcp/tcp.go``): connect, close;
    the dial error is the failure's message."""
    from .cli import probe_tcp

    try:
        ok, description = probe_tcp(f"tcp://{_address(host, port)}", timeout=timeout)
    except ValueError as exc:  # a host no URL can hold
        return _Attempt("error", str(exc))
    return _Attempt("success", "") if ok else _Attempt("failure", description)


def _exec_attempt(command: Sequence[str], timeout: float, cwd: str | None = None) -> _Attempt:
    """One ``exec`` probe (``pkg/probe/exec/exec.go``), run here: exit status 0 passes, any
    other fails with the command's output (stdout and stderr, first 10 KiB); a timeout fails
    (``command "..." timed out``); a command that cannot start is an error."""
    try:
        process = subprocess.Popen(
            list(command),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            start_new_session=True,
        )
    except OSError as exc:
        return _Attempt("error", f"exec: {exc.strerror or exc}: {command[0]!r}")
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return _Attempt("failure", f"command {' '.join(command)!r} timed out".replace("'", '"'))
    text = output[:MAX_BODY_BYTES].decode("utf-8", "replace")
    return _Attempt("success" if process.returncode == 0 else "failure", text)


def _grpc_attempt(host: str, port: int, service: str, timeout: float) -> _Attempt:
    """One ``grpc`` probe (``pkg/probe/grpc/grpc.go``): only ``SERVING`` passes."""
    from .cli import probe_grpc

    url = f"grpc://{_address(host, port)}/{urllib.parse.quote(service, safe='/')}"
    try:
        ok, description = probe_grpc(url, timeout=timeout)
    except (ValueError, ImportError) as exc:  # a host no URL can hold; the grpc extra missing
        return _Attempt("error", str(exc))
    return _Attempt("success" if ok else "failure", description)


# --- the simulation ----------------------------------------------------------------------


class Simulation:
    """The kubelet's probe workers for one container, against a running process.

    Run it with :meth:`run` (blocking), or :meth:`start` it in a thread and steer it with
    :meth:`terminate`, :meth:`wait_for` and :meth:`stop` (also a context manager that stops
    it on exit). Events go to :attr:`events` and to ``on_event`` as they happen.

    Args:
        container: what to simulate (:func:`load_containers`, :func:`pick_container`).
        target: the pod's address, used by probes without a ``host`` (default ``127.0.0.1``).
        port_map: local port for a manifest's port, by name or number (``{"http": 18080}``
            or ``{8080: 18080}``): a name is looked up first, then the number it names.
        speed: how many simulated seconds pass per real second (> 0).
        cmd: the container's process, started at ``t = 0`` with the container's ``env``
            added to this process's environment (a command line, split like a shell's, or a
            list); ``None`` probes whatever already listens at ``target``.
        restart_cmd: after ``Killing``, or when ``cmd``'s process exits by itself, run this
            as the new container (same rules as ``cmd``) after the kubelet's back-off; with
            ``None`` the simulation ends there.
        env: more environment for ``cmd`` and ``restart_cmd`` (over the container's).
        verbose: also emit a ``Probed`` event for every probe.
        on_event: called with each :class:`Event` from the thread that saw it.
        cwd: the directory the processes, and ``exec`` probes and hooks, run in (default:
            this process's).
        output: where the processes' stdout and stderr go (a file descriptor or file object);
            ``None`` is this process's stderr (file descriptor 2), so that stdout stays the
            events'.

    Raises:
        ValueError: ``speed`` is not a finite number > 0; ``cmd`` or ``restart_cmd`` is empty
            or cannot be split; ``port_map`` names a port the container does not have.
    """

    def __init__(
        self,
        container: Container,
        *,
        target: str = "127.0.0.1",
        port_map: Mapping[str | int, int] | None = None,
        speed: float = 1.0,
        cmd: str | Sequence[str] | None = None,
        restart_cmd: str | Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        verbose: bool = False,
        on_event: Callable[[Event], object] | None = None,
        output: int | TextIO | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> None:
        if not (speed > 0 and math.isfinite(speed)):
            raise ValueError(f"speed: expected a finite number > 0, got {speed!r}")
        self.container = container
        self.target = target
        self.port_map = _mapped_ports(container, port_map or {})
        self.speed = speed
        self.cmd = _argv(cmd, "cmd")
        self.restart_cmd = _argv(restart_cmd, "restart_cmd")
        self.env = {**container.env, **(env or {})}
        self.verbose = verbose
        self.on_event = on_event
        self.output: int | TextIO = 2 if output is None else output
        self.cwd = None if cwd is None else os.fspath(cwd)
        self.events: list[Event] = []
        self._lock = threading.Condition()
        self._emitting = threading.Lock()
        self._waking = threading.Condition()
        self._readiness_trigger = threading.Event()
        self._results: dict[str, str] = {}
        self._stopping = threading.Event()
        self._deleting = threading.Event()
        self._thread: threading.Thread | None = None
        self._outcome: Outcome | None = None
        self._t0 = 0.0
        self._process: subprocess.Popen[bytes] | None = None
        # The container's status, guarded by _lock.
        self._container_id = 0
        self._started_at = 0.0
        self._running = False
        self._started = False
        self._ready = False
        self._readiness: str | None = None
        self._kill: tuple[str, Probe] | None = None
        #: Set with ``_kill``: the main loop kills at once, as the kubelet's sync loop does on
        #: a liveness result, not at its next look (a whole simulated second at speed 20).
        self._kill_due = threading.Event()
        self._restarts = 0

    # -- clock

    def now(self) -> float:
        """Simulated seconds since the simulation started."""
        return (time.monotonic() - self._t0) * self.speed

    def _sleep_until(self, t: float, *extra: threading.Event) -> bool:
        """Wait until simulated time ``t``; False if the simulation stops, or one of ``extra``
        is set, first (:meth:`_wake` makes a waiter look again at once)."""
        with self._waking:
            while True:
                left = (t - self.now()) / self.speed
                if self._stopping.is_set() or any(event.is_set() for event in extra):
                    return False
                if left <= 0:
                    return True
                self._waking.wait(min(left, 0.05))

    def _wake(self) -> None:
        with self._waking:
            self._waking.notify_all()

    # -- events

    def _emit(
        self, event: str, message: str, *, probe: str | None = None, result: str | None = None, warning: bool = False
    ) -> Event:
        # One event at a time, from stamping to on_event: the workers' threads emit
        # concurrently, and a printed line must not mix into another.
        with self._emitting:
            record = Event(
                self.now(), self.container.name, probe, result, event, message, "Warning" if warning else "Normal"
            )
            with self._lock:
                self.events.append(record)
                self._lock.notify_all()
            if self.on_event is not None:
                self.on_event(record)
        return record

    # -- public control

    @property
    def ready(self) -> bool:
        """Whether the container is ready now (started and readiness passing)."""
        with self._lock:
            return self._ready

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The container's current process (``cmd`` or ``restart_cmd``), if the simulation started one."""
        return self._process

    def terminate(self) -> None:
        """Delete the pod now: liveness and startup stop, readiness goes on, ``preStop``
        runs, then ``SIGTERM``, then ``SIGKILL`` at the end of the grace period.

        Raises:
            RuntimeError: the simulation has no process of its own (no ``cmd``).
        """
        if not self.cmd:
            raise RuntimeError("a pod deletion needs the container's process: give cmd")
        self._deleting.set()
        self._wake()

    def start(self, *, duration: float | None = None, terminate_at: float | None = None) -> Simulation:
        """Run :meth:`run` in a thread; returns ``self``."""
        self._thread = threading.Thread(
            target=self.run, kwargs={"duration": duration, "terminate_at": terminate_at}, name="kubelet", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """End the simulation (its process, if any, is stopped with ``SIGTERM``, then ``SIGKILL``)."""
        self._stopping.set()
        self._wake()

    def wait(self, timeout: float | None = None) -> Outcome:
        """Wait for a started simulation to end (real seconds); returns its :class:`Outcome`.

        Raises:
            TimeoutError: it has not ended within ``timeout``.
            RuntimeError: it was never started.
        """
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"the simulation has not ended within {timeout} s")
        if self._outcome is None:
            raise RuntimeError("the simulation has not run: start() it first")
        return self._outcome

    def wait_for(self, event: str, *, probe: str | None = None, timeout: float = 30.0, after: int = 0) -> Event:
        """Wait for the first event named ``event`` (of ``probe``, when given) among
        :attr:`events` from index ``after`` on; ``timeout`` in real seconds.

        Raises:
            TimeoutError: no such event came in time (or the simulation ended without one).
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for record in self.events[after:]:
                    if record.event == event and (probe is None or record.probe == probe):
                        return record
                left = deadline - time.monotonic()
                over = self._outcome is not None
                if left <= 0 or over:
                    raise TimeoutError(f"no {event} event within {timeout} s")
                self._lock.wait(min(left, 0.1))

    def __enter__(self) -> Simulation:
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
        with contextlib.suppress(TimeoutError):
            self.wait(60)

    # -- the run

    def run(self, *, duration: float | None = None, terminate_at: float | None = None) -> Outcome:
        """Simulate until ``duration`` simulated seconds have passed, the container is killed
        and not restarted, it exits after ``terminate_at`` (a pod deletion, simulated
        seconds), or :meth:`stop`.

        Returns:
            The :class:`Outcome`.

        Raises:
            ValueError: ``terminate_at`` without ``cmd``, or a negative time.
            OSError: ``cmd`` cannot be started.
        """
        if terminate_at is not None and not self.cmd:
            raise ValueError("--terminate-at needs the container's process: give --cmd")
        for name, value in (("duration", duration), ("terminate_at", terminate_at)):
            if value is not None and not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name}: expected a finite number of seconds >= 0, got {value!r}")
        outcome = Outcome(self.events)
        interrupted = False
        self._t0 = time.monotonic()
        workers: list[threading.Thread] = []
        try:
            self._start_container(self.cmd)
            for kind in _KINDS:
                if kind in self.container.probes:
                    worker = threading.Thread(target=self._worker, args=(self.container.probes[kind],), daemon=True)
                    worker.start()
                    workers.append(worker)
            self._main_loop(outcome, duration, terminate_at)
        except BaseException:  # Ctrl-C, or a signal the command line turned into one
            interrupted = True
            raise
        finally:
            self._stopping.set()
            for worker in workers:
                worker.join(5)
            if self._process is not None:
                grace = float(self.container.termination_grace_period_seconds)
                if interrupted:  # someone is waiting: the process gets a short grace period
                    grace = min(grace, _INTERRUPTED_GRACE * self.speed)
                self._signal_and_wait(grace, quiet=True)
            if self._process is not None and outcome.exit_code is None:
                outcome.exit_code = self._process.returncode
            self._outcome = outcome
            with self._lock:
                self._lock.notify_all()
        return outcome

    def _main_loop(self, outcome: Outcome, duration: float | None, terminate_at: float | None) -> None:
        limit = min(t for t in (duration, terminate_at, math.inf) if t is not None)
        while not self._stopping.is_set():
            now = self.now()
            if duration is not None and now >= duration:
                return
            if (terminate_at is not None and now >= terminate_at) or self._deleting.is_set():
                self._delete_pod(outcome)
                return
            with self._lock:
                kill = self._kill
                self._kill = None
                self._kill_due.clear()
            if kill is not None:
                outcome.killed = True
                reason, probe = kill
                self._emit(
                    "Killing",
                    f"Container {self.container.name} failed {reason} probe, will be restarted",
                    probe=reason,
                    result="failure",
                )
                grace = probe.termination_grace_period_seconds
                self._stop_container(
                    float(grace if grace is not None else self.container.termination_grace_period_seconds)
                )
                if self._process is not None:
                    outcome.exit_code = self._process.returncode
                if not self.restart_cmd or not self._restart(limit):
                    return
                continue
            process = self._process
            if process is not None and process.poll() is not None:
                _kill_group(process)
                with self._lock:
                    self._running = False
                self._set_ready(False)
                code = process.returncode
                self._emit(
                    "Exited",
                    f"container {self.container.name} exited with code {code}",
                    result="failure" if code else "success",
                    warning=bool(code),
                )
                outcome.exit_code = code
                outcome.crashed = outcome.crashed or code != 0
                if not self.restart_cmd or not self._restart(limit):
                    return
                continue
            self._sleep_until(min(now + 0.05 * self.speed, limit), self._deleting, self._kill_due)

    def _restart(self, limit: float) -> bool:
        """Start ``restart_cmd`` as a new container after the back-off; False if the simulation
        stops, or reaches ``limit`` (its duration or the deletion), first."""
        self._restarts += 1
        if self._restarts > 1:
            delay = min(_BACKOFF_START * 2 ** (self._restarts - 2), _BACKOFF_MAX)
            self._emit(
                "BackOff", f"Back-off {delay:g}s restarting failed container={self.container.name}", warning=True
            )
            due = self.now() + delay
            if not self._sleep_until(min(due, limit)) or due > limit:
                return False
        self._start_container(self.restart_cmd)
        return True

    def _start_container(self, argv: list[str]) -> None:
        with self._lock:
            if argv:
                self._process = subprocess.Popen(
                    argv,
                    env={**os.environ, **self.env},
                    stdin=subprocess.DEVNULL,
                    stdout=self.output,
                    stderr=self.output,
                    start_new_session=True,
                    cwd=self.cwd,
                )
            self._container_id += 1
            self._started_at = 0.0 if self._container_id == 1 else self.now()
            self._running = True
            self._started = "startup" not in self.container.probes
            # Each worker's initialValue for a new container (worker.go newWorker).
            self._results = {"readiness": "failure", "liveness": "success"}
            restarted = self._container_id > 1
            self._lock.notify_all()
        self._emit("Started", f"Started container {self.container.name}")
        if self._started and "readiness" not in self.container.probes:
            self._set_ready(True)
        if restarted:  # the first container's workers probe as they start
            self._sync()

    def _set_ready(self, ready: bool) -> None:
        with self._lock:
            changed = ready != self._ready
            self._ready = ready
        if changed:
            self._emit(
                "Ready" if ready else "NotReady",
                f"container {self.container.name} is {'ready' if ready else 'not ready'}",
                probe="readiness",
                result="success" if ready else "failure",
            )

    def _stop_container(self, grace: float) -> None:
        """The kubelet's ``killContainer``: ``preStop``, ``SIGTERM``, ``SIGKILL`` at ``grace``."""
        began = self.now()
        hook = self.container.pre_stop
        if hook is not None:
            self._run_pre_stop(hook, began + grace)
        left = max(began + grace - self.now(), _MIN_GRACE_AFTER_PRESTOP if hook is not None else 0.0)
        in_time = self._signal_and_wait(left)
        with self._lock:
            self._running = False
        self._set_ready(False)
        if self._process is not None:
            self._emit("Exited", self._exit_message(in_time, grace), result="success" if in_time else "failure")

    def _exit_message(self, in_time: bool, grace: float) -> str:
        assert self._process is not None
        if in_time:
            return f"container {self.container.name} exited with code {self._process.returncode}"
        return (
            f"container {self.container.name} was still running at the end of its {grace:g}s grace period: "
            "killed (SIGKILL)"
        )

    def _signal_and_wait(self, grace: float, *, quiet: bool = False) -> bool:
        """SIGTERM the process, SIGKILL its group after ``grace`` simulated seconds; True if it
        exited by itself."""
        process = self._process
        if process is None:
            return True
        if process.poll() is not None:
            _kill_group(process)
            return True
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        if not quiet:
            self._emit(
                "Signalled",
                f"SIGTERM sent to container {self.container.name} (pid {process.pid}); SIGKILL in {grace:.1f}s",
            )
        try:
            process.wait(grace / self.speed)
            return True
        except subprocess.TimeoutExpired:
            return False
        finally:
            _kill_group(process)

    def _run_pre_stop(self, hook: Hook, deadline: float) -> None:
        """The ``preStop`` hook, within the grace period (``executePreStopHook``,
        ``kuberuntime_container.go``; ``pkg/kubelet/lifecycle/handlers.go``): an ``exec`` fails
        on a status other than 0, an ``httpGet`` only when no answer comes (its status is not
        looked at), a ``tcpSocket`` is not a handler the kubelet runs; a failure is a
        ``FailedPreStopHook`` event whose message never holds the hook's output ("so that
        secrets won't leak"), and a hook cut off by the end of the grace period is no event."""
        timeout = max((deadline - self.now()) / self.speed, MIN_TIMEOUT)
        if isinstance(hook, SleepAction):
            self._sleep_until(min(self.now() + hook.seconds, deadline))
            return
        if isinstance(hook, TCPSocketAction):
            failed = True
        elif isinstance(hook, HTTPGetAction):
            attempt = self._attempt(hook, timeout)
            failed = not attempt.answered
        else:
            attempt = self._attempt(hook, timeout)
            failed = attempt.result in ("failure", "error") and self.now() < deadline
        if failed:
            self._emit("FailedPreStopHook", "PreStopHook failed", result="failure", warning=True)

    def _delete_pod(self, outcome: Outcome) -> None:
        deleted = self.now()
        outcome.terminated_at = deleted
        self._deleting.set()
        self._emit("Killing", f"Stopping container {self.container.name}")
        grace = float(self.container.termination_grace_period_seconds)
        hook = self.container.pre_stop
        if hook is not None:
            self._run_pre_stop(hook, deleted + grace)
        left = max(deleted + grace - self.now(), _MIN_GRACE_AFTER_PRESTOP if hook is not None else 0.0)
        in_time = self._signal_and_wait(left)
        process = self._process
        assert process is not None
        code = process.returncode
        with self._lock:
            self._running = False
        after = self.now() - deleted
        if in_time:
            outcome.exited_in_time = True
            outcome.exit_code = code
            ok = code == 0
            self._emit(
                "Exited",
                f"container {self.container.name} exited with code {code} {after:.1f}s after the deletion, "
                f"inside its {grace:g}s grace period",
                result="success" if ok else "failure",
                warning=not ok,
            )
        else:
            outcome.exited_in_time = False
            outcome.exit_code = code
            self._emit(
                "Exited",
                f"container {self.container.name} was still running at the end of its {grace:g}s grace period: "
                "killed (SIGKILL)",
                result="failure",
                warning=True,
            )
        self._set_ready(False)
        failed = sum(1 for e in self.events if e.event == "Unhealthy" and e.probe == "readiness" and e.t >= deleted)
        not_ready = next((e.t for e in self.events if e.event == "NotReady" and e.t >= deleted), None)
        summary = f"deleted at {deleted:.1f}s; {failed} readiness probe(s) failed during termination"
        if not_ready is not None:
            summary += f"; not ready {not_ready - deleted:.1f}s after the deletion"
        self._emit("Summary", summary, result="success" if outcome.ok else "failure", warning=not outcome.ok)

    # -- the workers (pkg/kubelet/prober/worker.go)

    def _worker(self, probe: Probe) -> None:
        period = float(probe.period_seconds)
        trigger = self._readiness_trigger if probe.kind == "readiness" else None
        tick = 0
        at = 0.0
        state = {"container_id": 0, "on_hold": False, "last": None, "run": 0}
        while not self._stopping.is_set():
            if not self._do_probe(probe, at, state):
                return
            now = self.now()
            due = (tick + 1) * period
            if due <= now:  # the probe took longer than a period: one tick kept, the rest dropped
                tick = int(now // period)
                at = now
                continue
            if not self._sleep_until(due, *(() if trigger is None else (trigger,))):
                if trigger is None or self._stopping.is_set():
                    return
                trigger.clear()  # a manual run (prober_manager.go): now, off the ticker's beat
                at = self.now()
                continue
            tick += 1
            at = due

    def _do_probe(self, probe: Probe, at: float, state: dict[str, Any]) -> bool:
        kind = probe.kind
        with self._lock:
            container_id, running, started_at, started = (
                self._container_id,
                self._running,
                self._started_at,
                self._started,
            )
        if state["container_id"] != container_id:
            state["container_id"] = container_id
            state["on_hold"] = False
        if state["on_hold"]:
            return True
        if not running:
            if kind == "readiness":
                self._set_ready(False)
            return True
        if self._deleting.is_set() and kind in ("liveness", "startup"):
            return False
        # Whole seconds since the container started, as the kubelet truncates them.
        if int(at - started_at + 1e-6) < probe.initial_delay_seconds:
            return True
        if started and kind == "startup":
            return True
        if not started and kind != "startup":
            return True
        attempt = _Attempt("error", "")
        timeout = max(probe.timeout_seconds / self.speed, MIN_TIMEOUT)
        for _ in range(_MAX_PROBE_RETRIES):
            try:
                attempt = self._attempt(probe.action, timeout)
            except Exception as exc:  # a probe that cannot run is an error, never a dead worker
                attempt = _Attempt("error", f"{type(exc).__name__}: {exc}")
            if attempt.result != "error":
                break
        if self._stopping.is_set():
            return False
        if self.verbose:
            first = _first_line(attempt.output)
            said = f"{probe.title} probe {attempt.result}" + (f": {first}" if first else "")
            self._emit("Probed", said, probe=kind, result=attempt.result)
        if attempt.result == "error":
            self._emit(
                "Unhealthy",
                f"{probe.title} probe errored and resulted in unknown state: {attempt.output}",
                probe=kind,
                result="error",
                warning=True,
            )
            return True
        if attempt.result == "warning":
            self._emit(
                "ProbeWarning",
                f"{probe.title} probe warning: {attempt.output}",
                probe=kind,
                result="warning",
                warning=True,
            )
        elif attempt.result == "failure":
            self._emit(
                "Unhealthy", f"{probe.title} probe failed: {attempt.output}", probe=kind, result="failure", warning=True
            )
        result = "failure" if attempt.result == "failure" else "success"
        if state["last"] == result:
            state["run"] += 1
        else:
            state["last"], state["run"] = result, 1
        if (result == "failure" and state["run"] < probe.failure_threshold) or (
            result == "success" and state["run"] < probe.success_threshold
        ):
            return True
        self._set_result(probe, result, container_id)
        if kind in ("liveness", "startup") and result == "failure":
            state["on_hold"], state["run"] = True, 0
        return True

    def _set_result(self, probe: Probe, result: str, container_id: int) -> None:
        with self._lock:
            if container_id != self._container_id:
                return
            changed = self._results.get(probe.kind) != result
            self._results[probe.kind] = result
        if probe.kind == "readiness":
            self._set_ready(result == "success")
        elif probe.kind == "startup" and result == "success":
            with self._lock:
                newly = not self._started
                self._started = True
            if newly:
                self._emit(
                    "StartupSucceeded",
                    f"container {self.container.name} started: its startup probe passed",
                    probe="startup",
                    result="success",
                )
                if "readiness" not in self.container.probes:
                    self._set_ready(True)
        elif result == "failure":
            with self._lock:
                if self._kill is None:
                    self._kill = (probe.kind, probe)
                    self._kill_due.set()
            self._wake()
        if changed:
            self._sync()

    def _sync(self) -> None:
        """A pod sync, as a changed probe result causes one: ``UpdatePodStatus``
        (``pkg/kubelet/prober/prober_manager.go``) triggers the readiness worker at once when
        the container has started but is not ready ("Trigger an immediate run of the
        readinessProbe to update ready state")."""
        with self._lock:
            waiting = self._started and self._running and not self._ready
        if waiting and "readiness" in self.container.probes:
            self._readiness_trigger.set()
            self._wake()

    def _attempt(self, action: Action | Hook, timeout: float) -> _Attempt:
        """One try of ``action`` with ``timeout`` real seconds."""
        if isinstance(action, ExecAction):
            return _exec_attempt(action.command, timeout, self.cwd)
        if isinstance(action, SleepAction):  # pragma: no cover - handled by the caller
            return _Attempt("success", "")
        host = getattr(action, "host", "") or self.target
        port = self._port(action.port)
        if port is None:
            return _Attempt("error", f"unable to find port {action.port!r} in container {self.container.name}")
        if isinstance(action, HTTPGetAction):
            path = action.path if action.path.startswith("/") else "/" + action.path
            url = f"{action.scheme.lower()}://{_address(host, port)}{path}"
            return _http_attempt(url, action.headers, timeout)
        if isinstance(action, TCPSocketAction):
            return _tcp_attempt(host, port, timeout)
        return _grpc_attempt(host, port, action.service, timeout)

    def _port(self, port: int | str) -> int | None:
        """The local port for a manifest's port (``extractPort``, ``pkg/kubelet/prober/prober.go``):
        a name is looked up among the container's ports, then the number it names; each step
        goes through ``port_map``."""
        if str(port) in self.port_map:
            return self.port_map[str(port)]
        if isinstance(port, str):
            if port in self.container.ports:
                port = self.container.ports[port]
            elif port.isdigit():
                port = int(port)
            else:
                return None
        return self.port_map.get(str(port), port)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL what is left of ``process``'s process group (its own session, so the
    container's): when a container stops, the runtime ends every process in it, not only the
    first one. Waits for ``process`` itself."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _first_line(text: str) -> str:
    return text.strip().split("\n", 1)[0][:200]


def _argv(cmd: str | Sequence[str] | None, what: str) -> list[str]:
    """``cmd`` as an argument list: a string is split as a shell splits words.

    Raises:
        ValueError: ``cmd`` is empty, or a string a shell could not split (an open quote).
    """
    if cmd is None:
        return []
    try:
        argv = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc} in {cmd!r}") from None
    if not argv:
        raise ValueError(f"{what} is empty")
    return argv


def _mapped_ports(container: Container, port_map: Mapping[str | int, int]) -> dict[str, int]:
    """``port_map`` by the manifest's port as text, a name standing for its number too (the
    kubelet resolves a name to its ``containerPort`` first).

    Raises:
        ValueError: a key is neither a port number nor one of the container's port names, or
            a local port is not 1 to 65535.
    """
    mapped: dict[str, int] = {}
    for key, local in port_map.items():
        if isinstance(local, bool) or not isinstance(local, int) or not 0 < local < 65536:
            raise ValueError(f"port_map: the local port for {key!r} is 1 to 65535, got {local!r}")
        name = str(key)
        if name in container.ports:
            mapped.setdefault(str(container.ports[name]), local)
        elif not name.isdigit():
            named = ", ".join(container.ports) or "none"
            raise ValueError(
                f"port_map: no port named {name!r} in container {container.name} (its named ports: {named})"
            )
        mapped[name] = local
    return mapped


# --- the command line --------------------------------------------------------------------


def _port_map(text: str) -> tuple[str, int]:
    name, sep, port = text.partition("=")
    if not sep or not name or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(
            f"expected NAME=PORT (a manifest's port name or number, a local port), got {text!r}"
        )
    return name, int(port)


def _env(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def _number(least: float, *, strict: bool) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and (value > least if strict else value >= least)):
            raise argparse.ArgumentTypeError(
                f"expected a finite number {'>' if strict else '>='} {least:g}, got {text!r}"
            )
        return value

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``healthprobe kubelet`` options, added to ``parser``."""
    parser.add_argument("manifest", help="a Pod, a workload (Deployment...) or a container spec, YAML; - for stdin")
    parser.add_argument("--container", help="CONTAINER or POD/CONTAINER, when several have probes")
    parser.add_argument("--target", default="127.0.0.1", help="the pod's address (default 127.0.0.1)")
    parser.add_argument(
        "--port-map",
        type=_port_map,
        action="append",
        default=[],
        metavar="NAME=PORT",
        help="a manifest's port (name or number) to a local port; repeatable",
    )
    parser.add_argument(
        "--duration", type=_number(0, strict=False), help="simulated seconds to run (default: until it ends)"
    )
    parser.add_argument(
        "--speed", type=_number(0, strict=True), default=1.0, help="simulated seconds per real second (default 1)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON event a line")
    parser.add_argument("--verbose", "-v", action="store_true", help="also print every probe (Probed)")
    parser.add_argument("--cmd", help="start the container's process (a command line; the container's env is added)")
    parser.add_argument("--restart-cmd", help="after Killing (or an exit), start this as the new container")
    parser.add_argument(
        "--env",
        type=_env,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="environment for --cmd and --restart-cmd; repeatable",
    )
    parser.add_argument(
        "--terminate-at",
        type=_number(0, strict=False),
        metavar="S",
        help="delete the pod at S simulated seconds (needs --cmd)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m healthprobe.kubelet``: the same as ``healthprobe kubelet`` (:func:`run_command`)."""
    parser = argparse.ArgumentParser(prog="healthprobe kubelet", description=DESCRIPTION)
    add_arguments(parser)
    return run_command(parser.parse_args(argv), parser)


def run_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Simulate the kubelet's probes of a manifest's container (``healthprobe kubelet``).

    Prints one event a line on stdout (``--json``: one JSON object a line with ``t``,
    ``container``, ``probe``, ``result``, ``event``, ``message``, ``type``); the processes'
    output goes to stderr.

    Args:
        args: the options of :func:`add_arguments`, parsed.
        parser: where usage errors go (``parser.error``: one line, exit status 2): an
            unreadable or invalid manifest, ``--terminate-at`` without ``--cmd``, a ``--cmd``
            that cannot start.

    Returns:
        0 when no probe killed the container, its process did not crash (exit by itself with
        a status other than 0) and, after ``--terminate-at``, it exited with 0 inside its
        grace period; 1 otherwise; 128 + the signal's number on SIGINT, SIGTERM or SIGHUP,
        after stopping the container's process.
    """
    try:
        text = sys.stdin.read() if args.manifest == "-" else open(args.manifest, encoding="utf-8").read()  # noqa: SIM115
    except OSError as exc:
        parser.error(f"cannot read {args.manifest}: {exc.strerror or exc}")
    try:
        container = pick_container(load_containers(text), args.container)
    except ImportError as exc:
        parser.error(str(exc))
    except ValueError as exc:
        parser.error(f"{args.manifest}: {exc}")
    if args.terminate_at is not None and not args.cmd:
        parser.error("--terminate-at needs the container's process: give --cmd")

    def show(event: Event) -> None:
        line = json.dumps(event.as_dict()) if args.json else event.line()
        print(line, flush=True)

    try:
        simulation = Simulation(
            container,
            target=args.target,
            port_map=dict(args.port_map),
            speed=args.speed,
            cmd=args.cmd,
            restart_cmd=args.restart_cmd,
            env=dict(args.env),
            verbose=args.verbose,
            on_event=show,
        )
    except ValueError as exc:  # an empty or unsplittable --cmd, a --port-map to no port
        message = str(exc)
        for field, option in (("restart_cmd", "--restart-cmd"), ("cmd", "--cmd"), ("port_map", "--port-map")):
            if message.startswith(field):
                message = option + message[len(field) :]
                break
        parser.error(message)
    received: list[int] = []

    def interrupt(signum: int, _frame: object) -> None:
        # SIGTERM and SIGHUP end the simulation as Ctrl-C does, so that the container's
        # process is stopped rather than left behind; a second signal does not cut that short.
        if not received:
            received.append(signum)
            raise KeyboardInterrupt

    previous = {number: signal.signal(number, interrupt) for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        outcome = simulation.run(duration=args.duration, terminate_at=args.terminate_at)
    except OSError as exc:
        parser.error(f"cannot start --cmd: {exc.strerror or exc}")
    except KeyboardInterrupt:
        return 128 + (received[0] if received else signal.SIGINT)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    return 0 if outcome.ok else 1


if __name__ == "__main__":  # pragma: no cover - python -m healthprobe.kubelet
    sys.exit(main())
