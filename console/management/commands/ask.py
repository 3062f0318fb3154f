"""`manage.py ask "question"`: a streamed answer with numbered citations, or --json.

The command is the CLI surface of the chat service and runs its one async path, so each
exchange is stored as a conversation (surface "cli") like any other; --conversation continues one.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import uuid
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from console import chat
from console.engine import get_engine
from console.management.output import logs_for_command

# Why an answer is extractive although a model is configured, as a headline before the details.
_FALLBACK_HEADLINES = {
    "llm_unavailable": "{label} unreachable",
    "llm_timeout": "{label} timed out",
    "llm_rate_limited": "{label} rate limited",
    "llm_auth": "{label} refused the API key",
    "llm_rejected": "{label} refused the request",
    "llm_interrupted": "{label} stopped mid-answer",
}


class Command(BaseCommand):
    help = "Ask a question of the indexed documents."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("question")
        parser.add_argument("--json", action="store_true", help="print one JSON object instead of streaming")
        parser.add_argument("--conversation", metavar="KEY", help="continue the CLI conversation with this key")
        parser.add_argument("--as", dest="as_user", metavar="USER",
                            help="answer as this Lorebot user, from the collections they may see (staff: all); "
                                 "without it, only collections open to everyone are searched")
        parser.add_argument("--mode", choices=["hybrid", "bm25", "dense"],
                            help="force a retrieval mode (default: hybrid, or context for a follow-up)")

    def handle(self, *args: Any, **options: Any) -> None:
        logs_for_command(options["verbosity"])
        user = self._user(options["as_user"])
        chat.warm_up()  # load the model first, so retrieval_ms measures retrieval alone
        key = options["conversation"] or uuid.uuid4().hex
        text, citations, done = asyncio.run(self._ask(key, options["question"], options["mode"], stream=not options["json"],
                                                   user=user))
        if options["json"]:
            self.stdout.write(json.dumps({
                "answer": text, "citations": [c.to_dict() for c in citations], "provider": done.provider,
                "model": done.model, "mode": done.mode, "extractive": done.extractive,
                "fallback_reason": done.fallback_reason, "fallback_detail": done.fallback_detail,
                "not_covered": done.not_covered,
                "retrieval_ms": done.retrieval_ms,
                "generation_ms": done.generation_ms, "usage": done.usage.to_dict(), "conversation": key,
            }, ensure_ascii=False))
            return
        self.stdout.write("")
        if citations:
            self.stdout.write("\nSources:")
            for c in citations:
                where = f", {c.location}" if c.location else ""
                self.stdout.write(f"  [{c.n}] {c.title}{where} ({c.source})")
        if done.not_covered:
            self.stdout.write(self.style.WARNING("\nNot covered by your documents."))
        if done.fallback_reason:
            self.stdout.write(self.style.WARNING(f"\nExtractive answer: {self._fallback_text(done)}"))
        self.stdout.write(
            self.style.HTTP_INFO(
                f"\n{done.provider}/{done.model} · retrieval {done.retrieval_ms:.0f} ms · "
                f"generation {done.generation_ms:.0f} ms · continue with --conversation {key}"
            )
        )

    def _fallback_text(self, done: chat.AnswerDone) -> str:
        """"Groq unreachable: Could not connect to Groq at … (after 2 retries)"."""
        label = getattr(get_engine().generator, "label", "") or "the language model"
        headline = _FALLBACK_HEADLINES.get(done.fallback_reason, "{label} failed").format(label=label)
        headline = headline[0].upper() + headline[1:]
        return f"{headline}: {done.fallback_detail}" if done.fallback_detail else headline

    def _user(self, username: str | None) -> Any:
        if not username:
            return None
        user = get_user_model().objects.filter(**{get_user_model().USERNAME_FIELD: username}).first()
        if user is None or not user.is_active:
            raise CommandError(f"--as {username}: no active user of that name")
        return user

    async def _ask(self, key: str, question: str, mode: str | None, *, stream: bool,
                   user: Any = None) -> tuple[str, tuple[chat.Citation, ...], chat.AnswerDone]:
        """The answer's text, citations and done event, printing the tokens as they come when `stream`."""
        parts: list[str] = []
        citations: tuple[chat.Citation, ...] = ()
        done: chat.AnswerDone | None = None
        user_key = f"user:{user.pk}" if user is not None else getpass.getuser()
        try:
            async for event in chat.areply(surface="cli", conversation_key=key, user_key=user_key,
                                           text=question, mode=mode, user=user):
                if isinstance(event, chat.AnswerToken):
                    parts.append(event.text)
                    if stream:
                        self.stdout.write(event.text, ending="")
                        self.stdout.flush()
                elif isinstance(event, chat.AnswerCitations):
                    citations = event.items
                elif isinstance(event, chat.AnswerError):
                    if event.fatal:
                        raise CommandError(event.message)
                    self.stderr.write(f"\n[{event.code}] {event.message}")
                elif isinstance(event, chat.AnswerDone):
                    done = event
        finally:
            await chat.aclose()
        if done is None:
            raise CommandError("no answer was produced")
        return "".join(parts), citations, done
