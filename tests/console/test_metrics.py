"""/metrics: the engine's and the web chat's series, for the scraper's address only."""

from __future__ import annotations

import pytest
from django.test import Client, override_settings

from ragcore.metrics import PIPELINE_ERRORS


@pytest.mark.django_db
def test_metrics_lists_the_pipeline_error_counter_for_an_allowed_address() -> None:
    PIPELINE_ERRORS.labels("loader").inc()
    response = Client(REMOTE_ADDR="127.0.0.1").get("/metrics")
    assert response.status_code == 200
    assert 'rag_pipeline_errors_total{component="loader"}' in response.content.decode()


@pytest.mark.django_db
@override_settings(METRICS_ALLOWED_IPS=["10.0.0.5"])
def test_metrics_are_refused_to_other_addresses() -> None:
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 403
