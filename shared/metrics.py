"""Prometheus metrics of the workers (downloader, analyzer, notifier), one registry each,
served at `/metrics` on the health port. The gateway has its own (`ingest/metrics.py`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.events import CallFailed, Event

DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)


@dataclass
class WorkerMetrics:
    """Messages handled and how long they waited; what became of the work; the analyzer's
    stages and jobs."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.messages = Counter(
            "rop_messages_total",
            "Broker messages handled, by consumer and outcome "
            "(ok, requeued: a dependency was away, retried, dead_lettered).",
            ["consumer", "outcome"],
            registry=self.registry,
        )
        self.handling = Histogram(
            "rop_message_handling_seconds",
            "Time to handle a broker message, by consumer.",
            ["consumer"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.lag = Histogram(
            "rop_message_lag_seconds",
            "From an event's occurrence to the start of its handling (queue lag), by consumer.",
            ["consumer"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.outcomes = Counter(
            "rop_outcomes_total",
            "What became of the work, by kind (download, analysis, delivery) and outcome "
            "(the event or code for downloads and analyses, the status for deliveries).",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.stage = Histogram(
            "rop_analysis_stage_seconds",
            "Time an analysis spent in each stage (decode, echo, vad, asr, speakers, scoring).",
            ["stage"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.jobs = Gauge(
            "rop_analysis_jobs",
            "Analysis jobs by state: queued (pending) and running (leased).",
            ["state"],
            registry=self.registry,
        )

    def count_outcome(self, kind: str, event: Event) -> None:
        """One finished download or analysis: its event, or for a failure its code."""
        outcome = event.code if isinstance(event, CallFailed) else event.TYPE
        self.outcomes.labels(kind, outcome).inc()
