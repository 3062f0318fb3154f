"""What the chat service yields while it answers: typed events every surface reads as they are.

One answer is `AnswerStarted`, any number of `AnswerToken`s, `AnswerCitations`, then `AnswerDone`; or a
fatal `AnswerError` (at the start, or after `AnswerStarted`). A non-fatal `AnswerError` (the LLM stopped
mid-answer) is followed by the extractive answer in the same stream. Only the WebSocket consumer turns
these into JSON frames; the bots render them into their platform's messages.
"""

from __future__ import annotations

from dataclasses import dataclass

from ragcore.types import Citation, Usage


@dataclass(frozen=True)
class AnswerStarted:
    """The question is stored and its answer begins; `message_id` is the answer's (for feedback)."""

    conversation_id: int
    message_id: int
    question_id: int


@dataclass(frozen=True)
class AnswerToken:
    """The next piece of the answer's text (Markdown; "[n]" marks source n)."""

    text: str


@dataclass(frozen=True)
class AnswerCitations:
    """The numbered sources, after the last token."""

    items: tuple[Citation, ...]


@dataclass(frozen=True)
class AnswerDone:
    """The answer is complete and stored."""

    message_id: int
    usage: Usage
    latency_ms: float
    retrieval_ms: float
    generation_ms: float
    mode: str
    provider: str
    model: str
    extractive: bool
    fallback_reason: str  # why an answer is extractive although an LLM is configured
    fallback_detail: str = ""  # the same in words, for people ("Could not connect to Groq at …")
    not_covered: bool = False  # the documents do not answer the question (declined, or the model said so)


@dataclass(frozen=True)
class AnswerError:
    """A refusal or a failure; a fatal one ends the stream."""

    code: str
    message: str
    fatal: bool = True


ChatEvent = AnswerStarted | AnswerToken | AnswerCitations | AnswerDone | AnswerError


class ChatError(Exception):
    """A request the chat service refuses: an empty or too long question, a rate limit, someone else's answer."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(message)
