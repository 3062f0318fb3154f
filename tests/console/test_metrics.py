"""/metrics: django-prometheus's series and Lorebot's, read back from the page the scraper reads."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.test import Client, override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from console import chat
from console.models import IngestJob
from ragcore import Engine
from ragcore.metrics import PIPELINE_ERRORS
from tests.fakes.groq import DEFAULT_MODEL, FakeGroqServer
from tests.support import DEPLOY, ask_chat, make_engine, serving_deploy

pytestmark = pytest.mark.django_db

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: Client | None = None, **headers: str) -> Samples:
    response = (client or Client(REMOTE_ADDR="127.0.0.1")).get("/metrics", headers=headers)
    assert response.status_code == 200, response.content
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.content.decode())
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def engine(chat_engine: Engine) -> Engine:
    return chat_engine


# -- who may read it ------------------------------------------------------------------------------


def test_metrics_lists_the_pipeline_error_counter_for_an_allowed_address() -> None:
    before = value(scrape(), "rag_pipeline_errors_total", component="loader")
    PIPELINE_ERRORS.labels("loader").inc()
    assert value(scrape(), "rag_pipeline_errors_total", component="loader") == before + 1


@override_settings(METRICS_ALLOWED_IPS=["10.0.0.5"])
def test_metrics_are_refused_to_other_addresses() -> None:
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 403


@override_settings(METRICS_ALLOWED_IPS=[], METRICS_BEARER_TOKEN="s3cret-token")
def test_a_bearer_token_opens_metrics_from_any_address() -> None:
    client = Client(REMOTE_ADDR="198.51.100.7")
    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert client.get("/metrics", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200


def test_a_forwarded_for_header_from_an_untrusted_peer_changes_nothing() -> None:
    client = Client(REMOTE_ADDR="198.51.100.7")
    assert client.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"}).status_code == 403


def test_behind_a_trusted_proxy_the_forwarded_client_is_checked_not_the_proxy() -> None:
    import ipaddress

    with override_settings(TRUSTED_PROXIES=[ipaddress.ip_network("127.0.0.1/32")]):
        proxy = Client(REMOTE_ADDR="127.0.0.1")
        assert proxy.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 403
        assert proxy.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9, 127.0.0.1"}).status_code == 403
        assert proxy.get("/metrics").status_code == 200  # the proxy host's own scraper


# -- HTTP -------------------------------------------------------------------------------------------


def test_http_requests_are_counted_under_their_route_pattern_never_the_raw_url() -> None:
    client = Client(REMOTE_ADDR="127.0.0.1")
    before = scrape()
    assert client.get("/status/12345").status_code == 401
    assert client.get("/status/67890").status_code == 401
    assert client.get("/no/such/page/1").status_code == 404
    assert client.get("/no/such/page/2").status_code == 404
    after = scrape()
    route = "/status/<int:job_id>"
    assert value(after, "rag_http_requests_total", method="GET", path=route, status="401") == \
        value(before, "rag_http_requests_total", method="GET", path=route, status="401") + 2
    assert value(after, "rag_http_requests_total", method="GET", path="<unmatched>", status="404") == \
        value(before, "rag_http_requests_total", method="GET", path="<unmatched>", status="404") + 2
    assert value(after, "rag_http_request_duration_seconds_count", method="GET", path=route) == \
        value(before, "rag_http_request_duration_seconds_count", method="GET", path=route) + 2
    assert not any("12345" in dict(labels).get("path", "") for _, labels in after)


def test_django_prometheus_series_are_served_too() -> None:
    Client(REMOTE_ADDR="127.0.0.1").get("/health")
    samples = scrape()
    assert value(samples, "django_http_requests_total_by_method_total", method="GET") > 0
    assert any(name == "django_http_responses_total_by_status_total" for name, _ in samples)


# -- the engine, the chat service, feedback ---------------------------------------------------------


@pytest.mark.parametrize("mode", ["hybrid", "context", "bm25", "dense"])
def test_retrieval_is_timed_for_every_mode(engine: Engine, mode: str) -> None:
    before = value(scrape(), "rag_retrieval_duration_seconds_count", mode=mode)
    engine.retrieve("How do I roll back?", mode=mode)
    assert value(scrape(), "rag_retrieval_duration_seconds_count", mode=mode) == before + 1


@pytest.mark.django_db(transaction=True)  # the chat service's ORM calls run on pool threads' connections
def test_an_answer_counts_its_question_latency_and_tokens(tmp_path: Path) -> None:
    with FakeGroqServer() as fake, serving_deploy(tmp_path, groq_api_key="gsk-test", groq_base_url=fake.base_url):
        before = scrape()
        events = ask_chat(surface="cli", conversation_key="m1", user_key="u1", text="How do I roll back a release?")
        after = scrape()
    done = events[-1]
    assert isinstance(done, chat.AnswerDone) and done.provider == "groq"
    groq = {"provider": "groq", "model": DEFAULT_MODEL}
    for kind in ("prompt", "completion"):
        assert value(after, "rag_generation_tokens_total", kind=kind, **groq) == \
            value(before, "rag_generation_tokens_total", kind=kind, **groq) + getattr(done.usage, f"{kind}_tokens") > 0
    assert value(after, "rag_generation_duration_seconds_count", **groq) == \
        value(before, "rag_generation_duration_seconds_count", **groq) + 1
    assert value(after, "rag_chat_questions_total", surface="cli", outcome="answered") == \
        value(before, "rag_chat_questions_total", surface="cli", outcome="answered") + 1
    assert value(after, "rag_chat_answer_duration_seconds_count", surface="cli") == \
        value(before, "rag_chat_answer_duration_seconds_count", surface="cli") + 1


@pytest.mark.django_db(transaction=True)
def test_refused_questions_and_feedback_are_counted_by_surface(engine: Engine) -> None:
    before = scrape()
    [refused] = ask_chat(surface="web", conversation_key="f1", user_key="u1", text="   ")
    assert isinstance(refused, chat.AnswerError) and refused.code == "empty_question"
    done = ask_chat(surface="web", conversation_key="f1", user_key="u1", text="How do I roll back?")[-1]
    chat.record_feedback(message_id=done.message_id, value=1, surface="web", user_key="u1")
    chat.record_feedback(message_id=done.message_id, value=-1, surface="web", user_key="u2")
    after = scrape()
    for name, labels in [
        ("rag_chat_questions_total", {"surface": "web", "outcome": "refused"}),
        ("rag_chat_questions_total", {"surface": "web", "outcome": "extractive"}),
        ("rag_feedback_total", {"value": "up", "surface": "web"}),
        ("rag_feedback_total", {"value": "down", "surface": "web"}),
    ]:
        assert value(after, name, **labels) == value(before, name, **labels) + 1, (name, labels)


# -- ingest -----------------------------------------------------------------------------------------


def test_ingest_counts_documents_chunks_and_stage_durations(tmp_path: Path) -> None:
    engine = make_engine(tmp_path / "data")
    doc = tmp_path / "deploy.md"
    doc.write_text(DEPLOY)
    before = scrape()
    result = engine.ingest_file(doc)
    engine.ingest_file(tmp_path / "missing.md")
    after = scrape()
    assert value(after, "rag_ingest_documents_total", outcome="indexed") == value(before, "rag_ingest_documents_total", outcome="indexed") + 1
    assert value(after, "rag_ingest_documents_total", outcome="failed") == value(before, "rag_ingest_documents_total", outcome="failed") + 1
    assert value(after, "rag_ingest_chunks_total") == value(before, "rag_ingest_chunks_total") + result.chunks
    for stage in ("parse", "chunk", "embed", "write"):
        assert value(after, "rag_ingest_stage_duration_seconds_count", stage=stage) == \
            value(before, "rag_ingest_stage_duration_seconds_count", stage=stage) + 1, stage


@override_settings(INGEST_STALE_SECONDS=60)
def test_queue_depth_and_stuck_jobs_are_read_from_the_database_at_scrape_time() -> None:
    IngestJob.objects.create(state=IngestJob.State.QUEUED)
    IngestJob.objects.create(state=IngestJob.State.QUEUED)
    IngestJob.objects.create(state=IngestJob.State.RUNNING, heartbeat_at=timezone.now())
    IngestJob.objects.create(state=IngestJob.State.RUNNING, heartbeat_at=timezone.now() - timedelta(minutes=5))
    IngestJob.objects.create(state=IngestJob.State.SUCCEEDED)
    samples = scrape()
    assert value(samples, "rag_ingest_queue_depth", state="queued") == 2
    assert value(samples, "rag_ingest_queue_depth", state="running") == 2
    assert value(samples, "rag_ingest_stale_jobs") == 1
    assert value(samples, "rag_ingest_oldest_queued_seconds") >= 0
    IngestJob.objects.all().delete()
    samples = scrape()
    assert value(samples, "rag_ingest_queue_depth", state="queued") == 0
    assert value(samples, "rag_ingest_stale_jobs") == 0


# -- the other processes' series --------------------------------------------------------------------


def test_bot_and_websocket_series_show_up() -> None:
    from bots.metrics import BOT_EVENTS

    BOT_EVENTS.labels("slack", "answered").inc()
    samples = scrape()
    assert value(samples, "rag_bot_events_total", platform="slack", outcome="answered") >= 1
    assert ("rag_websocket_open_connections", frozenset()) in samples
