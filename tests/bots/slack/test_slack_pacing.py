"""Rate limits the bot controls: a `ratelimited` chat.update holds the channel for Retry-After (slack_sdk
does not retry the answer's own writes; the channel budget does), and the final text still lands."""

from __future__ import annotations

import pytest

from bots.slack import answering
from tests.bots.slack.conftest import Slack, finished
from tests.fakes.groq import FakeGroqServer
from tests.fakes.slack import RATELIMITED_CHANNEL, mention

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_ratelimited_edit_holds_the_channel_for_retry_after_and_the_final_text_lands(
        slack: Slack, fake_groq: FakeGroqServer) -> None:
    fake_groq.token_delay = 0.05  # about two seconds of streaming
    event = mention("How do I roll back a release?", channel=RATELIMITED_CHANNEL)
    await slack.send_event(event)
    reply = await finished(slack.fake, RATELIMITED_CHANNEL, event["ts"], timeout=30)
    assert await answering.drain(20) == 0
    assert "roll back" in reply.block_text and "*Sources*" in reply.block_text

    updates = slack.fake.calls("chat.update")
    refused = next(c for c in updates if c.status == 429)
    later = [c for c in updates if c.at > refused.at]
    assert later, "the answer went on being edited after the refusal"
    assert later[0].at - refused.at >= slack.fake.retry_after, "nothing was sent to the channel before Retry-After"
    # The refused progress edit was skipped, not re-sent as it was: the next edit already shows more.
    assert refused.args["blocks"][-1]["elements"][0]["text"] == "_Writing…_"
    assert later[0].args["blocks"] != refused.args["blocks"]
    assert updates[-1].status == 200 and updates[-1].args["blocks"] == reply.blocks

