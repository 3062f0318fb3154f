"""A web site source kept in sync through the whole pipeline: crawl, revalidate, change, a 500 and a 404 at the origin."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from console.models import Document, Source, SyncRun
from console.syncing import service
from console.syncing.runs import run_sync
from ragcore import Engine
from tests.console.conftest import CountingEmbedder
from tests.fakes.web_site import FakeSite

pytestmark = pytest.mark.django_db


@pytest.fixture
def site() -> Iterator[FakeSite]:
    with FakeSite() as fake:
        fake.set("/robots.txt", b"User-agent: *\nDisallow: /private/\n", content_type="text/plain")
        fake.html("/", '<p>Welcome.</p><a href="/rotation">Keys</a> <a href="/deploys">Deploys</a> '
                       '<a href="/private/salaries">Salaries</a>', title="Handbook", etag='"home-1"')
        fake.html("/rotation", "<h1>Key rotation</h1><p>Rotate the API key every ninety days.</p>",
                  title="Key rotation", etag='"rot-1"')
        fake.html("/deploys", "<h1>Deploys</h1><p>Deploys go out on Tuesdays after review.</p>",
                  title="Deploys", etag='"dep-1"')
        fake.html("/private/salaries", "<p>The zebra salary table.</p>", title="Salaries")
        yield fake


def sync(source: Source) -> SyncRun:
    run = service.request_sync(source, enqueue=False)
    run_sync(run.pk)
    run.refresh_from_db()
    return run


def test_a_web_site_source_syncs_incrementally_and_links_each_answer_to_its_page(
    site: FakeSite, engine: Engine, embedder: CountingEmbedder
) -> None:
    source = service.save_source(Source(name="handbook site", kind="web",
                                        config={"start_url": site.url("/"), "delay_seconds": 0}))
    first = sync(source)
    assert first.state == SyncRun.State.SUCCEEDED
    assert first.counts() == {"added": 3, "changed": 0, "removed": 0, "unchanged": 0, "failed": 0}
    assert site.requests_for("/private/salaries") == []  # robots.txt forbids it
    rotation = Document.objects.get(source=source, origin_url=site.url("/rotation"))
    hits = engine.retrieve("how often is the API key rotated", mode="bm25").chunks
    assert hits and hits[0].chunk.document_id == rotation.engine_id

    # Nothing changed: every page answers 304 to its ETag, nothing is embedded again.
    embedder.embedded = 0
    again = sync(source)
    assert again.counts() == {"added": 0, "changed": 0, "removed": 0, "unchanged": 3, "failed": 0}
    assert embedder.embedded == 0
    assert site.requests_for("/rotation")[-1].status == 304

    # One page changes, one page breaks for a while (kept), one disappears (removed).
    site.html("/rotation", "<h1>Key rotation</h1><p>Rotate the API key every thirty days.</p>",
              title="Key rotation", etag='"rot-2"')
    site.html("/deploys", "<p>Internal error</p>", status=500)
    edited = sync(source)
    assert edited.counts() == {"added": 0, "changed": 1, "removed": 0, "unchanged": 1, "failed": 1}
    assert Document.objects.filter(source=source, origin_url=site.url("/deploys")).exists()
    failure = edited.failures.get()
    assert failure.key == site.url("/deploys") and failure.error_type == "Unavailable"
    assert "the server answered 500" in failure.message and "kept as synced" in failure.message
    hits = engine.retrieve("how often is the API key rotated", mode="bm25").chunks
    assert "thirty days" in hits[0].chunk.text

    site.html("/deploys", "<p>Not found</p>", status=404)
    gone = sync(source)
    assert gone.counts()["removed"] == 1
    assert not Document.objects.filter(source=source, origin_url=site.url("/deploys")).exists()
    assert not any("Tuesdays" in h.chunk.text for h in engine.retrieve("when do deploys go out", mode="bm25").chunks)
