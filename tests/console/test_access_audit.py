"""Changes to collections and grants are audited: the Django admin's LogEntry rows, for the admin's own edits
and the console's alike, shown on each object's History page."""

from __future__ import annotations

from typing import Any

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import TestCase
from django.urls import reverse

from console.models import AccountLink, ChannelScope, Collection
from tests.console.test_collections_console import csrf_client, post


class AccessAuditTestCase(TestCase):
    root: Any
    board: Group

    @classmethod
    def setUpTestData(cls) -> None:
        cls.root = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
        cls.board = Group.objects.create(name="Board")

    def setUp(self) -> None:
        self.client = csrf_client(self.root)

    def entries(self, obj: Any) -> list[LogEntry]:
        return list(LogEntry.objects.filter(object_id=str(obj.pk), content_type__model=obj._meta.model_name).order_by("pk"))

    def test_the_admin_records_a_collection_added_restricted_and_deleted(self) -> None:
        response = post(self.client, reverse("admin:console_collection_add"),
                        {"key": "vault", "name": "Vault", "description": "", "visibility": "everyone"})
        self.assertEqual(response.status_code, 302)
        vault = Collection.objects.get(key="vault")
        response = post(self.client, reverse("admin:console_collection_change", args=[vault.pk]),
                        {"name": "Vault", "description": "", "visibility": "groups", "groups": [self.board.pk]})
        self.assertEqual(response.status_code, 302)
        vault.refresh_from_db()
        self.assertEqual(list(vault.groups.all()), [self.board])
        added, changed = self.entries(vault)
        self.assertEqual((added.action_flag, added.user), (ADDITION, self.root))
        self.assertEqual(changed.action_flag, CHANGE)
        self.assertEqual(changed.get_change_message(), "Changed Visibility and Groups.")

        response = post(self.client, reverse("admin:console_collection_delete", args=[vault.pk]), {"post": "yes"})
        self.assertEqual(response.status_code, 302)
        self.assertEqual(self.entries(vault)[-1].action_flag, DELETION)

    def test_the_admin_records_channel_scopes_and_account_links(self) -> None:
        vault = Collection.create("Vault")
        post(self.client, reverse("admin:console_channelscope_add"),
             {"platform": "slack", "workspace": "T1", "channel": "C1", "label": "", "collections": [vault.pk]})
        scope = ChannelScope.objects.get()
        self.assertEqual([e.action_flag for e in self.entries(scope)], [ADDITION])
        member = get_user_model().objects.create_user("bob")
        post(self.client, reverse("admin:console_accountlink_add"),
             {"platform": "discord", "external_user": "80351110224678912", "user": member.pk})
        link = AccountLink.objects.get()
        self.assertEqual([e.action_flag for e in self.entries(link)], [ADDITION])
        self.assertEqual(link.created_by, self.root)

    def test_the_history_page_shows_the_consoles_changes_beside_the_admins(self) -> None:
        vault = Collection.create("Vault")
        post(self.client, reverse("console:collection", args=[vault.pk]),
             {"name": "Vault", "visibility": "groups", "groups": [self.board.pk]})
        history = self.client.get(reverse("admin:console_collection_history", args=[vault.pk]))
        self.assertContains(history, "Changed from the console: visible to Board (was everyone).")
        recent = self.client.get(reverse("admin:index"))
        self.assertContains(recent, "Vault")  # the admin's "Recent actions" lists it
