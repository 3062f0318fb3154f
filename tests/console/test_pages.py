"""The staff console pages: who may see them, what they show, and that they escape what they show."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest.mock import patch

import pytest
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, TestCase
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from console.ingest import jobs
from console.models import Conversation, Document, Feedback, IngestJob, IngestJobFile, Message
from console.pages import stats as dashboard
from ragcore.types import Chunk

XSS = "<script>alert('x')</script>"


class FakeStore:
    """Stands in for the vector store: every asked-for chunk exists, with recognisable text."""

    def get_chunks(self, ids: list[str]) -> dict[str, Chunk]:
        return {
            cid: Chunk(chunk_id=cid, document_id=cid.split(":")[0], position=int(cid.split(":")[1]), text=f"chunk text {cid} {XSS}")
            for cid in ids
        }


class BaseTestCase(TestCase):
    """A staff user, a non-staff user, documents, a half-failed job and a conversation with feedback."""

    staff: Any
    member: Any
    v1: Document
    doc: Document
    evil: Document
    pdf: Document
    job: IngestJob
    running: IngestJob
    conversation: Conversation
    answer: Message
    quiet: Conversation

    @classmethod
    def setUpTestData(cls) -> None:
        User = get_user_model()
        cls.staff = User.objects.create_user("alice", password="pw", is_staff=True)
        cls.member = User.objects.create_user("bob", password="pw")
        cls.v1 = Document.objects.create(
            checksum="a" * 64, title="Handbook", original_filename="handbook.md", kind="markdown",
            status=Document.Status.SUPERSEDED, chunk_count=2, size=1000, uploaded_by=cls.staff,
        )
        cls.doc = Document.objects.create(
            checksum="b" * 64, title="Handbook", original_filename="handbook.md", kind="markdown",
            status=Document.Status.INDEXED, chunk_count=3, size=2048, version=2, previous=cls.v1, uploaded_by=cls.staff,
        )
        cls.evil = Document.objects.create(
            checksum="c" * 64, title=XSS, original_filename="evil.txt", kind="text", status=Document.Status.INDEXED, chunk_count=1
        )
        cls.pdf = Document.objects.create(
            checksum="d" * 64, title="Broken scan", original_filename="scan.pdf", kind="pdf", status=Document.Status.FAILED
        )
        cls.job = IngestJob.objects.create(
            state=IngestJob.State.PARTIALLY_FAILED, stage="done", progress_done=2, progress_total=2, attempts=1, created_by=cls.staff
        )
        IngestJobFile.objects.create(job=cls.job, document=cls.doc, filename="handbook.md", state=IngestJobFile.State.INDEXED, chunks=3)
        IngestJobFile.objects.create(
            job=cls.job, document=cls.pdf, filename="scan.pdf", state=IngestJobFile.State.FAILED,
            error_type="LoaderError", error_message="scan.pdf: corrupt PDF", traceback="Traceback (most recent call last):\n  boom",
        )
        cls.running = IngestJob.objects.create(state=IngestJob.State.RUNNING, stage="embedding", progress_done=1, progress_total=4)
        cls.conversation = Conversation.objects.create(surface="slack", external_key="T1:C1:123.4", user_key="U42", title="Onboarding")
        Message.objects.create(conversation=cls.conversation, role="user", text=f"How do I start? {XSS}")
        cls.answer = Message.objects.create(
            conversation=cls.conversation, role="assistant", text="Read the handbook [1].", provider="groq", model="llama-test",
            prompt_tokens=120, completion_tokens=30, latency_ms=850.0,
            citations=[
                {"n": 1, "document_id": f"doc-{cls.doc.pk}", "title": "Handbook", "source": "handbook.md", "location": "Start", "snippet": "Welcome"},
                {"n": 2, "document_id": "doc-999999", "title": "Gone document", "source": "gone.md", "location": "", "snippet": ""},
            ],
        )
        Feedback.objects.create(message=cls.answer, value=1, surface="slack", user_key="U42", comment="spot on")
        cls.quiet = Conversation.objects.create(surface="web", external_key="web-1", title="Quiet one")
        Message.objects.create(conversation=cls.quiet, role="user", text="Hello?")

    def setUp(self) -> None:
        self.enterContext(patch("console.pages.views.get_engine", return_value=SimpleNamespace(store=FakeStore())))

    def login_staff(self) -> None:
        self.client.force_login(self.staff)

    def console_urls(self) -> list[str]:
        return [
            reverse("console:dashboard"),
            reverse("console:documents"),
            reverse("console:document", args=[self.doc.pk]),
            reverse("console:document-delete", args=[self.doc.pk]),
            reverse("console:jobs"),
            reverse("console:job", args=[self.job.pk]),
            reverse("console:conversations"),
            reverse("console:conversation", args=[self.conversation.pk]),
        ]

    def post_urls(self) -> list[str]:
        return [
            reverse("console:documents"),
            reverse("console:document-delete", args=[self.doc.pk]),
            reverse("console:document-reingest", args=[self.doc.pk]),
            reverse("console:job-retry", args=[self.job.pk]),
            reverse("console:job-cancel", args=[self.running.pk]),
        ]


class AccessTestCase(BaseTestCase):
    def test_anonymous_users_are_sent_to_login_from_every_console_url(self) -> None:
        for url in self.console_urls():
            response = self.client.get(url)
            self.assertRedirects(response, f"{reverse('login')}?next={url}", msg_prefix=url, fetch_redirect_response=False)
        for url in self.post_urls():
            response = self.client.post(url)
            self.assertEqual(response.status_code, 302, url)
            self.assertTrue(response["Location"].startswith(reverse("login")), url)

    def test_non_staff_users_are_refused(self) -> None:
        self.client.force_login(self.member)
        for url in self.console_urls():
            self.assertEqual(self.client.get(url).status_code, 403, url)
        for url in self.post_urls():
            self.assertEqual(self.client.post(url).status_code, 403, url)
        self.assertEqual(IngestJob.objects.count(), 2)

    def test_staff_users_see_every_page(self) -> None:
        self.login_staff()
        for url in self.console_urls():
            self.assertEqual(self.client.get(url).status_code, 200, url)

    def test_mutations_only_allow_post(self) -> None:
        self.login_staff()
        for name, pk in (("console:document-reingest", self.doc.pk), ("console:job-retry", self.job.pk), ("console:job-cancel", self.job.pk)):
            self.assertEqual(self.client.get(reverse(name, args=[pk])).status_code, 405, name)
        self.assertEqual(self.client.post(reverse("console:dashboard")).status_code, 405)

    def test_posts_need_a_csrf_token(self) -> None:
        client = Client(enforce_csrf_checks=True)
        client.force_login(self.staff)
        response = client.post(reverse("console:job-cancel", args=[self.running.pk]))
        self.assertEqual(response.status_code, 403)
        self.running.refresh_from_db()
        self.assertEqual(self.running.state, IngestJob.State.RUNNING)
        page = client.get(reverse("console:job", args=[self.running.pk]))
        self.assertContains(page, "csrfmiddlewaretoken")

    def test_login_page_logs_a_staff_user_in(self) -> None:
        page = self.client.get(reverse("login"))
        self.assertContains(page, "csrfmiddlewaretoken")
        response = self.client.post(reverse("login"), {"username": "alice", "password": "pw"})
        self.assertRedirects(response, reverse("console:dashboard"))

    def test_logout_is_a_post(self) -> None:
        self.login_staff()
        response = self.client.post(reverse("logout"))
        self.assertRedirects(response, reverse("login"))
        self.assertEqual(self.client.get(reverse("console:dashboard")).status_code, 302)

    def test_home_sends_staff_to_the_dashboard_and_shows_the_placeholder_otherwise(self) -> None:
        self.assertContains(self.client.get("/"), "Lorebot")
        self.login_staff()
        self.assertRedirects(self.client.get("/"), reverse("console:dashboard"))

    def test_health_still_answers(self) -> None:
        self.assertEqual(self.client.get("/health").json(), {"status": "ok"})


class DashboardTestCase(BaseTestCase):
    def test_it_shows_the_figures_and_both_charts(self) -> None:
        self.login_staff()
        response = self.client.get(reverse("console:dashboard"))
        stats = response.context["stats"]
        self.assertEqual(stats.documents, 3)  # the superseded version does not count
        self.assertEqual(stats.chunks, 4)
        self.assertEqual(stats.questions_today, 2)
        self.assertEqual(stats.latency_p50, 850.0)
        self.assertEqual((stats.thumbs_up, stats.thumbs_down), (1, 0))
        self.assertEqual([job.pk for job in stats.failed_jobs], [self.job.pk])
        self.assertContains(response, '<rect class="bar"')
        self.assertContains(response, '<polyline class="line-p50"')
        self.assertContains(response, f'href="{reverse("console:job", args=[self.job.pk])}"')

    def test_questions_per_day_fills_empty_days_with_zero(self) -> None:
        old = Message.objects.create(conversation=self.quiet, role="user", text="old")
        Message.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=3))
        series = dashboard.questions_per_day(days=5)
        self.assertEqual([n for _, n in series], [0, 1, 0, 0, 2])

    def test_percentile_interpolates(self) -> None:
        self.assertEqual(dashboard.percentile([1, 2, 3, 4], 50), 2.5)
        self.assertEqual(dashboard.percentile([10], 95), 10)
        self.assertIsNone(dashboard.percentile([], 50))


class DocumentPagesTestCase(BaseTestCase):
    def test_the_list_shows_current_documents_newest_first(self) -> None:
        self.login_staff()
        response = self.client.get(reverse("console:documents"))
        docs = list(response.context["page"].object_list)
        self.assertEqual(docs, [self.pdf, self.evil, self.doc])
        self.assertContains(response, 'type="file" name="files" multiple')

    def test_titles_are_escaped(self) -> None:
        self.login_staff()
        for url in (reverse("console:documents"), reverse("console:document", args=[self.evil.pk])):
            response = self.client.get(url)
            self.assertNotContains(response, XSS)
            self.assertContains(response, "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;")

    def test_search_and_filters_narrow_the_list(self) -> None:
        self.login_staff()
        url = reverse("console:documents")
        self.assertEqual(list(self.client.get(url, {"q": "scan"}).context["page"].object_list), [self.pdf])
        self.assertEqual(list(self.client.get(url, {"q": "HANDBOOK.md"}).context["page"].object_list), [self.doc])
        self.assertEqual(list(self.client.get(url, {"status": "failed"}).context["page"].object_list), [self.pdf])
        self.assertEqual(list(self.client.get(url, {"status": "superseded"}).context["page"].object_list), [self.v1])
        self.assertEqual(list(self.client.get(url, {"kind": "text"}).context["page"].object_list), [self.evil])

    def test_the_list_is_paginated_by_fifty(self) -> None:
        Document.objects.bulk_create(
            Document(checksum=f"{i:064d}", title=f"Bulk {i}", original_filename=f"bulk{i}.txt", kind="text", status="indexed")
            for i in range(60)
        )
        self.login_staff()
        first = self.client.get(reverse("console:documents"))
        self.assertEqual(len(first.context["page"].object_list), 50)
        self.assertContains(first, "Page 1 of 2")
        second = self.client.get(reverse("console:documents"), {"page": "2", "kind": "text"})
        self.assertEqual(len(second.context["page"].object_list), 11)
        self.assertContains(second, "?page=1&amp;kind=text")

    def test_the_detail_shows_metadata_versions_and_a_chunk_preview(self) -> None:
        self.login_staff()
        response = self.client.get(reverse("console:document", args=[self.doc.pk]))
        self.assertEqual(response.context["versions"], [self.v1, self.doc])
        self.assertContains(response, "handbook.md")
        self.assertContains(response, f"chunk text doc-{self.doc.pk}:2")
        self.assertNotContains(response, XSS)
        self.assertContains(response, reverse("console:document-delete", args=[self.doc.pk]))
        self.assertContains(response, reverse("console:document-reingest", args=[self.doc.pk]))

    def test_the_detail_still_renders_when_the_index_is_unreachable(self) -> None:
        self.login_staff()
        broken = SimpleNamespace(store=SimpleNamespace(get_chunks=lambda ids: (_ for _ in ()).throw(OSError("store down"))))
        with patch("console.pages.views.get_engine", return_value=broken):
            response = self.client.get(reverse("console:document", args=[self.doc.pk]))
        self.assertContains(response, "The chunk preview is unavailable: store down")

    def test_the_chunk_preview_shows_a_chunk_whole_exactly_as_it_is_quoted(self) -> None:
        self.login_staff()
        text = "Call it like this:\n\n```python\ndef f():\n    return   1\n```\n\n" + "More words. " * 80
        chunk = Chunk(chunk_id=f"doc-{self.doc.pk}:0", document_id="d", position=0, text=text)
        store = SimpleNamespace(store=SimpleNamespace(get_chunks=lambda ids: {chunk.chunk_id: chunk}))
        with patch("console.pages.views.get_engine", return_value=store):
            response = self.client.get(reverse("console:document", args=[self.doc.pk]))
        # every character, line break and space of the chunk, escaped; and CSS that keeps them visible
        self.assertContains(response, f"<p>{escape(text)}</p>", html=False)
        css = (Path(__file__).parents[2] / "console/static/console/console.css").read_text()
        self.assertIn(".chunk p { margin: .3rem 0 0; white-space: pre-wrap;", css)

    def test_delete_asks_then_queues_a_job(self) -> None:
        self.login_staff()
        url = reverse("console:document-delete", args=[self.doc.pk])
        self.assertContains(self.client.get(url), "Delete this document?")
        with patch("console.pages.views.jobs.delete_document", return_value=self.running) as delete:
            response = self.client.post(url)
        delete.assert_called_once_with(self.doc, self.staff)
        self.assertRedirects(response, reverse("console:job", args=[self.running.pk]), fetch_redirect_response=False)

    def test_reingest_queues_a_job(self) -> None:
        self.login_staff()
        with patch("console.pages.views.jobs.reingest_document", return_value=self.running) as reingest:
            response = self.client.post(reverse("console:document-reingest", args=[self.doc.pk]))
        reingest.assert_called_once_with(self.doc, self.staff)
        self.assertRedirects(response, reverse("console:job", args=[self.running.pk]), fetch_redirect_response=False)

    def test_an_upload_without_files_says_so(self) -> None:
        self.login_staff()
        response = self.client.post(reverse("console:documents"), follow=True)
        self.assertContains(response, "Choose at least one file to upload.")


class JobPagesTestCase(BaseTestCase):
    def test_the_list_counts_files_and_failures_and_filters_by_state(self) -> None:
        self.login_staff()
        response = self.client.get(reverse("console:jobs"))
        jobs = {job.pk: job for job in response.context["page"].object_list}
        self.assertEqual((jobs[self.job.pk].files_total, jobs[self.job.pk].files_failed), (2, 1))
        filtered = self.client.get(reverse("console:jobs"), {"state": "running"})
        self.assertEqual([j.pk for j in filtered.context["page"].object_list], [self.running.pk])

    def test_the_detail_shows_progress_and_each_files_error(self) -> None:
        self.login_staff()
        response = self.client.get(reverse("console:job", args=[self.job.pk]))
        self.assertContains(response, "partially failed")
        self.assertContains(response, "LoaderError")
        self.assertContains(response, "scan.pdf: corrupt PDF")
        self.assertContains(response, "<summary>Traceback</summary>")
        self.assertContains(response, 'data-finished="true"')
        self.assertContains(response, reverse("job-status", args=[self.job.pk]))
        running = self.client.get(reverse("console:job", args=[self.running.pk]))
        self.assertContains(running, 'data-finished="false"')
        self.assertContains(running, 'aria-valuenow="25"')

    def test_retry_and_cancel_call_the_ingest_service(self) -> None:
        self.login_staff()
        with patch("console.pages.views.jobs.retry_job") as retry:
            response = self.client.post(reverse("console:job-retry", args=[self.job.pk]))
        retry.assert_called_once_with(self.job)
        self.assertRedirects(response, reverse("console:job", args=[self.job.pk]), fetch_redirect_response=False)
        with patch("console.pages.views.jobs.cancel_job") as cancel:
            self.client.post(reverse("console:job-cancel", args=[self.running.pk]))
        cancel.assert_called_once_with(self.running)

    def test_a_refused_retry_is_reported(self) -> None:
        self.login_staff()
        with patch("console.pages.views.jobs.retry_job", side_effect=jobs.IngestError("nothing to retry")):
            response = self.client.post(reverse("console:job-retry", args=[self.job.pk]), follow=True)
        self.assertContains(response, "nothing to retry")


class ConversationPagesTestCase(BaseTestCase):
    def test_the_list_counts_messages_and_votes(self) -> None:
        self.login_staff()
        response = self.client.get(reverse("console:conversations"))
        rows = {c.pk: c for c in response.context["page"].object_list}
        self.assertEqual(rows[self.conversation.pk].message_count, 2)
        self.assertEqual(rows[self.conversation.pk].thumbs_up, 1)
        self.assertEqual(rows[self.quiet.pk].message_count, 1)

    def test_filters_by_surface_feedback_and_date(self) -> None:
        self.login_staff()
        url = reverse("console:conversations")

        def listed(**params: str) -> list[int]:
            return [c.pk for c in self.client.get(url, params).context["page"].object_list]

        self.assertEqual(listed(surface="web"), [self.quiet.pk])
        self.assertEqual(listed(feedback="up"), [self.conversation.pk])
        self.assertEqual(listed(feedback="down"), [])
        today = timezone.localdate().isoformat()
        self.assertEqual(set(listed(since=today, until=today)), {self.conversation.pk, self.quiet.pk})
        self.assertEqual(listed(until="2000-01-01"), [])

    def test_the_list_stays_at_a_fixed_number_of_queries(self) -> None:
        for i in range(20):
            c = Conversation.objects.create(surface="web", external_key=f"k{i}")
            Message.objects.create(conversation=c, role="user", text="q")
        self.login_staff()
        with self.assertNumQueries(6):  # session, user, count, page, message counts, vote counts
            self.client.get(reverse("console:conversations"))

    def test_the_detail_shows_citations_provider_tokens_latency_and_feedback(self) -> None:
        self.login_staff()
        response = self.client.get(reverse("console:conversation", args=[self.conversation.pk]))
        self.assertContains(response, f'href="/sources/{self.doc.pk}/"')
        # Cited, but no longer in the database: still linked, and the source viewer says it was deleted.
        self.assertContains(response, 'href="/sources/999999/">Gone document')
        self.assertContains(response, "llama-test")
        self.assertContains(response, "120 + 30 tokens")
        self.assertContains(response, "850 ms")
        self.assertContains(response, "spot on")
        self.assertNotContains(response, XSS)
        self.assertContains(response, "How do I start? &lt;script&gt;")


@pytest.mark.slow
@pytest.mark.django_db
def test_an_upload_reports_each_file(data_dir: Path, client: Client, django_user_model: Any) -> None:
    staff = django_user_model.objects.create_user("carol", password="pw", is_staff=True)
    client.force_login(staff)
    good = SimpleUploadedFile("notes.md", b"# Notes\n\nThe deploy key rotates every ninety days.\n")
    bad = SimpleUploadedFile("setup.pdf", b"MZ\x90\x00\x03\x00\x00\x00 this is a windows program")
    response = client.post(reverse("console:documents"), {"files": [good, bad]})
    job = IngestJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("console:job", args=[job.pk])
    shown = [str(m) for m in get_messages(response.wsgi_request)]
    assert len(shown) == 1 and shown[0].startswith("1 file accepted, indexing in the background, 1 refused: setup.pdf ("), shown
    page = client.get(response["Location"])
    assert b"notes.md" in page.content
