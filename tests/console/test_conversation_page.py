"""The console's conversation page: answers as safe Markdown with linked citations, times for the reader's zone, the favicon."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.staticfiles import finders
from django.test import TestCase

from console.models import Collection, Conversation, Message

ANSWER = (
    "**Roll back** with the pipeline [1], passing `tags[0]`.\n\n"
    "- run `rollback` [2]\n- check the channel\n\n"
    "<script>alert('x')</script> [see](javascript:alert(1))"
)


class ConversationPageTestCase(TestCase):
    def setUp(self) -> None:
        self.client.force_login(get_user_model().objects.create_user("alice", password="pw", is_staff=True))
        self.conversation = Conversation.objects.create(surface="web", external_key="w1", title="Rollback")
        self.answer = Message.objects.create(
            conversation=self.conversation, role="assistant", text=ANSWER, provider="extractive",
            citations=[
                {"n": 1, "document_id": "doc-3", "title": "Deploy", "source": "deploy.md", "location": "", "snippet": "",
                 "chunk_id": "doc-3:2"},
                {"n": 2, "document_id": "doc-4", "title": "Ops", "source": "ops.md", "location": "", "snippet": ""},
            ],
        )

    def body(self) -> str:
        return self.client.get(f"/console/conversations/{self.conversation.pk}/").content.decode()

    def test_an_answer_renders_as_markdown_with_each_marker_linked_to_its_source(self) -> None:
        body = self.body()
        pk = self.answer.pk
        assert "<strong>Roll back</strong>" in body
        assert "<li>check the channel</li>" in body
        assert f'<a class="cite" href="#cite-{pk}-1">[1]</a>' in body and f'href="#cite-{pk}-2">[2]</a>' in body
        assert "<code>tags[0]</code>" in body  # an index inside code is not a citation
        assert f'id="cite-{pk}-1"' in body
        assert 'href="/sources/3/?passage=2#passage">Deploy' in body and 'href="/sources/4/">Ops' in body

    def test_nothing_in_an_answer_becomes_markup(self) -> None:
        body = self.body()
        assert "<script>alert" not in body and "&lt;script&gt;alert" in body
        assert 'href="javascript' not in body

    def test_times_carry_their_instant_for_the_reader_s_time_zone(self) -> None:
        body = self.body()
        assert f'<time class="muted small" datetime="{self.answer.created_at.isoformat()}"' in body
        assert "console/console.js" in body  # which shows each <time> in the browser's own zone

    def test_every_page_has_a_favicon(self) -> None:
        assert 'rel="icon" href="/static/console/favicon.svg"' in self.body()
        assert finders.find("console/favicon.svg")
        response = self.client.get("/favicon.ico")
        assert response.status_code == 301 and response["Location"].endswith("/static/console/favicon.svg")
        for path in ("/chat/", "/no/such/page/"):
            assert 'rel="icon"' in self.client.get(path).content.decode(), path
        self.client.logout()
        for path in ("/", "/accounts/login/"):
            assert 'rel="icon"' in self.client.get(path).content.decode(), path

    def test_each_answer_shows_the_collections_it_searched_by_name(self) -> None:
        Collection.create("Board vault")
        Collection.default()
        self.answer.collections = ["default", "board-vault", "gone-since"]
        self.answer.save()
        assert "searched: Board vault, Default, gone-since</span>" in self.body()
        self.answer.collections = []  # an answer from before collections: nothing to show
        self.answer.save()
        assert "searched:" not in self.body()
