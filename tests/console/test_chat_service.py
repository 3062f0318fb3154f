"""The chat service: history, persistence, rate limits and feedback, as every surface sees them."""

from __future__ import annotations

import pytest
from django.test import override_settings

from console.chat import service as chat
from console.models import Conversation, Feedback, Message
from ragcore import Engine

pytestmark = pytest.mark.django_db


@pytest.fixture
def engine(chat_engine: Engine) -> Engine:
    return chat_engine


def ask(text: str, key: str = "C1:T1", user_key: str = "U1", **kwargs: object) -> list[chat.ChatEvent]:
    return list(chat.reply(surface="slack", conversation_key=key, user_key=user_key, text=text, **kwargs))  # type: ignore[arg-type]


def test_it_streams_then_stores_the_question_and_the_answer(engine: Engine) -> None:
    events = ask("How do I roll back a release?")
    assert [e.type for e in events][0] == "start"
    assert [e.type for e in events][-2:] == ["citations", "done"]
    assert sum(e.type == "token" for e in events) > 3
    conversation = Conversation.objects.get(surface="slack", external_key="C1:T1")
    question, answer = conversation.messages.all()
    assert question.role == "user" and question.text == "How do I roll back a release?"
    assert answer.pk == events[0].data["message_id"] == events[-1].data["message_id"]
    assert answer.text == "".join(e.data["text"] for e in events if e.type == "token")
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


def test_conversations_are_kept_apart_by_their_key(engine: Engine) -> None:
    ask("How do I roll back a release?", key="C1:T1")
    ask("When do releases go out?", key="C1:T2")
    assert Conversation.objects.count() == 2
    assert all(c.messages.count() == 2 for c in Conversation.objects.all())


def test_a_client_that_goes_away_mid_answer_still_leaves_the_exchange_stored(engine: Engine) -> None:
    stream = chat.reply(surface="web", conversation_key="w1", user_key="U1", text="How do I roll back a release?")
    start = next(stream)
    next(stream)  # the first token
    stream.close()
    answer = Message.objects.get(pk=start.data["message_id"])
    assert answer.error == "client_disconnected"
    assert answer.text  # what the user had seen
    assert Message.objects.filter(role="user", conversation=answer.conversation).count() == 1


@override_settings(CHAT_RATE_LIMIT_USER="2/60")
def test_a_user_over_the_rate_limit_is_told_to_slow_down(engine: Engine) -> None:
    ask("one?", key="a")
    ask("two?", key="b")
    events = ask("three?", key="c")
    assert [e.type for e in events] == ["error"]
    assert events[0].data["code"] == "rate_limited" and "Slow down" in events[0].data["message"]
    assert not Conversation.objects.filter(external_key="c").exists()
    assert ask("four?", key="d", user_key="U2")[0].type == "start", "other users are not affected"


@override_settings(CHAT_RATE_LIMIT_USER="0", CHAT_RATE_LIMIT_CONVERSATION="1/60")
def test_a_conversation_over_its_rate_limit_is_told_to_slow_down(engine: Engine) -> None:
    ask("one?")
    assert ask("two?")[0].data["code"] == "rate_limited"


@pytest.mark.parametrize(("text", "code"), [("   ", "empty_question"), ("x" * 4001, "too_long")])
def test_bad_questions_are_refused_with_a_reason(engine: Engine, text: str, code: str) -> None:
    events = ask(text)
    assert [e.type for e in events] == ["error"] and events[0].data["code"] == code
    assert Message.objects.count() == 0


def test_a_conversation_of_another_user_is_refused(engine: Engine) -> None:
    first = ask("How do I roll back a release?", key="web:1", user_key="alice")
    events = ask("mine now?", key="ignored", user_key="mallory", conversation_id=first[0].data["conversation_id"])
    assert [e.type for e in events] == ["error"] and events[0].data["code"] == "forbidden"


def test_feedback_is_recorded_once_per_user_and_can_be_changed(engine: Engine) -> None:
    message_id = ask("How do I roll back a release?")[0].data["message_id"]
    _, created = chat.record_feedback(message_id=message_id, value=1, surface="slack", user_key="U1")
    assert created
    _, created = chat.record_feedback(message_id=message_id, value=-1, surface="slack", user_key="U1")
    assert not created
    chat.record_feedback(message_id=message_id, value=1, surface="slack", user_key="U2")
    assert sorted(Feedback.objects.values_list("user_key", "value")) == [("U1", -1), ("U2", 1)]
    with pytest.raises(chat.ChatError):
        chat.record_feedback(message_id=message_id, value=5, surface="slack", user_key="U1")


@pytest.mark.django_db(transaction=True)
async def test_the_async_service_answers_and_stores_the_same_way(engine: Engine) -> None:
    events = [e async for e in chat.areply(surface="discord", conversation_key="G1:C1", user_key="U9",
                                           text="When do releases go out?")]
    assert events[0].type == "start" and events[-1].type == "done"
    from asgiref.sync import sync_to_async

    answer = await sync_to_async(Message.objects.get)(pk=events[-1].data["message_id"])
    assert "Tuesday" in answer.text


def test_a_shared_cache_that_is_down_does_not_stop_answers(engine: Engine) -> None:
    from ragcore.metrics import PIPELINE_ERRORS
    from tests.daphne_server import free_port

    dead = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                        "LOCATION": f"redis://127.0.0.1:{free_port()}/1", "OPTIONS": {"socket_connect_timeout": 0.5}}}
    before = PIPELINE_ERRORS.labels("cache")._value.get()
    with override_settings(CACHES=dead):  # Django drops its cache connections when CACHES changes
        events = ask("How do I roll back a release?")
    assert events[-1].type == "done"
    assert PIPELINE_ERRORS.labels("cache")._value.get() > before
