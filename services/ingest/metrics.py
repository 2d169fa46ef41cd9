"""Prometheus metrics of the gateway, in a registry per application."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class IngestMetrics:
    """Requests, call outcomes and the outbox backlog."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.requests = Counter(
            "rop_http_requests_total",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "rop_http_request_duration_seconds",
            "HTTP request latency by route.",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )
        self.in_progress = Gauge(
            "rop_http_requests_in_progress",
            "HTTP requests being handled (a stopping gateway finishes them first).",
            registry=self.registry,
        )
        self.calls_accepted = Counter(
            "rop_calls_accepted_total",
            "Calls accepted by the CRM API, by outcome (success or skipped).",
            ["status"],
            registry=self.registry,
        )
        self.calls_rejected = Counter(
            "rop_calls_rejected_total",
            "Calls rejected by the CRM API, by error code.",
            ["code"],
            registry=self.registry,
        )
        self.outbox_backlog = Gauge(
            "rop_outbox_backlog",
            "Accepted calls whose events are not yet published to the broker.",
            registry=self.registry,
        )
