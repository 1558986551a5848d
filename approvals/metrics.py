"""Operational metrics in Prometheus text format, computed from the database at scrape time
(so every process reports the same truth, and nothing is lost on restart)."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Min, Q
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from approvals.models import Action, Outbox
from approvals.states import Status
from audit.models import AuditEvent
from core.people import is_active_person
from rollout.models import KillSwitch

DECISION_BUCKETS = (5, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)


class AirlockCollector:
    def collect(self) -> Iterator[Metric]:
        decisions = CounterMetricFamily(
            "airlock_gate_decisions",
            "Gate decisions by agent and reason code",
            labels=["agent", "reason_code"],
        )
        for row in Action.objects.values("agent__slug", "reason_code").annotate(n=Count("id")):
            decisions.add_metric([row["agent__slug"], row["reason_code"]], row["n"])
        yield decisions

        now = timezone.now()
        backlog = GaugeMetricFamily(
            "airlock_pending_actions", "Pending actions by agent", labels=["agent"]
        )
        oldest = GaugeMetricFamily(
            "airlock_oldest_pending_age_seconds",
            "Age of the oldest pending action",
            labels=["agent"],
        )
        for row in (
            Action.objects.filter(status=Status.PENDING)
            .values("agent__slug")
            .annotate(n=Count("id"), first=Min("created_at"))
        ):
            backlog.add_metric([row["agent__slug"]], row["n"])
            oldest.add_metric([row["agent__slug"]], (now - row["first"]).total_seconds())
        yield backlog
        yield oldest

        durations = [
            (d - c).total_seconds()
            for c, d in Action.objects.filter(
                decided_at__isnull=False,
                required_approvals__gt=0,
                decided_at__gte=now - timedelta(days=1),
            )
            .values_list("created_at", "decided_at")
            .order_by()[:100000]
        ]
        buckets = [[str(b), sum(1 for x in durations if x <= b)] for b in DECISION_BUCKETS]
        buckets.append(["+Inf", len(durations)])
        histogram = HistogramMetricFamily(
            "airlock_time_to_decision_seconds", "Time from submission to human decision (last 24 h)"
        )
        histogram.add_metric([], buckets, sum(durations))
        yield histogram

        engaged = GaugeMetricFamily(
            "airlock_kill_switches_engaged", "Engaged kill switches by scope", labels=["scope"]
        )
        for row in (
            KillSwitch.objects.filter(released_at__isnull=True, is_drill=False)
            .values("scope")
            .annotate(n=Count("id"))
        ):
            engaged.add_metric([row["scope"]], row["n"])
        yield engaged

        trips = CounterMetricFamily(
            "airlock_circuit_breaker_trips", "Circuit-breaker trips by agent", labels=["agent"]
        )
        for row in (
            AuditEvent.objects.filter(verb="circuit_breaker.tripped")
            .values("agent_slug")
            .annotate(n=Count("id"))
        ):
            trips.add_metric([row["agent_slug"]], row["n"])
        yield trips

        outbox = GaugeMetricFamily(
            "airlock_outbox_rows",
            "Owed webhooks and notifications by kind and state",
            labels=["kind", "state"],
        )
        counts = Outbox.objects.values("kind").annotate(
            failed=Count("id", filter=Q(failed_at__isnull=False)),
            undelivered=Count("id", filter=Q(delivered_at__isnull=True, failed_at__isnull=True)),
        )
        for row in counts:
            outbox.add_metric([row["kind"], "failed"], row["failed"])
            outbox.add_metric([row["kind"], "undelivered"], row["undelivered"])
        yield outbox

        chain = GaugeMetricFamily("airlock_audit_events", "Audit events in the chain")
        chain.add_metric([], AuditEvent.objects.count())
        yield chain


def _authorised(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer ") and hmac.compare_digest(header[7:], token):
        return True
    return is_active_person(request.user) and request.user.is_staff


def metrics_view(request: HttpRequest) -> HttpResponse:
    """``/metrics`` for a scraper holding ``METRICS_TOKEN`` (or a staff session)."""
    if not _authorised(request):
        return HttpResponse("metrics need the scraper token", status=403, content_type="text/plain")
    registry = CollectorRegistry()
    registry.register(AirlockCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
