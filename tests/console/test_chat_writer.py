"""Storing questions under load: one writer commits the questions that arrive together, and each stands alone."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from console import chat
from console.chat.orm import writer
from console.models import Conversation, Message
from ragcore import Engine

pytestmark = pytest.mark.django_db(transaction=True)

QUESTIONS = 12


def _ask_at_once(asks: list[dict[str, Any]]) -> list[list[chat.ChatEvent]]:
    async def one(kwargs: dict[str, Any]) -> list[chat.ChatEvent]:
        return [event async for event in chat.areply(surface="slack", **kwargs)]

    async def every() -> list[list[chat.ChatEvent]]:
        return list(await asyncio.gather(*(one(kwargs) for kwargs in asks)))

    return asyncio.run(every())


def test_questions_asked_at_once_are_all_stored_in_fewer_commits_than_questions(chat_engine: Engine) -> None:
    before = writer().commits
    answers = _ask_at_once([{"conversation_key": f"C1:T{i}", "user_key": f"U{i}", "text": "How do I roll back a release?"}
                            for i in range(QUESTIONS)])

    assert all(isinstance(events[-1], chat.AnswerDone) for events in answers)
    assert Message.objects.filter(role="user").count() == QUESTIONS
    assert Message.objects.filter(role="assistant", error="").exclude(text="").count() == QUESTIONS
    # Each question is two writes (its rows, then its answer): one transaction each would be 24.
    assert writer().commits - before < QUESTIONS


def test_a_refused_question_among_them_does_not_undo_the_others(chat_engine: Engine) -> None:
    theirs = Conversation.objects.create(surface="slack", external_key="C9:T9", user_key="SOMEONE-ELSE")
    asks: list[dict[str, Any]] = [{"conversation_key": f"C1:T{i}", "user_key": "U1", "text": "When do releases go out?"}
                                  for i in range(8)]
    asks.insert(4, {"conversation_key": "C9:T9", "user_key": "U1", "text": "Let me in", "conversation_id": theirs.pk})

    answers = _ask_at_once(asks)

    refused = answers[4]
    assert len(refused) == 1 and isinstance(refused[0], chat.AnswerError) and refused[0].code == "forbidden"
    assert not theirs.messages.exists()
    assert all(isinstance(events[-1], chat.AnswerDone) for i, events in enumerate(answers) if i != 4)
    assert Message.objects.filter(role="user").count() == 8
