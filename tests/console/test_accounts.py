"""Members and staff: where each lands after logging in, the styled error pages, the chat header, new accounts."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.test import Client, RequestFactory, TestCase
from django.views.defaults import server_error


class AccountsTestCase(TestCase):
    staff: Any
    member: Any

    @classmethod
    def setUpTestData(cls) -> None:
        User = get_user_model()
        cls.staff = User.objects.create_user("alice", password="pw-alice-1", is_staff=True)
        cls.member = User.objects.create_user("bob", password="pw-bob-1")

    def log_in(self, username: str, password: str, next_url: str = "") -> Any:
        data = {"username": username, "password": password}
        if next_url:
            data["next"] = next_url
        return self.client.post("/accounts/login/", data)

    def test_a_member_lands_on_the_chat_and_staff_on_the_console(self) -> None:
        self.assertRedirects(self.log_in("bob", "pw-bob-1"), "/chat/", fetch_redirect_response=False)
        self.client = Client()
        self.assertRedirects(self.log_in("alice", "pw-alice-1"), "/console/", fetch_redirect_response=False)

    def test_next_is_honoured_only_where_the_user_may_go(self) -> None:
        self.assertRedirects(self.log_in("bob", "pw-bob-1", "/chat/?c=4"), "/chat/?c=4", fetch_redirect_response=False)
        self.client = Client()
        # A member sent to the console by `next` would meet a 403: the chat instead.
        self.assertRedirects(self.log_in("bob", "pw-bob-1", "/console/documents/"), "/chat/", fetch_redirect_response=False)
        self.client = Client()
        self.assertRedirects(self.log_in("bob", "pw-bob-1", "https://evil.example/"), "/chat/", fetch_redirect_response=False)
        self.client = Client()
        self.assertRedirects(self.log_in("alice", "pw-alice-1", "/console/jobs/"), "/console/jobs/", fetch_redirect_response=False)

    def test_the_login_page_speaks_to_members_and_staff(self) -> None:
        body = self.client.get("/accounts/login/").content.decode()
        self.assertIn("ask your team's documents", body.replace("&#x27;", "'"))
        self.assertIn("Staff also reach the console", body)

    def test_a_logged_in_visitor_of_the_home_page_goes_where_they_work(self) -> None:
        self.client.force_login(self.member)
        self.assertRedirects(self.client.get("/"), "/chat/", fetch_redirect_response=False)
        self.client.force_login(self.staff)
        self.assertRedirects(self.client.get("/"), "/console/", fetch_redirect_response=False)

    def test_a_member_at_the_console_gets_a_styled_403_that_leads_to_the_chat(self) -> None:
        self.client.force_login(self.member)
        response = self.client.get("/console/")
        self.assertEqual(response.status_code, 403)
        body = response.content.decode()
        self.assertIn("console.css", body)
        self.assertIn("logged in as <strong>bob</strong>", body)
        self.assertIn("the console and the admin are for staff", body)
        self.assertIn('href="/chat/"', body)
        self.assertNotIn('href="/console/"', body)

    def test_a_missing_page_is_a_styled_404_naming_the_address(self) -> None:
        response = self.client.get("/no/such/page/")
        self.assertEqual(response.status_code, 404)
        body = response.content.decode()
        self.assertIn("Nothing here", body)
        self.assertIn("/no/such/page/", body)
        self.assertIn('href="/accounts/login/?next=/no/such/page/"', body)

    def test_a_server_error_is_a_styled_500_with_a_way_back(self) -> None:
        response = server_error(RequestFactory().get("/chat/"))
        self.assertEqual(response.status_code, 500)
        body = response.content.decode()
        self.assertIn("Something went wrong", body)
        self.assertIn('href="/"', body)

    def test_the_chat_header_shows_the_user_a_log_out_and_the_console_for_staff(self) -> None:
        self.client.force_login(self.member)
        body = self.client.get("/chat/").content.decode()
        self.assertIn('aria-label="Account"', body)
        self.assertIn(">bob</span>", body)
        self.assertIn('action="/accounts/logout/"', body)
        self.assertNotIn('href="/console/"', body)
        self.client.force_login(self.staff)
        self.assertIn('href="/console/"', self.client.get("/chat/").content.decode())

    def test_staff_create_a_member_who_can_then_log_in_to_the_chat(self) -> None:
        self.client.force_login(self.staff)
        response = self.client.post("/console/members/", {
            "username": "carol", "email": "carol@example.com",
            "password1": "a-long-Passphrase-9", "password2": "a-long-Passphrase-9",
        })
        self.assertRedirects(response, "/console/members/", fetch_redirect_response=False)
        carol = get_user_model().objects.get(username="carol")
        self.assertFalse(carol.is_staff)
        self.assertIn("carol", self.client.get("/console/members/").content.decode())
        self.client = Client()
        self.assertRedirects(self.log_in("carol", "a-long-Passphrase-9"), "/chat/", fetch_redirect_response=False)

    def test_the_members_page_refuses_a_bad_account_and_members(self) -> None:
        self.client.force_login(self.staff)
        response = self.client.post("/console/members/", {"username": "dave", "password1": "x1", "password2": "x2"})
        self.assertEqual(response.status_code, 200)
        self.assertIn("error-text", response.content.decode())
        self.assertFalse(get_user_model().objects.filter(username="dave").exists())
        self.client.force_login(self.member)
        self.assertEqual(self.client.get("/console/members/").status_code, 403)
