"""The console's groups, channel scopes and account links pages: field errors, the change each makes, its audit entry."""

from __future__ import annotations

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.urls import reverse

from console.chat.access import Asker, scope_for
from console.models import AccountLink, ChannelScope, Collection
from tests.console.test_collections_console import AccessPagesTestCase, csrf_client, flashes, post, sees


class GroupPagesTestCase(AccessPagesTestCase):
    def test_staff_create_a_group_add_a_member_and_the_member_sees_its_collections(self) -> None:
        response = post(self.client, reverse("console:groups"), {"name": "Finance"}, follow=True)
        group = Group.objects.get(name="Finance")
        self.assertIn("Group Finance added: add its members, then grant it collections.", flashes(response))
        ledger = Collection.create("Ledger", visibility=Collection.Visibility.GROUPS)
        ledger.groups.add(group)
        self.assertNotIn("ledger", sees(self.member))

        response = post(self.client, reverse("console:group", args=[group.pk]), {"username": "bob"}, follow=True)
        self.assertIn("bob is now in Finance.", flashes(response))
        self.assertIn("ledger", sees(self.member))
        self.assertContains(response, "Ledger")  # what the group grants, on its page
        members = self.client.get(reverse("console:members"))
        self.assertContains(members, f'<a href="{reverse("console:group", args=[group.pk])}">Finance</a>')
        entry = LogEntry.objects.filter(object_id=str(self.member.pk), content_type__model="user").latest("pk")
        self.assertEqual((entry.action_flag, entry.get_change_message()), (CHANGE, "Added to the group Finance from the console."))

        response = post(self.client, reverse("console:group-member-remove", args=[group.pk, self.member.pk]), follow=True)
        self.assertIn("bob is no longer in Finance.", flashes(response))
        self.assertNotIn("ledger", sees(self.member))

    def test_an_unknown_user_or_a_member_already_in_is_a_field_error(self) -> None:
        group = Group.objects.create(name="Finance")
        response = post(self.client, reverse("console:group", args=[group.pk]), {"username": "nobody"})
        self.assertEqual(response.context["form"].errors["username"], ["No account is called nobody."])
        self.member.groups.add(group)
        response = post(self.client, reverse("console:group", args=[group.pk]), {"username": "bob"})
        self.assertEqual(response.context["form"].errors["username"], ["bob is in Finance already."])
        response = post(self.client, reverse("console:groups"), {"name": "finance"})
        self.assertEqual(response.context["form"].errors["name"], ["A group with this name exists already."])

    def test_deleting_a_group_takes_its_grants_away_and_is_audited(self) -> None:
        group = Group.objects.create(name="Board")
        vault = Collection.create("Vault", visibility=Collection.Visibility.GROUPS)
        vault.groups.add(group)
        self.member.groups.add(group)
        self.assertIn("vault", sees(self.member))
        response = post(self.client, reverse("console:group-delete", args=[group.pk]), follow=True)
        self.assertIn("Group Board deleted: its members no longer see Vault through it.", flashes(response))
        self.assertNotIn("vault", sees(self.member))
        self.assertTrue(LogEntry.objects.filter(object_id=str(group.pk), content_type__model="group",
                                                action_flag=DELETION).exists())

    def test_a_member_cannot_add_themselves_to_a_group(self) -> None:
        group = Group.objects.create(name="Board")
        response = post(csrf_client(self.member), reverse("console:group", args=[group.pk]), {"username": "bob"})
        self.assertEqual(response.status_code, 403)
        self.assertFalse(self.member.groups.exists())


