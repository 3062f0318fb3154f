"""No bot loops: mentions and messages written by bots are not answered unless SLACK_ALLOWED_BOTS names them."""

from __future__ import annotations

import pytest
from django.test import override_settings
from prometheus_client import REGISTRY

from bots.slack import answering
from tests.bots.slack.conftest import Slack
from tests.fakes.slack import BOT_ID, BOT_USER_ID, bot_profile, mention, message

pytestmark = pytest.mark.django_db(transaction=True)


def ignored() -> float:
    return REGISTRY.get_sample_value("rag_bot_events_total", {"platform": "slack", "outcome": "ignored"}) or 0.0


def other_bots_mentions() -> list[dict[str, object]]:
    """The shapes in which Slack delivers a mention written by another bot."""
    return [
        # A bot user of a modern app: a user id, plus bot_id and bot_profile.
        mention("How do I roll back a release?", user="U0OTHERBOT", bot_id="B0OTHER", bot_profile=bot_profile()),
        # Only the profile.
        mention("How do I roll back a release?", user="U0OTHERBOT", bot_profile=bot_profile()),
        # A legacy integration: subtype bot_message, a bot_id and no user at all.
        {**mention("How do I roll back a release?", subtype="bot_message", bot_id="B0LEGACY"), "user": None},
    ]


async def test_a_mention_written_by_another_bot_is_not_answered(slack: Slack) -> None:
    before = ignored()
    for event in other_bots_mentions():
        assert (await slack.send_event(event)).status_code == 200
    dm_from_a_bot = message("How do I roll back a release?", channel="D0ALICE", channel_type="im",
                            user="U0OTHERBOT", bot_id="B0OTHER", bot_profile=bot_profile())
    assert (await slack.send_event(dm_from_a_bot)).status_code == 200
    assert await answering.drain(20) == 0
    assert not slack.fake.calls("chat.postMessage") and not slack.fake.calls("reactions.add")
    assert ignored() - before == 4


async def test_its_own_mention_is_ignored_even_when_its_id_is_allowed(slack: Slack) -> None:
    with override_settings(SLACK_ALLOWED_BOTS=[BOT_ID, BOT_USER_ID]):
        own = mention("How do I roll back a release?", user=BOT_USER_ID, bot_id=BOT_ID,
                      bot_profile=bot_profile(BOT_ID, "A0LOREBOT", "lorebot"))
        assert (await slack.send_event(own)).status_code == 200
        assert await answering.drain(20) == 0
    assert not slack.fake.calls("chat.postMessage")


async def test_a_bot_named_in_slack_allowed_bots_is_answered(slack: Slack) -> None:
    with override_settings(SLACK_ALLOWED_BOTS=["B0OTHER"]):
        allowed = mention("How do I roll back a release?", user="U0OTHERBOT", bot_id="B0OTHER",
                          bot_profile=bot_profile())
        stranger = mention("How do I roll back a release?", user="U0THIRD", bot_id="B0THIRD",
                           bot_profile=bot_profile("B0THIRD", "A0THIRD"))
        await slack.send_event(allowed)
        await slack.send_event(stranger)
        assert await answering.drain(20) == 0
    posted = slack.fake.calls("chat.postMessage")
    assert [c.args["thread_ts"] for c in posted] == [allowed["ts"]]
    assert "roll back" in slack.fake.thread("C0GENERAL", allowed["ts"])[0].block_text
