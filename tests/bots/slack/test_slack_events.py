"""The Slack bot over HTTP: signed requests into /slack/events, real slack-bolt and slack_sdk, fake Slack."""

from __future__ import annotations

import asyncio
import io
import json
import time

import pytest
from django.conf import settings
from django.test import override_settings
from prometheus_client import REGISTRY

from bots.slack import answering, blocks
from console.models import Conversation, Feedback, Message
from console.ops.logs import configure_logging
from tests.bots.slack.conftest import WIKI_URL, Slack
from tests.fakes.groq import FakeGroqServer
from tests.fakes.slack import BOT_ID, TEAM_ID, FakeSlackServer, PostedMessage, event_body, mention, message, sign

pytestmark = pytest.mark.django_db(transaction=True)


def counted(outcome: str) -> float:
    return REGISTRY.get_sample_value("rag_bot_events_total", {"platform": "slack", "outcome": outcome}) or 0.0


def api_errors(error: str) -> float:
    return REGISTRY.get_sample_value("rag_bot_api_errors_total", {"platform": "slack", "error": error}) or 0.0


async def answer_of(fake: FakeSlackServer, channel: str, thread_ts: str, *, timeout: float = 20.0) -> PostedMessage:
    """The bot's reply in a thread once it is finished (its buttons, or its apology, are there)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for reply in fake.thread(channel, thread_ts):
            if any(b["type"] == "actions" for b in reply.blocks) or ":warning:" in reply.block_text:
                return reply
        await asyncio.sleep(0.02)
    raise AssertionError(f"no finished answer in {channel}/{thread_ts}: {fake.thread(channel, thread_ts)}")


async def answering_done(slack: Slack) -> None:
    """Every answer task has finished (so that nothing more will be posted)."""
    assert await answering.drain(20) == 0


def buttons(reply: PostedMessage) -> dict[str, str]:
    actions = next(b for b in reply.blocks if b["type"] == "actions")
    return {e["action_id"]: e["value"] for e in actions["elements"]}


async def test_a_mention_is_answered_in_its_thread_streamed_with_sources_and_buttons(slack: Slack) -> None:
    event = mention("How do I roll back a release?")
    started = time.perf_counter()
    response = await slack.send_event(event)
    assert response.status_code == 200 and time.perf_counter() - started < 1.0

    eyes, = await slack.fake.wait_for("reactions.add")
    assert (eyes.args["channel"], eyes.args["timestamp"], eyes.args["name"]) == ("C0GENERAL", event["ts"], "eyes")
    reply = await answer_of(slack.fake, "C0GENERAL", event["ts"])
    placeholder, = slack.fake.calls("chat.postMessage")
    assert placeholder.args["thread_ts"] == event["ts"] and "Looking that up" in placeholder.args["text"]
    assert reply.edits >= 3, "the answer is streamed into the placeholder, not posted at the end"
    edited_at = [c.at for c in slack.fake.calls("chat.update") if c.args["ts"] == reply.ts]
    gaps = [b - a for a, b in zip(edited_at, edited_at[1:-1])]  # the final edit comes when the answer ends
    assert all(gap >= 0.09 for gap in gaps), f"progress edits at most once per SLACK_UPDATE_INTERVAL: {gaps}"

    text = reply.block_text
    assert text.startswith("According to the documents, To roll back a release, run the rollback pipeline")
    assert "*Sources*" in text and f"[1] <{WIKI_URL}|Deployment" in text
    assert "<!channel>" not in json.dumps(reply.blocks) and "@channel" not in text.replace("\u2060", "")
    answer = await Message.objects.aget(role="assistant")
    assert buttons(reply) == {blocks.FEEDBACK_UP: str(answer.pk), blocks.FEEDBACK_DOWN: str(answer.pk)}
    conversation = await Conversation.objects.aget(pk=answer.conversation_id)
    assert (conversation.surface, conversation.external_key, conversation.user_key) == (
        "slack", f"{TEAM_ID}:C0GENERAL:{event['ts']}", "U0ALICE")
    assert answer.provider == "groq" and answer.text.startswith("According to the documents")


async def test_a_follow_up_in_the_thread_needs_no_mention(slack: Slack) -> None:
    first = mention("How do I roll back a release?")
    await slack.send_event(first)
    await answer_of(slack.fake, "C0GENERAL", first["ts"])

    follow_up = message("and who is notified?", thread_ts=first["ts"])
    assert (await slack.send_event(follow_up)).status_code == 200
    await slack.fake.wait_for("chat.postMessage", count=2)
    await answering_done(slack)
    replies = slack.fake.thread("C0GENERAL", first["ts"])
    assert len(replies) == 2 and all(any(b["type"] == "actions" for b in r.blocks) for r in replies)
    conversation = await Conversation.objects.aget(external_key=f"{TEAM_ID}:C0GENERAL:{first['ts']}")
    texts = [m async for m in conversation.messages.values_list("role", "text")]
    assert [role for role, _ in texts] == ["user", "assistant", "user", "assistant"]
    assert texts[2][1] == "and who is notified?"
    last = await conversation.messages.filter(role="assistant").alast()
    assert last is not None and last.retrieval_mode == "context", "the thread's earlier messages are the history"


async def test_messages_the_bot_must_not_answer_are_ignored(slack: Slack) -> None:
    ignored = counted("ignored")
    unanswered_thread = message("a thread the bot never joined", thread_ts="1700000000.000001")
    from_a_bot = message("I am another bot", channel_type="im", channel="D0ALICE", bot_id="B0OTHER")
    own = message("my own reply", channel_type="im", channel="D0ALICE", user="U0LOREBOT", bot_id=BOT_ID)
    edited = message("edited", channel_type="im", channel="D0ALICE", subtype="message_changed")
    chatter = message("just chatting, no thread")
    for event in (unanswered_thread, from_a_bot, own, edited, chatter):
        assert (await slack.send_event(event)).status_code == 200
    await answering_done(slack)
    assert not slack.fake.calls("chat.postMessage")
    assert counted("ignored") - ignored >= 4  # its own message is dropped by bolt before any listener


@override_settings(SLACK_MENTION_ONLY=True)
async def test_with_mention_only_a_thread_follow_up_needs_a_mention(slack: Slack) -> None:
    first = mention("How do I roll back a release?")
    await slack.send_event(first)
    await answer_of(slack.fake, "C0GENERAL", first["ts"])
    await slack.send_event(message("and who is notified?", thread_ts=first["ts"]))
    await answering_done(slack)
    assert len(slack.fake.calls("chat.postMessage")) == 1


@override_settings(SLACK_ALLOWED_CHANNELS=["C0DOCS"])
async def test_the_bot_answers_only_in_allowed_channels_and_dms(slack: Slack) -> None:
    await slack.send_event(mention("How do I roll back a release?", channel="C0GENERAL"))
    allowed = mention("How do I roll back a release?", channel="C0DOCS")
    await slack.send_event(allowed)
    await answer_of(slack.fake, "C0DOCS", allowed["ts"])
    await answering_done(slack)
    assert {c.args["channel"] for c in slack.fake.calls("chat.postMessage")} == {"C0DOCS"}
    response, _ = await slack.command("When do releases go out?", channel="C0GENERAL")
    assert response.status_code == 200 and "do not answer in this channel" in response.content.decode()


async def test_a_direct_message_is_answered_without_a_mention(slack: Slack) -> None:
    dm = message("When do releases go out?", channel="D0ALICE", channel_type="im")
    await slack.send_event(dm)
    reply = await answer_of(slack.fake, "D0ALICE", dm["ts"])
    assert "Tuesday" in reply.block_text and "*Sources*" in reply.block_text
    assert await Conversation.objects.filter(surface="slack", external_key=f"{TEAM_ID}:D0ALICE:{dm['ts']}").aexists()


async def test_ask_answers_privately_and_can_share_the_answer_in_the_channel(slack: Slack) -> None:
    response, response_url = await slack.command("How do I roll back a release?")
    assert response.status_code == 200
    assert json.loads(response.content) == {"text": blocks.THINKING, "response_type": "ephemeral"}
    private, = await slack.fake.wait_for("response_url")
    assert private.args["name"] == response_url.rsplit("/", 1)[1]
    assert private.args["response_type"] == "ephemeral" and private.args["replace_original"] is True
    shown = PostedMessage("", "", None, private.args["text"], private.args["blocks"])
    assert "roll back a release" in shown.block_text and "*Sources*" in shown.block_text
    answer_id = buttons(shown)[blocks.SHARE]
    assert not slack.fake.calls("chat.postMessage"), "nothing is posted in the channel until it is shared"

    await slack.click(blocks.SHARE, answer_id, message=None)
    await slack.fake.wait_for("chat.postMessage")
    posted, = slack.fake.thread("C0GENERAL", None)  # a message of its own in the channel, not in a thread
    assert "<@U0ALICE> asked: How do I roll back a release?" in posted.block_text
    assert "roll back a release" in posted.block_text and blocks.SHARE not in buttons(posted)
    deleted = (await slack.fake.wait_for("response_url", count=2))[-1]
    assert deleted.args["delete_original"] is True, "the private copy is removed"

    await slack.click(blocks.SHARE, answer_id, user="U0MALLORY", message=None)
    refused = (await slack.fake.wait_for("response_url", count=3))[-1]
    assert "cannot be shared" in refused.args["text"]
    conversation = await Conversation.objects.aget(surface="slack")
    assert conversation.external_key.startswith(f"{TEAM_ID}:C0GENERAL:ask-")


async def test_feedback_is_stored_and_thanked_once_per_user(slack: Slack) -> None:
    event = mention("How do I roll back a release?")
    await slack.send_event(event)
    reply = await answer_of(slack.fake, "C0GENERAL", event["ts"])
    answer_id = buttons(reply)[blocks.FEEDBACK_UP]
    as_sent = {"type": "message", "ts": reply.ts, "text": reply.text, "blocks": reply.blocks, "bot_id": BOT_ID}
    updates = len(slack.fake.calls("chat.update"))

    assert (await slack.click(blocks.FEEDBACK_UP, answer_id, message=as_sent))[0].status_code == 200
    await slack.fake.wait_for("chat.update", count=updates + 1)
    thanked = slack.fake.message("C0GENERAL", reply.ts)
    assert "Thanks for the feedback, <@U0ALICE>!" in thanked.block_text
    assert blocks.FEEDBACK_UP in buttons(thanked), "others can still vote"
    feedback = await Feedback.objects.aget()
    assert (feedback.message_id, feedback.value, feedback.surface, feedback.user_key) == (
        int(answer_id), 1, "slack", "U0ALICE")

    await slack.click(blocks.FEEDBACK_DOWN, answer_id, message=as_sent)  # changes the vote, no second thanks
    await answering_done(slack)
    assert (await Feedback.objects.aget()).value == -1
    assert len(slack.fake.calls("chat.update")) == updates + 1


async def test_a_retried_event_is_answered_once(slack: Slack) -> None:
    event = mention("How do I roll back a release?")
    duplicates = counted("duplicate")
    first = await slack.send_event(event, event_id="Ev0RETRIED")
    retry = await slack.send_event(event, event_id="Ev0RETRIED",
                                   headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    assert first.status_code == retry.status_code == 200
    await answer_of(slack.fake, "C0GENERAL", event["ts"])
    await answering_done(slack)
    assert len(slack.fake.calls("chat.postMessage")) == 1 and len(slack.fake.calls("reactions.add")) == 1
    assert counted("duplicate") - duplicates == 1
    assert await Message.objects.filter(role="user").acount() == 1


@pytest.mark.parametrize("headers", [
    pytest.param(lambda body: sign(body, secret="not-the-secret"), id="forged"),
    pytest.param(lambda body: {}, id="missing"),
    pytest.param(lambda body: sign(body, timestamp=int(time.time()) - 301), id="stale"),
])
async def test_a_request_not_signed_by_slack_gets_401_and_is_counted(slack: Slack, headers) -> None:
    forged = counted("forged")
    body = json.dumps(event_body(mention("<!channel> How do I roll back a release?")))
    response = await slack.post(body, "application/json", headers(body))
    assert response.status_code == 401
    assert counted("forged") - forged == 1
    await answering_done(slack)
    assert not slack.fake.calls()


async def test_malformed_bodies_get_400_and_unknown_events_are_acknowledged(slack: Slack) -> None:
    bad = counted("bad_request")
    assert (await slack.post("{not json", "application/json")).status_code == 400
    assert (await slack.post("payload=%7Bbroken", "application/x-www-form-urlencoded")).status_code == 400
    assert (await slack.post("[1, 2]", "application/json")).status_code == 400
    assert counted("bad_request") - bad == 3
    ignored = counted("ignored")
    response = await slack.send_event({"type": "reaction_added", "user": "U0ALICE", "reaction": "tada"})
    assert response.status_code == 200 and counted("ignored") - ignored == 1
    challenge = json.dumps({"token": "x", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
                            "type": "url_verification"})
    response = await slack.post(challenge, "application/json")
    assert response.status_code == 200 and json.loads(response.content)["challenge"].startswith("3eZbrw")


async def test_without_credentials_the_endpoint_says_slack_is_not_configured(slack: Slack) -> None:
    with override_settings(SLACK_BOT_TOKEN="", SLACK_SIGNING_SECRET=""):
        response = await slack.client.post("/slack/events", data="{}", content_type="application/json")
    assert response.status_code == 503 and b"SLACK_BOT_TOKEN" in response.content


async def test_a_ratelimited_call_is_retried_after_retry_after(slack: Slack) -> None:
    event = mention("How do I roll back a release?", channel="C_RATELIMITED")
    await slack.send_event(event)
    reply = await answer_of(slack.fake, "C_RATELIMITED", event["ts"])
    assert "*Sources*" in reply.block_text
    limited, retried = slack.fake.calls("chat.postMessage")
    assert (limited.status, limited.error, retried.status) == (429, "ratelimited", 200)
    assert retried.at - limited.at >= slack.fake.retry_after, "Retry-After was honoured"


async def test_a_channel_error_is_counted_and_does_not_affect_other_answers(slack: Slack) -> None:
    errors = api_errors("not_in_channel")
    lost = mention("How do I roll back a release?", channel="C_NOT_IN")
    fine = mention("When do releases go out?", channel="C0GENERAL")
    await asyncio.gather(slack.send_event(lost), slack.send_event(fine))
    reply = await answer_of(slack.fake, "C0GENERAL", fine["ts"])
    await answering_done(slack)
    assert "Tuesday" in reply.block_text
    assert api_errors("not_in_channel") - errors == 2  # the 👀 and the placeholder
    assert not slack.fake.thread("C_NOT_IN", lost["ts"])


async def test_the_llm_failing_mid_answer_ends_with_the_extractive_answer(slack: Slack) -> None:
    event = mention("How do I roll back a release? FAULT_BROKEN")
    await slack.send_event(event)
    reply = await answer_of(slack.fake, "C0GENERAL", event["ts"])
    text = reply.block_text
    assert "language model was unavailable (llm_interrupted)" in text
    assert "rollback pipeline" in text and "*Sources*" in text and blocks.FEEDBACK_UP in buttons(reply)
    answer = await Message.objects.aget(role="assistant")
    assert answer.provider == "extractive" and answer.error == "llm_interrupted"


@override_settings(SLACK_RATE_LIMIT_USER="1/60")
async def test_a_user_over_the_rate_limit_is_told_to_slow_down_in_the_thread(slack: Slack) -> None:
    first = mention("How do I roll back a release?")
    await slack.send_event(first)
    await answer_of(slack.fake, "C0GENERAL", first["ts"])
    second = mention("When do releases go out?")
    await slack.send_event(second)
    reply = await answer_of(slack.fake, "C0GENERAL", second["ts"])
    assert "Slow down: at most 1 questions per 60 s" in reply.block_text
    assert not any(b["type"] == "actions" for b in reply.blocks)


async def test_a_private_answer_is_thanked_privately_and_a_failed_share_is_explained(slack: Slack) -> None:
    await slack.command("How do I roll back a release?", channel="C_NOT_IN")
    private, = await slack.fake.wait_for("response_url")
    answer_id = buttons(PostedMessage("", "", None, private.args["text"], private.args["blocks"]))[blocks.SHARE]

    await slack.click(blocks.FEEDBACK_UP, answer_id, channel="C_NOT_IN", message=None)
    thanks = (await slack.fake.wait_for("response_url", count=2))[-1]
    assert thanks.args["text"] == "Thanks for the feedback!" and thanks.args["replace_original"] is False
    assert (await Feedback.objects.aget()).value == 1

    await slack.click(blocks.SHARE, answer_id, channel="C_NOT_IN", message=None)
    apology = (await slack.fake.wait_for("response_url", count=3))[-1]
    assert apology.args["text"].startswith("I could not post in this channel (not_in_channel). Invite me")
    assert apology.args["response_type"] == "ephemeral"


async def test_every_log_event_of_an_answer_names_the_slack_event(slack: Slack) -> None:
    buffer = io.StringIO()
    configure_logging("json", "INFO", stream=buffer)
    try:
        event = mention("How do I roll back a release?")
        await slack.send_event(event, event_id="Ev0LOGGED")
        await answer_of(slack.fake, "C0GENERAL", event["ts"])
        assert await answering.drain(30) == 0
    finally:
        configure_logging(settings.LOG_FORMAT, settings.LOG_LEVEL)
    lines = [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]
    answered = [e for e in lines if e["event"] in ("slack.answered", "chat.answered")]
    assert {e["event"] for e in answered} == {"slack.answered", "chat.answered"}
    assert all(e.get("event_id") == "Ev0LOGGED" for e in answered), answered


async def test_citations_are_numbered_from_one_in_the_order_the_answer_uses_them(
        slack: Slack, fake_groq: FakeGroqServer) -> None:
    fake_groq.reply = "Releases go out on Tuesdays [2]. Roll back with the pipeline [2][1]."
    event = mention("When do releases go out, and how do I roll one back?")
    await slack.send_event(event)
    reply = await answer_of(slack.fake, "C0GENERAL", event["ts"])
    body, _, sources = reply.block_text.partition("*Sources*")
    assert "Tuesdays [1]. Roll back with the pipeline [1][2]." in body  # the model's [2] is shown as [1]
    lines = [line for line in sources.split("\n") if line.startswith("[")]
    assert [line[:3] for line in lines] == ["[1]", "[2]"]
    assert fake_groq.chat_requests()[-1].source_location(2) in lines[0]  # the prompt's source 2, cited first


async def test_a_source_the_answer_does_not_cite_is_not_listed(slack: Slack, fake_groq: FakeGroqServer) -> None:
    fake_groq.reply = "Releases go out on Tuesdays [2]."
    event = mention("When do releases go out?")
    await slack.send_event(event)
    reply = await answer_of(slack.fake, "C0GENERAL", event["ts"])
    assert "Tuesdays [1]." in reply.block_text and "[2]" not in reply.block_text