class ChannelScopePagesTestCase(AccessPagesTestCase):
    def test_a_slack_channel_scoped_from_the_console_answers_from_its_collections_only(self) -> None:
        support = Collection.create("Support")
        slack = Asker(platform="slack", workspace="T024BE7LD", channel="C012AB3CD", external_user="U1")
        self.assertIn("default", scope_for(slack) or ())  # unscoped: everyone's collections
        response = post(self.client, reverse("console:channels"),
                        {"platform": "slack", "workspace": "t024be7ld", "channel": "c012ab3cd", "label": "#support",
                         "collections": [support.pk]}, follow=True)
        scope = ChannelScope.objects.get()
        self.assertEqual((scope.workspace, scope.channel), ("T024BE7LD", "C012AB3CD"))  # Slack ids are upper case
        self.assertIn("slack T024BE7LD/C012AB3CD (#support) answers from Support.", flashes(response))
        self.assertEqual(scope_for(slack), frozenset({"support"}))
        entry = LogEntry.objects.get(object_id=str(scope.pk), content_type__model="channelscope")
        self.assertEqual(entry.action_flag, ADDITION)

        # Edited: it answers from the default collection too; removed: from everyone's again.
        default = Collection.default()
        post(self.client, reverse("console:channel", args=[scope.pk]),
             {"platform": "slack", "workspace": "T024BE7LD", "channel": "C012AB3CD", "collections": [support.pk, default.pk]})
        self.assertEqual(scope_for(slack), frozenset({"support", "default"}))
        self.assertEqual(LogEntry.objects.filter(object_id=str(scope.pk), content_type__model="channelscope").count(), 2)
        post(self.client, reverse("console:channel-delete", args=[scope.pk]))
        self.assertFalse(ChannelScope.objects.exists())
        self.assertEqual(scope_for(slack), frozenset({"default", "support"}))  # both open to everyone

    def test_a_discord_server_default_and_a_channel_override(self) -> None:
        guides = Collection.create("Guides", visibility=Collection.Visibility.GROUPS)
        post(self.client, reverse("console:channels"),
             {"platform": "discord", "workspace": "81384788765712384", "channel": "", "collections": [guides.pk]})
        post(self.client, reverse("console:channels"),
             {"platform": "discord", "workspace": "81384788765712384", "channel": "81384788765712385"})
        server = Asker(platform="discord", workspace="81384788765712384", channel="999", external_user="1")
        quiet = Asker(platform="discord", workspace="81384788765712384", channel="81384788765712385", external_user="1")
        self.assertEqual(scope_for(server), frozenset({"guides"}))
        self.assertEqual(scope_for(quiet), frozenset())  # nothing ticked: it answers from nothing
        self.assertContains(self.client.get(reverse("console:channels")), "whole server")

    def test_bad_ids_a_missing_slack_channel_and_a_second_scope_are_field_errors(self) -> None:
        url = reverse("console:channels")
        errors = post(self.client, url, {"platform": "slack", "workspace": "T1", "channel": ""}).context["form"].errors
        self.assertEqual(errors["channel"], ["A Slack scope needs its channel id (C…)."])
        errors = post(self.client, url, {"platform": "slack", "workspace": "T-1!", "channel": "C1"}).context["form"].errors
        self.assertEqual(errors["workspace"], ["A Slack workspace id is letters and digits, like T024BE7LD or C012AB3CD."])
        errors = post(self.client, url, {"platform": "discord", "workspace": "guild", "channel": ""}).context["form"].errors
        self.assertEqual(errors["workspace"], ["A Discord server id is a number (Copy ID in Discord's developer mode)."])
        post(self.client, url, {"platform": "slack", "workspace": "T1", "channel": "C1"})
        response = post(self.client, url, {"platform": "slack", "workspace": "T1", "channel": "c1"})
        self.assertEqual(response.context["form"].errors["channel"], ["This channel has a scope already; edit that one."])
        self.assertContains(response, 'data-field-error="channel"')
        self.assertEqual(ChannelScope.objects.count(), 1)


class AccountLinkPagesTestCase(AccessPagesTestCase):
    def test_staff_link_a_slack_user_and_their_dms_search_what_that_user_sees(self) -> None:
        hr = Collection.create("HR", visibility=Collection.Visibility.GROUPS)
        people = Group.objects.create(name="People")
        hr.groups.add(people)
        self.member.groups.add(people)
        dm = Asker(platform="slack", workspace="T024BE7LD", channel="D1", external_user="U012AB3CD", direct=True)
        self.assertNotIn("hr", scope_for(dm) or ())
        response = post(self.client, reverse("console:links"),
                        {"platform": "slack", "external_user": "t024be7ld:u012ab3cd", "user": "bob"}, follow=True)
        link = AccountLink.objects.get()
        self.assertEqual((link.external_user, link.user, link.created_by), ("T024BE7LD:U012AB3CD", self.member, self.staff))
        self.assertIn("slack T024BE7LD:U012AB3CD → bob: their direct messages search what bob may see.", flashes(response))
        self.assertIn("hr", scope_for(dm) or ())
        self.assertContains(self.client.get(reverse("console:links")), "T024BE7LD:U012AB3CD")
        self.assertEqual(LogEntry.objects.get(content_type__model="accountlink").action_flag, ADDITION)

        response = post(self.client, reverse("console:link-delete", args=[link.pk]), follow=True)
        self.assertFalse(AccountLink.objects.exists())
        self.assertIn("Unlinked slack T024BE7LD:U012AB3CD → bob: their direct messages search only what everyone may see.",
                      flashes(response))
        self.assertNotIn("hr", scope_for(dm) or ())

    def test_a_bad_account_an_unknown_user_and_a_linked_account_are_field_errors(self) -> None:
        url = reverse("console:links")
        errors = post(self.client, url, {"platform": "slack", "external_user": "U012AB3CD", "user": "bob"}).context["form"].errors
        self.assertEqual(errors["external_user"], ["A Slack account is TEAM:USER, e.g. T024BE7LD:U012AB3CD."])
        errors = post(self.client, url, {"platform": "discord", "external_user": "bob#1234", "user": "bob"}).context["form"].errors
        self.assertEqual(errors["external_user"], ["A Discord user id is a number (Copy ID in Discord's developer mode)."])
        errors = post(self.client, url, {"platform": "discord", "external_user": "80351110224678912", "user": "zed"}).context["form"].errors
        self.assertEqual(errors["user"], ["No active account has this username."])
        post(self.client, url, {"platform": "discord", "external_user": "80351110224678912", "user": "bob"})
        errors = post(self.client, url, {"platform": "discord", "external_user": "80351110224678912", "user": "alice"}).context["form"].errors
        self.assertEqual(errors["external_user"], ["This account is linked to bob already; delete that link first."])
        self.assertEqual(AccountLink.objects.get().user, self.member)

    def test_a_member_cannot_link_an_account_to_themselves(self) -> None:
        response = post(csrf_client(self.member), reverse("console:links"),
                        {"platform": "discord", "external_user": "80351110224678912", "user": "bob"})
        self.assertEqual(response.status_code, 403)
        self.assertFalse(AccountLink.objects.exists())
        self.assertEqual(get_user_model().objects.count(), 2)
