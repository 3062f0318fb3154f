"""Prometheus series of the Django side (HTTP, ingest jobs) and the /metrics page.

The engine's series are in ragcore.metrics, the chat's and the WebSocket's in console.chat.metrics
and the bots' in bots.metrics. With PROMETHEUS_MULTIPROC_DIR set, every process writes its values to files
in that folder and the page sums them (prometheus_client's MultiProcessCollector); otherwise
it shows this process's own registry.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterator
from datetime import timedelta

import structlog
from django.conf import settings
from django.db.models import Count, Min
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from console.chat import metrics as chat_metrics  # noqa: F401  (its series are listed before the first question)
from console.models import IngestJob
from ragcore.metrics import LATENCY_BUCKETS, PIPELINE_ERRORS

__all__ = ["HTTP_REQUESTS", "HTTP_SECONDS", "INGEST_JOBS", "LATENCY_BUCKETS", "PIPELINE_ERRORS", "exposition", "metrics"]

log = structlog.get_logger(__name__, component="metrics")

# path: the URL pattern that matched (e.g. "/status/<int:job_id>"), "<unmatched>" for a 404 that
# matched none, so a scanner trying random URLs cannot grow the label set.
HTTP_REQUESTS = Counter("rag_http_requests", "HTTP requests by method, route and status.", ["method", "path", "status"])
HTTP_SECONDS = Histogram(
    "rag_http_request_duration_seconds", "HTTP request latency by method and route.", ["method", "path"],
    buckets=LATENCY_BUCKETS,
)
# state: succeeded, failed, partially_failed, crashed.
INGEST_JOBS = Counter("rag_ingest_jobs", "Ingest jobs finished, by final state.", ["state"])
# outcome: succeeded, failed (a wrong user name or password), throttled (refused unchecked: too many failures).
LOGIN_ATTEMPTS = Counter("rag_login_attempts", "Logins by outcome.", ["outcome"])
# reason: not_utf8 (a body that is not UTF-8), bad_text (a NUL in a query-string or form field).
HTTP_REFUSED = Counter("rag_http_refused", "Requests refused before any handler, by reason.", ["reason"])


class IngestQueueCollector(Collector):
    """Queue depth and stuck jobs, read from the database at scrape time (so never stale)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            depth = {str(IngestJob.State.QUEUED): 0, str(IngestJob.State.RUNNING): 0}
            waiting = IngestJob.objects.filter(state__in=list(depth)).values("state").order_by().annotate(n=Count("pk"))
            depth.update({row["state"]: row["n"] for row in waiting})
            cutoff = timezone.now() - timedelta(seconds=settings.INGEST_STALE_SECONDS)
            stale = IngestJob.objects.filter(state=IngestJob.State.RUNNING, heartbeat_at__lt=cutoff).count()
            oldest = IngestJob.objects.filter(state=IngestJob.State.QUEUED).aggregate(t=Min("created_at"))["t"]
        except Exception as exc:  # a scrape must still show every other series when the database is down
            log.warning("metrics.queue_unavailable", error=f"{type(exc).__name__}: {exc}")
            return
        queue = GaugeMetricFamily("rag_ingest_queue_depth", "Ingest jobs waiting or running now.", labels=["state"])
        for state, n in depth.items():
            queue.add_metric([state], n)
        yield queue
        yield GaugeMetricFamily(
            "rag_ingest_stale_jobs", "Running jobs whose worker has not beaten for INGEST_STALE_SECONDS.", value=stale
        )
        age = (timezone.now() - oldest).total_seconds() if oldest else 0.0
        yield GaugeMetricFamily("rag_ingest_oldest_queued_seconds", "Age of the oldest queued ingest job.", value=age)


def multiprocess_dir() -> str:
    """The folder prometheus_client shares between processes, or "" when each process counts alone."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")


def exposition() -> bytes:
    """The text of /metrics: every process's series (or this one's) plus the ingest queue."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    queue = CollectorRegistry()
    queue.register(IngestQueueCollector())
    return generate_latest(registry) + generate_latest(queue)


def mark_process_dead() -> None:
    """At exit: this process's live gauges (open WebSockets) stop counting towards the sums."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(os.getpid())


def _may_read_metrics(request: HttpRequest) -> bool:
    token = settings.METRICS_BEARER_TOKEN
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
            return True
    # The address the request middleware resolved (behind TRUSTED_PROXIES: the real client, not nginx).
    client_ip = getattr(request, "client_ip", request.META.get("REMOTE_ADDR", ""))
    return client_ip in settings.METRICS_ALLOWED_IPS


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics, for the scraper only: an address in METRICS_ALLOWED_IPS or METRICS_BEARER_TOKEN."""
    if not _may_read_metrics(request):
        return HttpResponse("metrics are not served to this client\n", status=403, content_type="text/plain")
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
