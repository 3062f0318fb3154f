"""What an answer looks like in Slack: limits, escaping, sources, buttons."""

from __future__ import annotations

import json

from django.test import override_settings

from bots.answer import AnswerSnapshot
from bots.slack import blocks
from tests.support import citation


def _snap(text: str, **kwargs: object) -> AnswerSnapshot:
    return AnswerSnapshot(message_id=7, text=text, finished=True, **kwargs)  # type: ignore[arg-type]


def _section_texts(messages: list[blocks.SlackMessage]) -> list[str]:
    return [b["text"]["text"] for m in messages for b in m.blocks if b["type"] == "section"]


def test_a_long_answer_is_split_into_sections_and_messages_within_slacks_limits():
    paragraphs = [f"Paragraph {i}: " + "word " * 120 for i in range(400)]  # ~250,000 characters
    messages = blocks.answer_messages(_snap("\n\n".join(paragraphs), citations=(citation(1, "Guide"),)))
    assert len(messages) > 1
    assert all(len(m.blocks) < blocks.MAX_BLOCKS for m in messages), "one block stays free for the thanks"
    sections = _section_texts(messages)
    assert all(len(text) <= blocks.SECTION_LIMIT for text in sections)
    assert " ".join(sections).split() == "\n\n".join(paragraphs).split(), "nothing is lost or reordered"
    assert all(m.blocks[-1]["type"] != "actions" for m in messages[:-1])
    assert messages[-1].blocks[-1]["type"] == "actions" and "*Sources*" in json.dumps(messages[-1].blocks)
    assert all(len(m.text) <= blocks.FALLBACK_LIMIT for m in messages)


def test_document_and_model_text_cannot_ping_or_inject_links():
    evil = "Hi <!channel> and <!here|here> and <@U123> <https://evil.example|click> @channel @here @everyone & co"
    messages = blocks.answer_messages(_snap(evil, citations=(
        citation(1, "<!channel> notes", source="https://wiki.example.com/a?x=1&y=2"),)))
    raw = json.dumps([m.blocks for m in messages], ensure_ascii=False) + messages[0].text
    assert "<!" not in raw and "<@" not in raw and "<https://evil" not in raw
    for word in ("@channel", "@here", "@everyone"):
        assert word not in raw and word.replace("@", "@\u2060") in raw  # still readable, never a ping
    assert "&amp; co" in raw
    assert "<https://wiki.example.com/a?x=1&amp;y=2|&lt;!channel&gt; notes>" in raw


def test_markdown_becomes_mrkdwn():
    text = blocks.mrkdwn("# Rollback\n**Run** the [pipeline](https://ci.example.com/run).\n```bash\nmake rollback\n```")
    assert text == "*Rollback*\n*Run* the <https://ci.example.com/run|pipeline>.\n```\nmake rollback\n```"
    assert blocks.mrkdwn("[x](javascript:alert(1))") == "[x](javascript:alert(1))", "only http(s) links"


@override_settings(LOREBOT_PUBLIC_URL="https://lorebot.example.com")
def test_sources_are_numbered_with_location_and_link_where_there_is_one():
    sources = blocks.sources_blocks([
        citation(1, "Deployment", location="Rollback", source="deploy.md", document_id="doc-4"),
        citation(2, "Notes", source="notes.txt", document_id="cli-notes"),
    ])
    text = sources[0]["elements"][0]["text"]
    assert text == ("*Sources*\n[1] <https://lorebot.example.com/sources/4/|Deployment, Rollback>\n"
                    "[2] Notes")


def test_a_refused_or_failed_answer_has_an_apology_and_no_buttons():
    limited = blocks.answer_messages(AnswerSnapshot(error_code="rate_limited", error_message="Slow down: <3>",
                                                    finished=True))
    assert [b["type"] for b in limited[0].blocks] == ["context"]
    assert "Slow down: &lt;3&gt;" in json.dumps(limited[0].blocks)
    failed = blocks.answer_messages(AnswerSnapshot(message_id=3, error_code="retrieval_unavailable",
                                                   error_message="Search is unavailable", finished=True))
    assert "Sorry, I could not answer that" in json.dumps(failed[0].blocks)
    assert all(b["type"] != "actions" for b in failed[0].blocks)


def test_thanks_replace_an_earlier_thanks_and_ignore_a_malformed_user_id():
    first = blocks.with_thanks([blocks.section("answer")], "U0ALICE")
    second = blocks.with_thanks(first, "<!channel>")
    assert [b["type"] for b in second] == ["section", "context"]
    assert second[-1]["elements"][0]["text"] == "Thanks for the feedback, you!"
