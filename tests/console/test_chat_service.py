"""The chat service: history, persistence, rate limits and feedback, as every surface sees them."""

from __future__ import annotations

from contextlib import aclosing

import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings

from console import chat
from console.models import Conversation, Feedback, Message
from ragcore import Engine
from tests.support import answer_text, ask_chat

# The service's ORM calls run in the thread pool, on connections of their own.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def engine(chat_engine: Engine) -> Engine:
    return chat_engine


def ask(text: str, key: str = "C1:T1", user_key: str = "U1", **kwargs: object) -> list[chat.ChatEvent]:
    return ask_chat(surface="slack", conversation_key=key, user_key=user_key, text=text, **kwargs)


def test_it_streams_then_stores_the_question_and_the_answer(engine: Engine) -> None:
    events = ask("How do I roll back a release?")
    assert isinstance(events[0], chat.AnswerStarted)
    assert [type(e) for e in events][-2:] == [chat.AnswerCitations, chat.AnswerDone]
    assert sum(isinstance(e, chat.AnswerToken) for e in events) > 3
    conversation = Conversation.objects.get(surface="slack", external_key="C1:T1")
    question, answer = conversation.messages.all()
    assert question.role == "user" and question.text == "How do I roll back a release?"
    assert answer.pk == events[0].message_id == events[-1].message_id
    assert answer.text == answer_text(events)
    assert answer.citations and answer.citations[0]["title"] == "Deployment"
    assert answer.provider == "extractive" and answer.retrieval_mode == "hybrid"
    assert answer.latency_ms and answer.latency_ms > 0 and answer.error == ""
    assert conversation.title == "How do I roll back a release?"


def test_a_follow_up_uses_the_conversation_as_context(engine: Engine) -> None:
    ask("How do I roll back a release?")
    ask("and how long does it take?")
    last = Message.objects.filter(role="assistant").order_by("-pk").first()
    assert last is not None and last.retrieval_mode == "context"
    other = Message.objects.filter(role="assistant").order_by("pk").first()
    assert other is not None and other.retrieval_mode == "hybrid"


def test_a_follow_up_moves_its_conversation_to_the_top_and_a_first_question_starts_one(engine: Engine) -> None:
    # A new conversation is stored without reading a history or saving its updated_at again (it has
    # none, and a fresh one); an existing one is still moved up the sidebar by each question.
    ask("How do I roll back a release?", key="C1:T1")
    ask("When do releases go out?", key="C1:T2")
    first, second = Conversation.objects.get(external_key="C1:T1"), Conversation.objects.get(external_key="C1:T2")
    assert second.updated_at > first.updated_at and second.messages.count() == 2
    ask("and who is notified?", key="C1:T1")
    first.refresh_from_db()
    assert first.updated_at > second.updated_at
    question, answer = list(first.messages.all())[2:]
    assert (question.role, question.text, answer.role, answer.error) == ("user", "and who is notified?", "assistant", "")
    assert answer.retrieval_mode == "context"  # its history was read


def test_a_web_key_seen_before_finds_its_conversation(engine: Engine) -> None:
    # The web chat's keys are fresh, so its rows are inserted first; a key that is taken still finds its own.
    ask_chat(surface="web", conversation_key="user:1:k1", user_key="user:1", text="How do I roll back a release?")
    ask_chat(surface="web", conversation_key="user:1:k1", user_key="user:1", text="and who is notified?")
    conversation = Conversation.objects.get(surface="web", external_key="user:1:k1")
    assert [m.role for m in conversation.messages.all()] == ["user", "assistant", "user", "assistant"]
    assert conversation.messages.order_by("pk").last().retrieval_mode == "context"
    assert Conversation.objects.count() == 1


def test_conversations_are_kept_apart_by_their_key(engine: Engine) -> None:
    ask("How do I roll back a release?", key="C1:T1")
    ask("When do releases go out?", key="C1:T2")
    assert Conversation.objects.count() == 2
    assert all(c.messages.count() == 2 for c in Conversation.objects.all())


