"""The webhook publisher (docs/operating.md, "Transition events") against a real HTTP
receiver on a loopback port: damping after N failures, once per interval, the restored
notice, a receiver that hangs (the publisher times out, probes answer at once, through both
adapters under real servers), a receiver that is down, retries, a full queue, and its
metrics through promtool; with the standard library and with httpx."""

from __future__ import annotations

import http.server
import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import prometheus_client
import pytest

from healthprobe import HealthRegistry
from healthprobe.prometheus import WebhookCollector
from healthprobe.webhook import Notice, WebhookPublisher

from . import doc_pages
from .support import free_port, promtool_check_metrics, sample_value, samples, wait_until
from .test_transitions import Switch, served


class Receiver:
    """A real HTTP server in a thread that records each POST and answers as told: a status
    code, or no answer at all until released (``hang``)."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.status = 204
        self.hang = threading.Event()  # set: hold every answer until released
        self.release = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.posts.append((dict(self.headers), json.loads(body)))
                if receiver.hang.is_set():
                    receiver.release.wait(30)
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def documents(self) -> list[dict[str, Any]]:
        return [document for _headers, document in self.posts]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


CLIENTS = pytest.mark.parametrize("client", ["urllib", "httpx"])


def registry_with(switch: Switch, name: str = "dependency") -> HealthRegistry:
    registry = HealthRegistry(default_cache_ttl=0)
    registry.add_check(name, switch, probes=("readiness",))
    registry.mark_started()
    return registry


def run(registry: HealthRegistry, switch: Switch, mode: str, times: int) -> None:
    switch.mode = mode
    for _ in range(times):
        registry.run("readiness")


@CLIENTS
def test_damping_after_n_once_per_interval_and_restored(receiver: Receiver, client: str) -> None:
    switch = Switch()
    registry = registry_with(switch)
    publisher = WebhookPublisher(
        receiver.url,
        after_failures=3,
        min_interval=60,
        probes=False,
        client=client,
        instance="pod-1",
        headers={"Authorization": "Bearer t0ken"},
    ).attach(registry)
    assert publisher.client == client
    run(registry, switch, "pass", 2)
    run(registry, switch, "fail", 2)
    run(registry, switch, "pass", 1)  # two failures, then a pass: nothing
    run(registry, switch, "raise", 5)  # the third in a row notifies, once
    run(registry, switch, "pass", 2)  # restored, once
    run(registry, switch, "fail", 4)  # again, within the interval: nothing
    run(registry, switch, "pass", 1)  # and no restored notice for it
    publisher.close()
    documents = receiver.documents()
    assert [(d["event"], d["kind"], d["name"], d["status"], d["reason"], d["failures"]) for d in documents] == [
        ("failing", "check", "dependency", "fail", "error", 3),
        ("restored", "check", "dependency", "pass", "recovered", 5),
    ]
    failing, restored = documents
    assert failing["instance"] == "pod-1" and "output" not in failing  # no exception text by default
    assert restored["since"] == failing["since"] and restored["seconds"] >= failing["seconds"] >= 0
    headers = receiver.posts[0][0]
    assert headers["Authorization"] == "Bearer t0ken" and headers["Content-Type"] == "application/json"
    assert publisher.counts == {"sent": 2, "failed": 0, "dropped": 0}


def test_a_notice_again_once_the_interval_is_over_and_probes_too(receiver: Receiver) -> None:
    switch = Switch()
    registry = registry_with(switch)
    interval = 1.0
    publisher = WebhookPublisher(receiver.url, after_failures=2, min_interval=interval, expose_output=True)
    publisher.attach(registry)
    run(registry, switch, "raise", 2)
    wait_until(lambda: len(receiver.posts) == 2, 10, "the check's and the probe's notices")
    noticed = time.monotonic()
    run(registry, switch, "pass", 1)
    run(registry, switch, "fail", 2)  # within the interval: held back
    wait_until(lambda: time.monotonic() > noticed + interval, 5, "the interval over", interval=0.02)
    run(registry, switch, "fail", 1)  # still failing, past the interval: notified now
    publisher.close()
    seen = [(d["event"], d["kind"], d["failures"]) for d in receiver.documents()]
    assert seen == [
        ("failing", "check", 2),
        ("failing", "probe", 2),
        ("restored", "check", 2),
        ("restored", "probe", 2),
        ("failing", "check", 3),
        ("failing", "probe", 3),
    ]
    # expose_output: the check's output (redacted), and the probe's failing checks.
    outputs = [d.get("output") for d in receiver.documents()]
    assert outputs[0] == "ConnectionError: s3cret-connection-detail"
    assert outputs[1] == "dependency failed" and outputs[2] is None


def test_restored_notices_can_be_turned_off(receiver: Receiver) -> None:
    switch = Switch()
    registry = registry_with(switch)
    publisher = WebhookPublisher(receiver.url, after_failures=1, restored=False, probes=False).attach(registry)
    run(registry, switch, "fail", 1)
    run(registry, switch, "pass", 1)
    publisher.close()
    assert [d["event"] for d in receiver.documents()] == ["failing"]


@pytest.mark.parametrize("adapter", ["asgi", "wsgi"])
def test_a_hanging_receiver_never_slows_a_probe(receiver: Receiver, adapter: str) -> None:
    receiver.hang.set()
    switch = Switch()
    registry = registry_with(switch)
    publisher = WebhookPublisher(
        receiver.url, after_failures=1, timeout=0.3, attempts=2, backoff=0, probes=False
    ).attach(registry)
    try:
        with served(adapter, registry) as url, httpx.Client(base_url=url, timeout=5) as client:
            switch.mode = "fail"
            slowest = 0.0
            for _ in range(10):
                started = time.monotonic()
                assert client.get("/readyz").status_code == 503
                slowest = max(slowest, time.monotonic() - started)
            assert slowest < 1.0  # generous: the publisher's wait is never the probe's
            wait_until(lambda: publisher.counts["failed"] == 1, 10, "the notice given up after its attempts")
            assert len(receiver.posts) == 2  # two attempts, each cut at the timeout
    finally:
        publisher.close(timeout=5)
        registry.close()


@CLIENTS
def test_a_receiver_that_is_down_counts_failed_and_logs_no_secret(
    client: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="healthprobe")
    port = free_port()  # nothing listens there
    switch = Switch()
    registry = registry_with(switch)
    publisher = WebhookPublisher(
        f"http://user:hunter2@127.0.0.1:{port}/hook?token=hunter2",
        after_failures=1,
        attempts=3,
        backoff=0.01,
        probes=False,
        client=client,
    ).attach(registry)
    run(registry, switch, "fail", 1)
    wait_until(lambda: publisher.counts["failed"] == 1, 10, "the notice given up")
    publisher.close()
    [record] = [r for r in caplog.records if "not sent" in r.getMessage()]
    assert "hunter2" not in record.getMessage() and "hunter2" not in repr(vars(record))
    assert publisher.counts == {"sent": 0, "failed": 1, "dropped": 0}


def test_retries_server_errors_but_not_client_errors(receiver: Receiver) -> None:
    switch = Switch()
    registry = registry_with(switch)
    publisher = WebhookPublisher(receiver.url, after_failures=1, attempts=3, backoff=0.01, probes=False)
    publisher.attach(registry)
    receiver.status = 503
    run(registry, switch, "fail", 1)
    wait_until(lambda: publisher.counts["failed"] == 1, 10, "given up after 3 attempts")
    assert len(receiver.posts) == 3
    receiver.status = 400
    run(registry, switch, "pass", 1)  # restored notice: refused, not tried again
    wait_until(lambda: publisher.counts["failed"] == 2, 10, "given up at once")
    assert len(receiver.posts) == 4
    publisher.close()


def test_a_full_queue_drops_the_oldest_and_counts(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="healthprobe")
    receiver.hang.set()
    switch = Switch()
    registry = HealthRegistry(default_cache_ttl=0)
    names = [f"dependency-{index}" for index in range(6)]
    for name in names:
        registry.add_check(name, switch)
    registry.mark_started()
    publisher = WebhookPublisher(
        receiver.url, after_failures=1, queue_size=2, timeout=10, attempts=1, probes=False
    ).attach(registry)
    switch.mode = "fail"
    registry.run("readiness", only=names[0])
    wait_until(lambda: len(receiver.posts) == 1, 10, "the first notice being sent")
    for name in names[1:]:
        registry.run("readiness", only=name)
    wait_until(lambda: publisher.counts["dropped"] == 3, 10, "three notices dropped")
    assert publisher.queued == 2
    assert len([r for r in caplog.records if "dropping the oldest notices" in r.getMessage()]) == 1
    receiver.release.set()
    publisher.close(timeout=10)
    assert [d["name"] for d in receiver.documents()] == [names[0], names[4], names[5]]
    assert publisher.counts == {"sent": 3, "failed": 0, "dropped": 3}


def test_metrics_pass_promtool(receiver: Receiver) -> None:
    switch = Switch()
    registry = registry_with(switch)
    publisher = WebhookPublisher(receiver.url, after_failures=1, probes=False).attach(registry)
    collectors = prometheus_client.CollectorRegistry()
    collectors.register(WebhookCollector(publisher))
    run(registry, switch, "fail", 1)
    wait_until(lambda: publisher.counts["sent"] == 1, 10, "one notice sent")
    text = prometheus_client.generate_latest(collectors).decode()
    promtool_check_metrics(text)
    found = samples(text)
    assert sample_value(found, "healthprobe_webhook_notices_total", outcome="sent") == 1.0
    assert sample_value(found, "healthprobe_webhook_notices_total", outcome="dropped") == 0.0
    assert sample_value(found, "healthprobe_webhook_queued_notices") == 0.0
    publisher.close()


def test_bad_settings_are_refused() -> None:
    for url in ("ftp://example.com/", "example.com", ""):
        with pytest.raises(ValueError):
            WebhookPublisher(url)
    for option, value in (
        ("after_failures", 0),
        ("attempts", 0),
        ("queue_size", 0),
        ("min_interval", -1),
        ("timeout", 0),
        ("backoff", float("nan")),
        ("client", "requests"),
    ):
        with pytest.raises(ValueError, match=option if option != "client" else "client"):
            WebhookPublisher("http://127.0.0.1:1/", **{option: value})


def test_a_notice_document() -> None:
    notice = Notice("failing", "check", "db", "fail", "timeout", 3, 1.5, 2.0, 3.5, "pod-1")
    assert json.loads(notice.as_json()) == {
        "event": "failing",
        "kind": "check",
        "name": "db",
        "status": "fail",
        "reason": "timeout",
        "failures": 3,
        "since": 1.5,
        "seconds": 2.0,
        "at": 3.5,
        "instance": "pod-1",
    }


# -- docs/operating.md, "Transition events" ------------------------------------------------------

DOC = doc_pages.page("operating.md")
PAGE_URL = "https://alerts.example.com/hooks/healthprobe"


def test_the_publisher_example_sends_to_a_real_receiver(receiver: Receiver) -> None:
    code = doc_pages.block(DOC, "python", contains="WebhookPublisher(")
    assert PAGE_URL in code
    namespace: dict[str, Any] = {}
    exec(code.replace(PAGE_URL, receiver.url), namespace)
    registry, publisher = namespace["registry"], namespace["publisher"]
    switch = Switch()
    registry.add_check("database", switch, cache_ttl=0)
    registry.mark_started()
    run(registry, switch, "fail", 3)
    publisher.close()
    assert [(d["event"], d["kind"], d["failures"]) for d in receiver.documents()] == [
        ("failing", "check", 3),
        ("failing", "probe", 3),
    ]
    assert receiver.posts[0][0]["Authorization"] == "Bearer change-me"
    # The document shown has the keys and kinds of values of a real one.
    shown = json.loads(doc_pages.block(DOC, "json", contains='"event":"failing"'))
    real = receiver.documents()[0]
    assert {k: type(v) for k, v in shown.items()} == {k: type(v) for k, v in real.items()}


def test_the_metrics_example_serves_the_webhook_counts(receiver: Receiver) -> None:
    code = doc_pages.block(DOC, "python", contains="WebhookCollector(publisher)")
    registry = registry_with(Switch())
    publisher = WebhookPublisher(receiver.url)
    namespace: dict[str, Any] = {"registry": registry, "publisher": publisher}
    exec(code, namespace)
    text = namespace["metrics"].expose(None)[1].decode()
    assert sample_value(samples(text), "healthprobe_webhook_notices_total", outcome="sent") == 0.0
    promtool_check_metrics(text)
