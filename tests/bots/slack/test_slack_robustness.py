"""Payloads that must not hurt the Slack bot: bodies that are not UTF-8, events that make a listener
raise, garbage on the Socket Mode connection. Each is refused or logged with its type and counted, and
the next question is answered."""

from __future__ import annotations

import time

import pytest
from prometheus_client import REGISTRY

from bots.slack import answering, blocks
from tests.bots.slack.conftest import Slack, finished
from tests.fakes.slack import FakeSlackServer, event_body, mention, sign
from tests.support import captured_logs

pytestmark = pytest.mark.django_db(transaction=True)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def outcome(name: str) -> float:
    return metric("rag_bot_events_total", platform="slack", outcome=name)


def errors() -> float:
    return metric("rag_pipeline_errors_total", component="slack")


async def test_a_body_that_is_not_utf8_gets_400_even_with_a_fresh_forged_signature(slack: Slack) -> None:
    # The request-input middleware refuses it before the Slack view (which would count it as bad_request).
    bad = metric("rag_http_refused_total", reason="not_utf8")
    headers = {"X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0=" + "0" * 64}
    response = await slack.client.post("/slack/events", data=b'{"type": "event_callback", "x": "\xff\xfe"}',
                                       content_type="application/json", headers=headers)
    assert response.status_code == 400 and b"not UTF-8" in response.content
    assert metric("rag_http_refused_total", reason="not_utf8") - bad == 1
    assert not slack.fake.calls()


@pytest.mark.parametrize("body", [b'{"type": "event_callback", "x": "\xff\xfe"}', b'{"type": "event_callback"}'],
                         ids=["not-utf8", "utf8"])
async def test_a_multipart_body_which_slack_never_sends_gets_400_naming_its_type(slack: Slack, body: bytes) -> None:
    # Multipart is the one body the request-input middleware leaves to the view (uploads): refused before decoding.
    bad = outcome("bad_request")
    boundary = "lorebot"
    response = await slack.client.post("/slack/events", data=body, content_type=f"multipart/form-data; boundary={boundary}",
                                       headers=sign(body.decode("utf-8", "replace")))
    assert response.status_code == 400
    assert response.content == b"malformed request body: Slack sends JSON or a form, not multipart/form-data\n"
    assert outcome("bad_request") - bad == 1
    assert not slack.fake.calls()


async def test_an_event_that_makes_a_listener_raise_is_logged_with_its_type_counted_and_apologised_for(
        slack: Slack) -> None:
    failed, before = outcome("failed"), errors()
    broken = {**mention("How do I roll back a release?"), "text": {"not": "a string"}}
    with captured_logs() as logs:
        assert (await slack.send_event(broken)).status_code == 200
        apology, = await slack.fake.wait_for("chat.postMessage", lambda c: c.args.get("thread_ts") == broken["ts"])
    assert apology.args["text"] == blocks.SORRY
    failure, = [e for e in logs if e["event"] == "slack.listener_failed"]
    assert failure["type"] == "app_mention" and "AttributeError" in failure["error"]
    assert outcome("failed") - failed == 1 and errors() - before == 1

    fine = mention("When do releases go out?")
    await slack.send_event(fine)
    assert "Tuesday" in (await finished(slack.fake, "C0GENERAL", fine["ts"])).block_text


async def test_garbage_on_the_socket_mode_connection_is_counted_and_the_next_event_answered(
        socket_bot: FakeSlackServer) -> None:
    fake, before, connections = socket_bot, errors(), socket_bot.socket_connections
    for frame in ("{not json", "[1, 2, 3]", '{"type": "events_api", "envelope_id": 7, "payload": "nope"}'):
        fake.send_raw(frame)
    question = mention("How do I roll back a release?")
    await fake.wait_for_ack(fake.send_envelope("events_api", event_body(question)))
    assert "roll back" in (await finished(fake, "C0GENERAL", question["ts"])).block_text
    assert errors() - before >= 1  # the frame that is not JSON, at least
    assert fake.socket_connections == connections and fake.open_sockets() == 1  # the same connection
    assert await answering.drain(20) == 0
