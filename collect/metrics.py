"""
`GET /metrics` in Prometheus' text format.

Two kinds of figures, kept apart on purpose:
- Facts of the campaign (ballots by channel and status, the review queue, SMS by status, import
  rows by outcome) are read from the database at scrape time. They are then exact whichever
  worker or CLI process wrote them, and survive restarts; per-process counters would be neither.
  A scrape runs a few grouped queries; their answer is kept FACTS_TTL seconds so that several
  Prometheus servers, or a dashboard left open, do not become a load of their own.
- Timings (how long a write waited and took in the group writer, per request) are in-process
  histograms (observed through GroupWriter's `on_written`). With several uvicorn workers set
  PROMETHEUS_MULTIPROC_DIR to an empty directory (deploy/run-local.sh and the Dockerfile do)
  and prometheus_client sums the workers.

The route is collect/web/metrics.py.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from collect.store import Store
from collect.store.tables import AUDIT, BALLOT, REVIEW_ITEM, SMS_MESSAGE

FACTS_TTL = 15.0  # seconds
_PAPER_OUTCOMES = {"counted": "accepted", "already_received": "already_received"}

WRITE_SECONDS = Histogram(
    "collect_write_seconds",
    "Time from a request's write being queued to its commit (group writer), seconds.",
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)


@dataclass(frozen=True, slots=True)
class Facts:
    ballots: list[tuple[str, str, int]]  # channel, status, n
    review_open: list[tuple[str, int]]  # reason, n
    sms: list[tuple[str, str, int]]  # kind, status, n
    import_rows: dict[str, int]  # outcome → rows


def read_facts(store: Store) -> Facts:
    with store.reader.connect() as connection:
        ballots = connection.execute(
            sa.select(BALLOT.c.channel, BALLOT.c.status, sa.func.count()).group_by(
                BALLOT.c.channel, BALLOT.c.status
            )
        ).all()
        review = connection.execute(
            sa.select(REVIEW_ITEM.c.reason, sa.func.count())
            .where(REVIEW_ITEM.c.status == "open")
            .group_by(REVIEW_ITEM.c.reason)
        ).all()
        sms = connection.execute(
            sa.select(SMS_MESSAGE.c.kind, SMS_MESSAGE.c.status, sa.func.count()).group_by(
                SMS_MESSAGE.c.kind, SMS_MESSAGE.c.status
            )
        ).all()
        # Imports are few and their counts sit in their audit entries (the same figures the
        # operator saw): summed here rather than in SQL, whose JSON functions differ by database.
        details = connection.execute(
            sa.select(AUDIT.c.detail).where(AUDIT.c.action.in_(("import.calls", "import.paper")))
        ).scalars()
        rows: dict[str, int] = {"accepted": 0, "already_received": 0, "quarantined": 0}
        for detail in details:
            detail = detail or {}
            if "accepted" in detail:
                for outcome in rows:
                    rows[outcome] += int(detail.get(outcome) or 0)
            else:  # paper imports count forms by outcome
                for outcome, n in (detail.get("by_outcome") or {}).items():
                    rows[_PAPER_OUTCOMES.get(outcome, "quarantined")] += int(n)
    return Facts(
        [(str(c), str(s), int(n)) for c, s, n in ballots],
        [(str(r), int(n)) for r, n in review],
        [(str(d), str(s), int(n)) for d, s, n in sms],
        rows,
    )


class FactsCollector(Collector):
    """The campaign's facts from the database, cached for FACTS_TTL seconds."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._cached: tuple[float, Facts] | None = None

    def facts(self) -> Facts:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] > FACTS_TTL:
                self._cached = (now, read_facts(self.store))
            return self._cached[1]

    def collect(self) -> Iterator[Metric]:
        facts = self.facts()
        ballots = GaugeMetricFamily(
            "collect_ballots", "Ballots in the store, by channel and status.", labels=["channel", "status"]
        )
        for channel, status, n in facts.ballots:
            ballots.add_metric([channel, status], n)
        yield ballots
        review = GaugeMetricFamily("collect_review_open", "Open review items, by reason.", labels=["reason"])
        for reason, n in facts.review_open:
            review.add_metric([reason], n)
        yield review
        sms = GaugeMetricFamily(
            "collect_sms_messages",
            "SMS sent, by kind (question, link) and delivery status (sent, delivered, failed …).",
            labels=["kind", "status"],
        )
        for kind, status, n in facts.sms:
            sms.add_metric([kind, status], n)
        yield sms
        imports = GaugeMetricFamily(
            "collect_import_rows", "Rows of imported files, by outcome.", labels=["outcome"]
        )
        for outcome, n in sorted(facts.import_rows.items()):
            imports.add_metric([outcome], n)
        yield imports


def registry_for(store: Store) -> CollectorRegistry:
    """The registry a scrape reads: the facts, and this process's (or every worker's) timings."""
    registry = CollectorRegistry()
    registry.register(FactsCollector(store))
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(WRITE_SECONDS)
    return registry
