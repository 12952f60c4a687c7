"""What the gateway says about itself at ``GET /metrics``, in Prometheus' text format.

Every app has its own registry, so two gateways in one process (tests, benchmarks) do not
share counts. Requests are timed by an ASGI middleware around the whole app, so refusals and
failures are counted with the status the user got.
"""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Request latency from a 2 ms health probe to a 1000-image upload.
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
PATHS = ("/predict", "/health", "/metrics")  # others are counted as "other": bounded labels


class Metrics:
    """The gateway's counters and histograms."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "gateway_requests", "HTTP requests answered, by path and status.", ["path", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "gateway_request_seconds", "Time from request to the end of the answer, by path.", ["path"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.errors = Counter(
            "gateway_errors", "Requests refused or failed, by reason (no_files, triton_unavailable, ...).",
            ["reason"], registry=self.registry,
        )  # fmt: skip
        self.triton = Histogram(
            "gateway_triton_seconds", "Time a /predict request waited on Triton, retries included.",
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.retries = Counter(
            "gateway_triton_retries", "Calls to Triton retried after a transient failure.", registry=self.registry
        )
        self.images = Counter("gateway_images", "Images classified.", registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts and times every HTTP request, with the status sent (500 if none was)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            path = scope["path"] if scope["path"] in PATHS else "other"
            self.metrics.requests.labels(path, str(status)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - started)
