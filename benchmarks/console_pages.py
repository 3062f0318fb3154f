"""Console page render times with 10,000 documents and 100,000 messages in a fresh database.

    .venv/bin/python benchmarks/console_pages.py                     # a fresh SQLite file
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
        .venv/bin/python benchmarks/console_pages.py                 # a fresh lorebot_bench_* database there

Renders each list page (and the dashboard) through the Django test client, logged in as staff,
and prints p50/p95 over --renders renders after a warm-up. Target: p95 ≤ 150 ms on every list page.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BATCH = 2000


def _setup_django(data_dir: Path) -> None:
    os.environ["RAG_DATA_DIR"] = str(data_dir)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _without_auto_now(*models: type) -> list[tuple[object, bool, bool]]:
    """Lets the seed data carry spread-out timestamps (auto_now fields would overwrite them)."""
    saved = []
    for model in models:
        for f in model._meta.concrete_fields:
            if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
                saved.append((f, f.auto_now, f.auto_now_add))
                f.auto_now = f.auto_now_add = False
    return saved


def seed(documents: int, conversations: int, messages_each: int, jobs: int) -> object:
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from console.models import Conversation, Document, Feedback, IngestJob, IngestJobFile, Message

    rng = random.Random(7)
    now = timezone.now()
    staff = get_user_model().objects.create_user("bench", password="pw", is_staff=True)
    saved = _without_auto_now(Document, Conversation, Message, Feedback, IngestJob)
    kinds = ["pdf", "markdown", "docx", "text", "html", "csv"]
    statuses = ["indexed"] * 17 + ["failed", "queued", "superseded"]
    docs = []
    for i in range(documents):
        at = now - timedelta(minutes=i * 13)
        docs.append(
            Document(
                checksum=f"{i:064x}", title=f"Team handbook section {i}", original_filename=f"handbook-{i}.{kinds[i % 6][:4]}",
                kind=kinds[i % 6], size=rng.randrange(1_000, 5_000_000), status=statuses[i % len(statuses)],
                chunk_count=rng.randrange(1, 80), uploaded_by=staff, created_at=at, updated_at=at,
            )
        )
    Document.objects.bulk_create(docs, batch_size=BATCH)
    doc_ids = list(Document.objects.values_list("pk", flat=True))

    job_rows = []
    for i in range(jobs):
        at = now - timedelta(hours=i)
        job_rows.append(
            IngestJob(state=rng.choice(["succeeded"] * 6 + ["failed", "partially_failed", "cancelled"]), stage="done",
                      progress_done=3, progress_total=3, attempts=1, created_by=staff, created_at=at, finished_at=at)
        )
    IngestJob.objects.bulk_create(job_rows, batch_size=BATCH)
    files = [
        IngestJobFile(job_id=job_id, document_id=rng.choice(doc_ids), filename=f"file-{job_id}-{n}.pdf",
                      state="failed" if n == 2 and job_id % 4 == 0 else "indexed", chunks=12,
                      error_type="LoaderError" if n == 2 and job_id % 4 == 0 else "")
        for job_id in IngestJob.objects.values_list("pk", flat=True)
        for n in range(3)
    ]
    IngestJobFile.objects.bulk_create(files, batch_size=BATCH)

    surfaces = ["web", "slack", "discord", "cli"]
    convs = []
    for i in range(conversations):
        at = now - timedelta(minutes=i * 13)  # spread over ~90 days
        convs.append(Conversation(surface=surfaces[i % 4], external_key=f"key-{i}", user_key=f"U{i % 300}",
                                  title=f"Question thread {i}", created_at=at, updated_at=at))
    Conversation.objects.bulk_create(convs, batch_size=BATCH)
    msgs = []
    for conv_id, updated in Conversation.objects.values_list("pk", "updated_at"):
        for n in range(messages_each):
            at = updated - timedelta(seconds=(messages_each - n) * 20)
            if n % 2 == 0:
                msgs.append(Message(conversation_id=conv_id, role="user", text="How do I rotate the deploy key?", created_at=at))
            else:
                cited = rng.choice(doc_ids)
                msgs.append(Message(
                    conversation_id=conv_id, role="assistant", text="Rotate it from the settings page [1].",
                    citations=[{"n": 1, "document_id": f"doc-{cited}", "title": "Handbook", "source": "h.md", "location": "", "snippet": "…"}],
                    provider="groq", model="llama-3.3-70b-versatile", prompt_tokens=900, completion_tokens=120,
                    latency_ms=rng.lognormvariate(7, 0.5), created_at=at,
                ))
        if len(msgs) >= BATCH * 5:
            Message.objects.bulk_create(msgs, batch_size=BATCH)
            msgs = []
    Message.objects.bulk_create(msgs, batch_size=BATCH)
    votes = [
        Feedback(message_id=mid, value=rng.choice([1, 1, 1, -1]), surface="web", user_key="U1", created_at=at)
        for mid, at in Message.objects.filter(role="assistant").values_list("pk", "created_at")
        if rng.random() < 0.1
    ]
    Feedback.objects.bulk_create(votes, batch_size=BATCH)
    for f, auto_now, auto_now_add in saved:
        f.auto_now, f.auto_now_add = auto_now, auto_now_add  # type: ignore[attr-defined]
    return staff


def measure(staff: object, renders: int) -> list[tuple[str, float, float]]:
    from django.test import Client
    from django.urls import reverse

    from console.models import Conversation

    client = Client()
    client.force_login(staff)
    today = time.strftime("%Y-%m-%d")
    busy = Conversation.objects.order_by("-updated_at").values_list("pk", flat=True).first()
    pages = [
        ("dashboard", reverse("console:dashboard")),
        ("documents", reverse("console:documents")),
        ("documents ?q=", reverse("console:documents") + "?q=section+42"),
        ("documents ?status=failed", reverse("console:documents") + "?status=failed"),
        ("documents ?kind=pdf page 50", reverse("console:documents") + "?kind=pdf&page=30"),
        ("jobs", reverse("console:jobs")),
        ("jobs ?state=failed", reverse("console:jobs") + "?state=failed"),
        ("conversations", reverse("console:conversations")),
        ("conversations ?surface=slack", reverse("console:conversations") + "?surface=slack"),
        ("conversations ?feedback=down", reverse("console:conversations") + "?feedback=down"),
        ("conversations ?since=today", reverse("console:conversations") + f"?since={today}&until={today}"),
        ("conversations page 100", reverse("console:conversations") + "?page=100"),
        ("conversation detail", reverse("console:conversation", args=[busy])),
    ]
    results = []
    for name, url in pages:
        for _ in range(3):
            assert client.get(url).status_code == 200, url
        times = []
        for _ in range(renders):
            started = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, url
        results.append((name, _percentile(times, 50), _percentile(times, 95)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=10_000)
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--messages-each", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=2_000)
    parser.add_argument("--renders", type=int, default=30)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="lorebot-bench-") as tmp:
        _setup_django(Path(tmp))
        from django.conf import settings
        from django.core.management import call_command
        from django.db import connection

        from ragcore.logsetup import quiet_cli_logging

        quiet_cli_logging()
        settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
        postgres = connection.vendor == "postgresql"
        old_name = settings.DATABASES["default"]["NAME"]
        if postgres:
            # Its own database name, so a test run on the same server (test_<name>) is never touched.
            connection.settings_dict["TEST"]["NAME"] = "lorebot_bench_console_pages"
            connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
        else:
            call_command("migrate", verbosity=0)
        try:
            started = time.perf_counter()
            staff = seed(args.documents, args.conversations, args.messages_each, args.jobs)
            if postgres:
                with connection.cursor() as cursor:
                    cursor.execute("ANALYZE")
            seeded = time.perf_counter() - started
            total = args.conversations * args.messages_each
            print(f"database: {connection.vendor} · {args.documents:,} documents · {args.conversations:,} conversations · "
                  f"{total:,} messages · {args.jobs:,} jobs (seeded in {seeded:.0f} s)")
            results = measure(staff, args.renders)
        finally:
            if postgres:
                connection.creation.destroy_test_db(old_name, verbosity=0)
    width = max(len(name) for name, _, _ in results)
    print(f"{'page':<{width}}  {'p50 ms':>8}  {'p95 ms':>8}")
    for name, p50, p95 in results:
        flag = "" if p95 <= 150 else "  over 150 ms"
        print(f"{name:<{width}}  {p50:8.1f}  {p95:8.1f}{flag}")


if __name__ == "__main__":
    main()
