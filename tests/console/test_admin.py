"""The Django admin: every model listed, searchable and filterable; audit records read-only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db.models import Model
from django.test import TestCase
from django.urls import reverse

from console.models import Conversation, Document, Feedback, IngestJob, IngestJobFile, Message

# model → (a search term that finds the seeded row, a filter that keeps it)
CHANGELISTS = {
    Document: ("handbook", {"status__exact": "indexed"}),
    IngestJob: ("handbook", {"state__exact": "partially_failed"}),
    IngestJobFile: ("corrupt", {"state__exact": "failed"}),
    Conversation: ("onboarding", {"surface__exact": "slack"}),
    Message: ("handbook", {"role__exact": "assistant"}),
    Feedback: ("spot on", {"value__exact": "1"}),
}
READ_ONLY = (Conversation, Message, Feedback, IngestJob, IngestJobFile)


class AdminTestCase(TestCase):
    root: Any
    doc: Document
    job: IngestJob

    @classmethod
    def setUpTestData(cls) -> None:
        cls.root = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
        cls.doc = Document.objects.create(checksum="a" * 64, title="Handbook", original_filename="handbook.md", status="indexed", chunk_count=2)
        cls.job = IngestJob.objects.create(state="partially_failed", progress_done=2, progress_total=2)
        IngestJobFile.objects.create(job=cls.job, document=cls.doc, filename="handbook.md", state="indexed")
        IngestJobFile.objects.create(job=cls.job, filename="scan.pdf", state="failed", error_type="LoaderError", error_message="corrupt PDF")
        conversation = Conversation.objects.create(surface="slack", external_key="T1:C1:1", title="Onboarding <b>")
        Message.objects.create(conversation=conversation, role="user", text="Where is the handbook?")
        answer = Message.objects.create(conversation=conversation, role="assistant", text="See the handbook [1].", provider="extractive")
        Feedback.objects.create(message=answer, value=1, surface="slack", user_key="U1", comment="spot on")

    def setUp(self) -> None:
        self.client.force_login(self.root)

    def changelist(self, model: type[Model]) -> str:
        return reverse(f"admin:console_{model._meta.model_name}_changelist")

    def test_every_model_is_registered(self) -> None:
        for model in (Document, IngestJob, IngestJobFile, Conversation, Message, Feedback):
            self.assertTrue(admin.site.is_registered(model), model)

    def test_each_changelist_renders_with_a_search_and_a_filter(self) -> None:
        for model, (term, filters) in CHANGELISTS.items():
            url = self.changelist(model)
            self.assertEqual(self.client.get(url).status_code, 200, model)
            response = self.client.get(url, {"q": term, **filters})
            self.assertEqual(response.status_code, 200, model)
            self.assertEqual(response.context["cl"].result_count, 1, model)
            missing = self.client.get(url, {"q": "no-such-thing-anywhere"})
            self.assertEqual(missing.context["cl"].result_count, 0, model)

    def test_audit_records_cannot_be_added_changed_or_deleted(self) -> None:
        for model in READ_ONLY:
            model_admin = admin.site._registry[model]
            request = self.client.get(self.changelist(model)).wsgi_request
            self.assertFalse(model_admin.has_add_permission(request), model)
            self.assertFalse(model_admin.has_change_permission(request), model)
            self.assertFalse(model_admin.has_delete_permission(request), model)
            self.assertEqual(self.client.get(reverse(f"admin:console_{model._meta.model_name}_add")).status_code, 403, model)

    def test_a_message_can_be_viewed_but_not_deleted(self) -> None:
        message = Message.objects.first()
        view = self.client.get(reverse("admin:console_message_change", args=[message.pk]))
        self.assertEqual(view.status_code, 200)
        self.assertNotContains(view, 'name="_save"')
        delete = self.client.post(reverse("admin:console_message_delete", args=[message.pk]), {"post": "yes"})
        self.assertEqual(delete.status_code, 403)
        self.assertTrue(Message.objects.filter(pk=message.pk).exists())

    def test_a_job_shows_its_files_inline(self) -> None:
        response = self.client.get(reverse("admin:console_ingestjob_change", args=[self.job.pk]))
        self.assertContains(response, "scan.pdf")
        self.assertContains(response, "corrupt PDF")

    def test_documents_are_not_added_or_deleted_through_the_admin(self) -> None:
        self.assertEqual(self.client.get(reverse("admin:console_document_add")).status_code, 403)
        response = self.client.get(reverse("admin:console_document_change", args=[self.doc.pk]))
        self.assertContains(response, 'name="title"')
        self.assertNotContains(response, 'name="checksum"')
