"""`manage.py ask "question"`: a streamed answer with numbered citations, or --json."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from console.engine import get_engine
from ragcore.engine import MODES
from ragcore.types import Answer, DoneEvent, ErrorEvent, TokenEvent


class Command(BaseCommand):
    help = "Ask a question of the indexed documents."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("question")
        parser.add_argument("--json", action="store_true", help="print one JSON object instead of streaming")
        parser.add_argument("--mode", choices=[m for m in MODES if m != "context"], default="hybrid")

    def handle(self, *args: Any, **options: Any) -> None:
        question = options["question"].strip()
        if not question:
            raise CommandError("the question is empty")
        engine = get_engine()
        engine.warmup()  # load the model first, so retrieval_ms measures retrieval alone
        answer: Answer | None = None
        for event in engine.stream(question, mode=options["mode"]):
            if isinstance(event, TokenEvent) and not options["json"]:
                self.stdout.write(event.text, ending="")
                self.stdout.flush()
            elif isinstance(event, ErrorEvent):
                if event.fatal:
                    raise CommandError(event.message)
                self.stderr.write(f"\n[{event.code}] {event.message}")
            elif isinstance(event, DoneEvent):
                answer = event.answer
        if answer is None:
            raise CommandError("no answer was produced")
        if options["json"]:
            self.stdout.write(json.dumps(answer.to_dict(), ensure_ascii=False))
            return
        self.stdout.write("")
        if answer.citations:
            self.stdout.write("\nSources:")
            for c in answer.citations:
                where = f", {c.location}" if c.location else ""
                self.stdout.write(f"  [{c.n}] {c.title}{where} ({c.source})")
        self.stdout.write(
            self.style.HTTP_INFO(
                f"\n{answer.provider}/{answer.model} · retrieval {answer.retrieval_ms:.0f} ms · "
                f"generation {answer.generation_ms:.0f} ms"
            )
        )