async def test_a_client_that_goes_away_mid_answer_still_leaves_the_exchange_stored(engine: Engine) -> None:
    stream = chat.areply(surface="web", conversation_key="w1", user_key="U1", text="How do I roll back a release?")
    async with aclosing(stream):
        start = await anext(stream)
        first = await anext(stream)
    assert isinstance(start, chat.AnswerStarted) and isinstance(first, chat.AnswerToken)
    answer = await sync_to_async(Message.objects.get)(pk=start.message_id)
    assert answer.error == "cancelled"
    assert answer.text == first.text  # what the user had seen
    questions = sync_to_async(Message.objects.filter(role="user", conversation_id=answer.conversation_id).count)
    assert await questions() == 1


@override_settings(CHAT_RATE_LIMIT_USER="2/60")
def test_a_user_over_the_rate_limit_is_told_to_slow_down(engine: Engine) -> None:
    ask("one?", key="a")
    ask("two?", key="b")
    [refused] = ask("three?", key="c")
    assert isinstance(refused, chat.AnswerError) and refused.fatal
    assert refused.code == "rate_limited" and "Slow down" in refused.message
    assert not Conversation.objects.filter(external_key="c").exists()
    assert isinstance(ask("four?", key="d", user_key="U2")[0], chat.AnswerStarted), "other users are not affected"


@override_settings(CHAT_RATE_LIMIT_USER="0", CHAT_RATE_LIMIT_CONVERSATION="1/60")
def test_a_conversation_over_its_rate_limit_is_told_to_slow_down(engine: Engine) -> None:
    ask("one?")
    assert [e.code for e in ask("two?") if isinstance(e, chat.AnswerError)] == ["rate_limited"]


@pytest.mark.parametrize(("text", "code"), [("   ", "empty_question"), ("x" * 4001, "too_long")])
def test_bad_questions_are_refused_with_a_reason(engine: Engine, text: str, code: str) -> None:
    [refused] = ask(text)
    assert isinstance(refused, chat.AnswerError) and refused.code == code
    assert Message.objects.count() == 0


def test_a_conversation_of_another_user_is_refused(engine: Engine) -> None:
    first = ask("How do I roll back a release?", key="web:1", user_key="alice")
    [refused] = ask("mine now?", key="ignored", user_key="mallory", conversation_id=first[0].conversation_id)
    assert isinstance(refused, chat.AnswerError) and refused.code == "forbidden"


def test_feedback_is_recorded_once_per_user_and_can_be_changed(engine: Engine) -> None:
    message_id = ask("How do I roll back a release?")[0].message_id
    _, created = chat.record_feedback(message_id=message_id, value=1, surface="slack", user_key="U1")
    assert created
    _, created = chat.record_feedback(message_id=message_id, value=-1, surface="slack", user_key="U1")
    assert not created
    chat.record_feedback(message_id=message_id, value=1, surface="slack", user_key="U2")
    assert sorted(Feedback.objects.values_list("user_key", "value")) == [("U1", -1), ("U2", 1)]
    with pytest.raises(chat.ChatError):
        chat.record_feedback(message_id=message_id, value=5, surface="slack", user_key="U1")


async def test_an_answer_from_an_event_loop_is_stored_the_same_way(engine: Engine) -> None:
    events = [e async for e in chat.areply(surface="discord", conversation_key="G1:C1", user_key="U9",
                                           text="When do releases go out?")]
    assert isinstance(events[0], chat.AnswerStarted) and isinstance(events[-1], chat.AnswerDone)
    answer = await sync_to_async(Message.objects.get)(pk=events[-1].message_id)
    assert "Tuesday" in answer.text


def test_a_shared_cache_that_is_down_does_not_stop_answers(engine: Engine) -> None:
    from ragcore.metrics import PIPELINE_ERRORS
    from tests.daphne_server import free_port

    dead = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                        "LOCATION": f"redis://127.0.0.1:{free_port()}/1", "OPTIONS": {"socket_connect_timeout": 0.5}}}
    before = PIPELINE_ERRORS.labels("cache")._value.get()
    with override_settings(CACHES=dead):  # Django drops its cache connections when CACHES changes
        events = ask("How do I roll back a release?")
    assert isinstance(events[-1], chat.AnswerDone)
    assert PIPELINE_ERRORS.labels("cache")._value.get() > before
