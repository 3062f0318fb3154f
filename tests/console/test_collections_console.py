"""The console's collections pages: staff only, CSRF on; list, add, rename, visibility, delete; each change audited."""

from __future__ import annotations

from typing import Any

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client, TestCase
from django.urls import reverse
from django.utils.crypto import get_random_string

from console.access.visibility import visible_keys
from console.models import Collection, Document, Source


def csrf_client(user: Any) -> Client:
    """A logged-in client that enforces CSRF, as a browser meets it."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def post(client: Client, url: str, data: dict[str, Any] | None = None, **extra: Any) -> Any:
    """POSTs with a CSRF token, as the page's form carries it: the cookie's secret (32 letters or digits,
    which Django also accepts unmasked), so a member refused the page can still try a valid post."""
    if "csrftoken" not in client.cookies:
        client.cookies["csrftoken"] = get_random_string(32)
    token = client.cookies["csrftoken"].value
    return client.post(url, {**(data or {}), "csrfmiddlewaretoken": token}, **extra)


def sees(user: Any) -> frozenset[str]:
    """The collection keys a member may search (never None: that is staff's "all")."""
    keys = visible_keys(user)
    assert keys is not None
    return keys


def flashes(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


class AccessPagesTestCase(TestCase):
    staff: Any
    member: Any

    @classmethod
    def setUpTestData(cls) -> None:
        User = get_user_model()
        cls.staff = User.objects.create_user("alice", password="pw", is_staff=True)
        cls.member = User.objects.create_user("bob", password="pw")

    def setUp(self) -> None:
        self.client = csrf_client(self.staff)


class CollectionPagesTestCase(AccessPagesTestCase):
    hr: Collection
    people: Group

    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        cls.people = Group.objects.create(name="People team")
        cls.hr = Collection.create("HR", visibility=Collection.Visibility.GROUPS)
        cls.hr.groups.add(cls.people)
        Document.objects.create(checksum="a" * 64, original_filename="salaries.md", status="indexed", collection=cls.hr)
        Document.objects.create(checksum="b" * 64, original_filename="old.md", status="superseded", collection=cls.hr)
        Document.objects.create(checksum="c" * 64, original_filename="handbook.md", status="indexed")

    def test_every_access_page_is_for_staff_only(self) -> None:
        group = Group.objects.create(name="Finance")
        urls = [reverse("console:collections"), reverse("console:collection", args=[self.hr.pk]),
                reverse("console:collection-delete", args=[self.hr.pk]), reverse("console:groups"),
                reverse("console:group", args=[group.pk]), reverse("console:channels"), reverse("console:links")]
        anonymous, member = Client(), csrf_client(self.member)
        for url in urls:
            self.assertEqual(self.client.get(url).status_code, 200, url)
            self.assertEqual(member.get(url).status_code, 403, url)
            response = anonymous.get(url)
            self.assertEqual(response.status_code, 302, url)
            self.assertIn(reverse("login"), response["Location"])
        # Nor can a member change anything by posting (with a valid token).
        response = post(member, reverse("console:collections"), {"name": "Mine", "visibility": "everyone"})
        self.assertEqual(response.status_code, 403)
        response = post(member, reverse("console:collection", args=[self.hr.pk]), {"name": "HR", "visibility": "everyone"})
        self.assertEqual(response.status_code, 403)
        self.assertFalse(Collection.objects.filter(name="Mine").exists())
        self.assertEqual(Collection.objects.get(pk=self.hr.pk).visibility, "groups")

    def test_a_post_without_the_csrf_token_is_refused(self) -> None:
        response = self.client.post(reverse("console:collections"), {"name": "Sneaky", "visibility": "everyone"})
        self.assertEqual(response.status_code, 403)
        self.assertFalse(Collection.objects.filter(name="Sneaky").exists())

    def test_the_list_shows_each_collection_its_current_documents_and_who_sees_it(self) -> None:
        response = self.client.get(reverse("console:collections"))
        self.assertContains(response, "HR")
        self.assertContains(response, "People team")
        rows = {c.key: c for c in response.context["collections"]}
        self.assertEqual(rows["hr"].document_count, 1)  # the superseded version is not counted
        self.assertEqual(rows["default"].document_count, 1)
        self.assertContains(response, "everyone")
        self.assertContains(response, f'{reverse("console:documents")}?collection=hr')

    def test_staff_add_a_collection_for_chosen_groups(self) -> None:
        response = post(self.client, reverse("console:collections"),
                        {"name": "Security runbooks", "description": "On-call only", "visibility": "groups",
                         "groups": [self.people.pk]}, follow=True)
        made = Collection.objects.get(name="Security runbooks")
        self.assertEqual((made.key, made.visibility, list(made.groups.all())), ("security-runbooks", "groups", [self.people]))
        self.assertIn("Collection Security runbooks added (key security-runbooks); visible to People team.", flashes(response))
        entry = LogEntry.objects.get(object_id=str(made.pk), content_type__model="collection")
        self.assertEqual((entry.action_flag, entry.user), (ADDITION, self.staff))
        # Its grant is real: a member of the group may search it, another member may not.
        insider = get_user_model().objects.create_user("carol")
        insider.groups.add(self.people)
        self.assertIn("security-runbooks", sees(insider))
        self.assertNotIn("security-runbooks", sees(self.member))

    def test_a_name_taken_in_any_case_is_a_field_error(self) -> None:
        response = post(self.client, reverse("console:collections"), {"name": "hr", "visibility": "everyone"})
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.context["form"].errors["name"], ["Another collection already has this name."])
        self.assertContains(response, 'data-field-error="name"')
        response = post(self.client, reverse("console:collections"), {"name": "", "visibility": "nobody"})
        self.assertIn("visibility", response.context["form"].errors)
        self.assertIn("name", response.context["form"].errors)

    def test_renaming_keeps_the_key_and_opening_it_to_everyone_drops_its_groups(self) -> None:
        url = reverse("console:collection", args=[self.hr.pk])
        response = post(self.client, url, {"name": "People & HR", "visibility": "everyone", "groups": [self.people.pk]},
                        follow=True)
        self.hr.refresh_from_db()
        self.assertEqual((self.hr.name, self.hr.key, self.hr.visibility), ("People & HR", "hr", "everyone"))
        self.assertEqual(list(self.hr.groups.all()), [])
        self.assertIn("hr", sees(self.member))
        self.assertIn("Collection People &amp; HR saved; visible to everyone.", response.content.decode())
        entry = LogEntry.objects.filter(object_id=str(self.hr.pk), content_type__model="collection").latest("pk")
        self.assertEqual(entry.action_flag, CHANGE)
        self.assertEqual(entry.get_change_message(),
                         "Changed from the console: renamed from HR to People & HR; visible to everyone (was People team).")

    def test_restricting_a_collection_hides_it_from_members_outside_its_groups(self) -> None:
        self.assertIn("default", sees(self.member))
        default = Collection.default()
        post(self.client, reverse("console:collection", args=[default.pk]),
             {"name": "Default", "visibility": "groups", "groups": [self.people.pk]})
        self.assertNotIn("default", sees(self.member))

    def test_the_default_collection_is_never_deleted(self) -> None:
        default = Collection.default()
        page = self.client.get(reverse("console:collection-delete", args=[default.pk]))
        self.assertContains(page, "the default collection cannot be deleted")
        self.assertNotContains(page, 'type="submit">Delete<')
        response = post(self.client, reverse("console:collection-delete", args=[default.pk]), follow=True)
        self.assertIn("Default was not deleted: the default collection cannot be deleted.", flashes(response))
        self.assertTrue(Collection.objects.filter(pk=default.pk).exists())

    def test_a_collection_with_documents_is_not_deleted_until_they_are_moved(self) -> None:
        page = self.client.get(reverse("console:collection-delete", args=[self.hr.pk]))
        self.assertContains(page, "it still holds 2 documents; move them to another collection first")
        response = post(self.client, reverse("console:collection-delete", args=[self.hr.pk]), follow=True)
        self.assertTrue(Collection.objects.filter(pk=self.hr.pk).exists())
        self.assertIn("HR was not deleted: it still holds 2 documents; move them to another collection first.",
                      flashes(response))

    def test_a_collection_a_source_syncs_into_is_not_deleted(self) -> None:
        wiki = Collection.create("Wiki")
        Source.objects.create(name="wiki", kind="folder", config={"path": "/srv/wiki"}, collection=wiki)
        response = post(self.client, reverse("console:collection-delete", args=[wiki.pk]), follow=True)
        self.assertTrue(Collection.objects.filter(pk=wiki.pk).exists())
        self.assertIn("Wiki was not deleted: the source wiki puts its documents here; give it another collection first.",
                      flashes(response))

    def test_an_empty_collection_is_deleted_and_the_delete_audited(self) -> None:
        empty = Collection.create("Drafts")
        response = post(self.client, reverse("console:collection-delete", args=[empty.pk]), follow=True)
        self.assertFalse(Collection.objects.filter(pk=empty.pk).exists())
        self.assertIn("Collection Drafts deleted.", flashes(response))
        entry = LogEntry.objects.get(object_id=str(empty.pk), content_type__model="collection", action_flag=DELETION)
        self.assertEqual((entry.object_repr, entry.user), ("Drafts", self.staff))

    def test_the_console_nav_links_the_access_pages(self) -> None:
        response = self.client.get(reverse("console:dashboard"))
        self.assertContains(response, f'href="{reverse("console:collections")}"')
