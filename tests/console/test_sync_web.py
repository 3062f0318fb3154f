"""A web site source kept in sync through the whole pipeline: crawl and sitemap, a redirect, revalidation by ETag,
a change, a 500 and a 404 at the origin, each sync's counts; answers linking to the page; and the bad cases."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from bots.text import citation_link
from console import chat
from console.models import Document, Source, SyncRun
from console.syncing import service
from ragcore import Engine
from tests.console.conftest import CountingEmbedder, sync
from tests.fakes.web_site import FakeSite
from tests.support import ask_chat

pytestmark = pytest.mark.django_db


@pytest.fixture
def site() -> Iterator[FakeSite]:
    with FakeSite() as fake:
        fake.set("/robots.txt", b"User-agent: *\nDisallow: /private/\n", content_type="text/plain")
        fake.html("/", '<p>Welcome.</p><a href="/rotation">Keys</a> <a href="/deploys">Deploys</a> '
                       '<a href="/private/salaries">Salaries</a> <a href="/old-oncall">On call</a>',
                  title="Handbook", etag='"home-1"')
        fake.html("/rotation", "<h1>Key rotation</h1><p>Rotate the API key every ninety days.</p>",
                  title="Key rotation", etag='"rot-1"')
        fake.html("/deploys", "<h1>Deploys</h1><p>Deploys go out on Tuesdays after review.</p>",
                  title="Deploys", etag='"dep-1"')
        fake.html("/private/salaries", "<p>The zebra salary table.</p>", title="Salaries")
        fake.redirect("/old-oncall", "/oncall")  # a moved page: kept under the URL it ends at
        fake.html("/oncall", "<h1>On call</h1><p>The on-call rota changes every Monday.</p>", title="On call",
                  etag='"oncall-1"')
        # Linked from nowhere: only the sitemap knows it.
        fake.html("/faq", "<h1>FAQ</h1><p>The office opens at nine.</p>", title="FAQ", etag='"faq-1"')
        fake.set("/sitemap.xml", b"<urlset xmlns='http://www.sitemaps.org/schemas/sitemap/0.9'><url><loc>"
                 + fake.url("/faq").encode() + b"</loc></url></urlset>", content_type="application/xml")
        yield fake


def site_source(site: FakeSite, **config: Any) -> Source:
    return service.save_source(Source(name="handbook site", kind="web", config={
        "start_url": site.url("/"), "sitemap_url": site.url("/sitemap.xml"), "delay_seconds": 0, **config}))


def test_a_web_site_source_syncs_incrementally_and_links_each_document_to_its_page(
    site: FakeSite, engine: Engine, embedder: CountingEmbedder
) -> None:
    source = site_source(site)
    first = sync(source)
    assert first.state == SyncRun.State.SUCCEEDED
    assert first.counts() == {"added": 5, "changed": 0, "removed": 0, "unchanged": 0, "failed": 0}
    assert site.requests_for("/private/salaries") == []  # robots.txt forbids it
    assert set(Document.objects.filter(source=source).values_list("origin_url", flat=True)) == {
        site.url(p) for p in ("/", "/rotation", "/deploys", "/oncall", "/faq")}  # the redirect's target, the sitemap's page
    rotation = Document.objects.get(source=source, origin_url=site.url("/rotation"))
    hits = engine.retrieve("how often is the API key rotated", mode="bm25").chunks
    assert hits and hits[0].chunk.document_id == rotation.engine_id

    # Nothing changed: every page answers 304 to its ETag, nothing is embedded again.
    embedder.embedded = 0
    again = sync(source)
    assert again.counts() == {"added": 0, "changed": 0, "removed": 0, "unchanged": 5, "failed": 0}
    assert embedder.embedded == 0 and again.embedded_chunks == 0
    assert site.requests_for("/rotation")[-1].status == 304 and site.requests_for("/oncall")[-1].status == 304

    # One page changes, one page breaks for a while (kept), one disappears (removed).
    site.html("/rotation", "<h1>Key rotation</h1><p>Rotate the API key every thirty days.</p>",
              title="Key rotation", etag='"rot-2"')
    site.html("/deploys", "<p>Internal error</p>", status=500)
    edited = sync(source)
    assert edited.counts() == {"added": 0, "changed": 1, "removed": 0, "unchanged": 3, "failed": 1}
    assert Document.objects.filter(source=source, origin_url=site.url("/deploys")).exists()
    failure = edited.failures.get()
    assert failure.key == site.url("/deploys") and failure.error_type == "Unavailable"
    assert "the server answered 500" in failure.message and "kept as synced" in failure.message
    hits = engine.retrieve("how often is the API key rotated", mode="bm25").chunks
    assert "thirty days" in hits[0].chunk.text

    site.html("/deploys", "<p>Not found</p>", status=404)
    gone = sync(source)
    assert gone.counts() == {"added": 0, "changed": 0, "removed": 1, "unchanged": 4, "failed": 0}
    assert not Document.objects.filter(source=source, origin_url=site.url("/deploys")).exists()
    assert not any("Tuesdays" in h.chunk.text for h in engine.retrieve("when do deploys go out", mode="bm25").chunks)
    assert set(engine.bm25.documents()) == {d.engine_id for d in Document.objects.filter(source=source)}


@pytest.mark.django_db(transaction=True)
def test_a_question_is_answered_from_a_synced_page_linking_to_it_and_saying_when_it_was_synced(
    site: FakeSite, engine: Engine
) -> None:
    source = site_source(site)
    assert sync(source).state == SyncRun.State.SUCCEEDED
    doc = Document.objects.get(source=source, origin_url=site.url("/oncall"))
    assert doc.synced_at is not None
    events = ask_chat(surface="web", conversation_key="w1", user_key="u1", text="When does the on-call rota change?")
    citations = [c for e in events if isinstance(e, chat.AnswerCitations) for c in e.items]
    cited = next(c for c in citations if c.document_id == doc.engine_id)
    assert cited.origin_url == site.url("/oncall") == citation_link(cited)
    assert cited.synced_at == doc.synced_at.isoformat()


def test_bad_pages_fail_alone_named_with_their_error_and_the_others_sync(
    site: FakeSite, engine: Engine
) -> None:
    with FakeSite() as elsewhere:
        site.html("/", '<a href="/rotation">Keys</a> <a href="/away">Chat</a> <a href="/loop/a">Loop</a> '
                       '<a href="/big">Big</a>', title="Handbook")
        site.redirect("/away", elsewhere.url("/"))
        site.redirect("/loop/a", "/loop/b")
        site.redirect("/loop/b", "/loop/a")
        site.html("/big", "<p>" + "words " * 2000 + "</p>", title="Big")
        source = site_source(site, max_page_bytes=5000, sitemap_url="")
        run = sync(source)
        assert elsewhere.requests == []
    assert run.state == SyncRun.State.PARTIALLY_FAILED
    assert run.counts() == {"added": 2, "changed": 0, "removed": 0, "unchanged": 0, "failed": 3}
    failures = {f.key: f.message for f in run.failures.all()}
    assert failures[site.url("/away")].startswith(f"{site.url('/away')}: redirects off the site to 'http://127.0.0.1:")
    assert failures[site.url("/loop/a")] == f"{site.url('/loop/a')}: redirect loop (/loop/a → /loop/b → /loop/a)"
    assert re.fullmatch(rf"{re.escape(site.url('/big'))}: \d+ bytes is over the 5000-byte page limit",
                        failures[site.url("/big")])
    assert Document.objects.filter(source=source, origin_url=site.url("/rotation")).exists()

    # And the page says so, as the dashboard flags it.
    client = Client()
    client.force_login(User.objects.create_user("ada", is_staff=True))
    page = client.get(f"/console/sources/{source.pk}/").content.decode()
    assert "redirect loop (/loop/a → /loop/b → /loop/a)" in page and "over the 5000-byte page limit" in page
    assert 'data-source="handbook site" data-failed' in client.get("/console/").content.decode()


def test_an_unreachable_site_fails_the_sync_naming_it_and_removes_nothing(site: FakeSite, engine: Engine) -> None:
    source = site_source(site)
    assert sync(source).counts()["added"] == 5
    Source.objects.filter(pk=source.pk).update(config={**source.config, "start_url": "http://127.0.0.1:9/",
                                                       "sitemap_url": ""})
    source.refresh_from_db()
    run = sync(source)
    assert run.state == SyncRun.State.FAILED and "http://127.0.0.1:9/" in run.error and "cannot connect" in run.error
    assert run.counts() == {"added": 0, "changed": 0, "removed": 0, "unchanged": 0, "failed": 0}
    assert Document.objects.filter(source=source).count() == 5


def test_the_page_limit_cutting_a_crawl_short_is_shown_on_the_run(site: FakeSite, engine: Engine) -> None:
    source = site_source(site, page_limit=3, sitemap_url="")
    run = sync(source)
    assert run.state == SyncRun.State.SUCCEEDED and run.added == 3  # three page requests (robots.txt is not one)
    assert "the page limit stopped the crawl with 2 links not visited" in run.description
    client = Client()
    client.force_login(User.objects.create_user("ada", is_staff=True))
    assert "links not visited" in client.get(f"/console/sources/{source.pk}/").content.decode()
