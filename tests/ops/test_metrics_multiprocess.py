"""/metrics with PROMETHEUS_MULTIPROC_DIR: two daphne processes and a `manage.py` process, one sum."""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.daphne_server import PYTHON, ROOT, Daphne, Site, base_env, start_daphne

pytestmark = pytest.mark.slow

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def scrape(server: Daphne) -> Samples:
    with urllib.request.urlopen(f"{server.http_url}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def site(tmp_path: Path) -> Site:
    """A migrated database and an empty multiprocess folder; no model needed, so no warm-up."""
    data = tmp_path / "data"
    data.mkdir()
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    env = base_env(data, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir), WARMUP_ON_START="False")
    subprocess.run([PYTHON, str(ROOT / "manage.py"), "migrate", "--noinput", "-v", "0"], env=env, cwd=ROOT, check=True)
    return Site(data, env)


@pytest.fixture
def servers(site: Site) -> Iterator[tuple[Daphne, Daphne]]:
    first = start_daphne(site, name="web-a")
    try:
        second = start_daphne(site, name="web-b")
    except Exception:
        first.stop()
        raise
    yield first, second
    first.stop()
    second.stop()


def test_every_process_counts_into_one_sum(site: Site, servers: tuple[Daphne, Daphne], tmp_path: Path) -> None:
    first, second = servers
    for _ in range(3):
        assert get(f"{first.http_url}/health") == 200
    for _ in range(5):
        assert get(f"{second.http_url}/health") == 200
    assert get(f"{first.http_url}/status/1") == 401
    assert get(f"{second.http_url}/status/2") == 401
    # A third process doing real work: a command-line ingest of a file that does not exist.
    ingest = subprocess.run([PYTHON, str(ROOT / "manage.py"), "ingest", str(tmp_path / "missing.md")],
                            env=site.env, cwd=ROOT, capture_output=True, text=True)
    assert ingest.returncode == 1, ingest.stdout + ingest.stderr

    seen_by_first, seen_by_second = scrape(first), scrape(second)
    for samples in (seen_by_first, seen_by_second):
        # start_daphne's own /health probe, once per process, plus the 3 + 5 above.
        assert value(samples, "rag_http_requests_total", method="GET", path="/health", status="200") == 10
        assert value(samples, "rag_http_requests_total", method="GET", path="/status/<int:job_id>", status="401") == 2
        assert value(samples, "rag_http_request_duration_seconds_count", method="GET", path="/health") == 10
        assert value(samples, "rag_ingest_documents_total", outcome="failed") == 1
        assert value(samples, "rag_pipeline_errors_total", component="loader") == 1
        # django-prometheus's own series are combined the same way.
        assert value(samples, "django_http_requests_total_by_view_transport_method_total",
                     view="health", transport="http", method="GET") == 10
        assert value(samples, "rag_ingest_queue_depth", state="queued") == 0

    # A process that has exited still counts: its counters are in its files.
    second.stop()
    assert value(scrape(first), "rag_http_requests_total", method="GET", path="/health", status="200") == 10
