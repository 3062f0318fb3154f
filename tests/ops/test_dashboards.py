"""The Grafana dashboard and the Prometheus alerts use only series that /metrics serves, so they cannot rot."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

import bots.metrics  # noqa: F401  (the bot processes' series, as their PROMETHEUS_MULTIPROC_DIR files show them)

pytestmark = pytest.mark.django_db

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
# Every Lorebot and django-prometheus series starts so; label names and PromQL functions never do.
SERIES = re.compile(r"\b(?:rag|django)_[a-z0-9_]+")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "summary": ("_count", "_sum")}


def served_names() -> set[str]:
    response = Client(REMOTE_ADDR="127.0.0.1").get("/metrics")
    assert response.status_code == 200
    names: set[str] = set()
    for family in text_string_to_metric_families(response.content.decode()):
        names.add(family.name)
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


def dashboard_expressions() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "lorebot.json").read_text())
    return [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]


def alert_expressions() -> list[str]:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


@pytest.mark.parametrize("source", [dashboard_expressions, alert_expressions], ids=["grafana", "alerts"])
def test_every_series_referenced_is_served(source: Callable[[], list[str]]) -> None:
    expressions = source()
    assert expressions
    served = served_names()
    for expr in expressions:
        referenced = set(SERIES.findall(expr))
        assert referenced, f"no Lorebot series in {expr!r}"
        assert referenced <= served, f"{sorted(referenced - served)} in {expr!r} are not served at /metrics"


def test_the_dashboard_covers_what_operators_ask_for() -> None:
    text = " ".join(dashboard_expressions())
    for series in ("rag_ingest_documents_total", "rag_chat_questions_total", "rag_chat_answer_duration_seconds_bucket",
                   "rag_generation_tokens_total", "rag_pipeline_errors_total", "rag_feedback_total"):
        assert series in text, series
    alerts = " ".join(alert_expressions())
    for series in ("rag_http_requests_total", "rag_chat_answer_duration_seconds_bucket", "rag_ingest_stale_jobs"):
        assert series in alerts, series
