"""On a fresh data folder after what `make run` does (migrate, ingest the guide), the dashboard and
/health/ready show exactly what the indexes hold."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db.models import Sum
from django.test import Client

from console.engine import get_engine
from console.models import Document
from console.ops import warmup as warmups
from console.ops.warmup import Warmup

GUIDE = Path(__file__).resolve().parents[2] / "data" / "docs"

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def warmup(monkeypatch: pytest.MonkeyPatch) -> Iterator[Warmup]:
    fresh = Warmup()
    monkeypatch.setattr(warmups, "warmup", fresh)
    yield fresh


def test_the_dashboard_and_readiness_count_what_the_indexes_hold(data_dir: Path, warmup: Warmup) -> None:
    call_command("ingest", "--guide", str(GUIDE), stdout=io.StringIO(), stderr=io.StringIO())  # `make run`'s step
    engine = get_engine()
    vectors, keywords = engine.store.count(), len(engine.bm25)
    documents = Document.objects.count()
    assert documents == len([p for p in GUIDE.iterdir() if not p.name.startswith(".")]) and vectors > 0
    assert vectors == keywords == Document.objects.aggregate(n=Sum("chunk_count"))["n"]

    staff = Client()
    staff.force_login(User.objects.create_user("ada", password="pw", is_staff=True))
    page = staff.get("/console/").content.decode()
    shown = dict(re.findall(r'data-count="(documents|chunks)">([^<]+)<', page))
    assert shown == {"documents": str(documents), "chunks": str(keywords)}
    assert "all from these documents" in page

    Client().get("/health/ready")  # starts the warm-up of a process whose server did not
    assert warmup.done.wait(60)
    body = Client().get("/health/ready").json()
    assert body["counts"] == {"documents": documents, "chunks": {"database": vectors, "vector_store": vectors,
                                                                 "bm25_index": keywords}, "consistent": True}


def test_chunks_no_document_accounts_for_are_shown_with_the_fix(data_dir: Path, tmp_path: Path) -> None:
    stray = tmp_path / "stray.md"
    stray.write_text("# Stray\n\nIndexed behind the console's back, by an older Lorebot.\n")
    get_engine().ingest_file(stray)
    staff = Client()
    staff.force_login(User.objects.create_user("ada", password="pw", is_staff=True))
    page = staff.get("/console/").content.decode()
    assert 'data-count="documents">0<' in page and 'data-count="chunks">1<' in page
    assert "the documents account for 0" in page and "manage.py reindex --now" in page
