"""`manage.py ask "question"`: a streamed answer with numbered citations, or --json.

The command is the CLI surface of the chat service, so each exchange is stored as a
conversation (surface "cli") like any other; --conversation continues one.
"""

from __future__ import annotations

import getpass
import json
import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from console.chat import service as chat
from console.engine import get_engine


class Command(BaseCommand):
    help = "Ask a question of the indexed documents."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("question")
        parser.add_argument("--json", action="store_true", help="print one JSON object instead of streaming")
        parser.add_argument("--conversation", metavar="KEY", help="continue the CLI conversation with this key")
        parser.add_argument("--mode", choices=["hybrid", "bm25", "dense"],
                            help="force a retrieval mode (default: hybrid, or context for a follow-up)")

    def handle(self, *args: Any, **options: Any) -> None:
        get_engine().warmup()  # load the model first, so retrieval_ms measures retrieval alone
        key = options["conversation"] or uuid.uuid4().hex
        parts: list[str] = []
        citations: list[dict[str, Any]] = []
        done: dict[str, Any] | None = None
        for event in chat.reply(surface="cli", conversation_key=key, user_key=getpass.getuser(),
                                text=options["question"], mode=options["mode"]):
            if event.type == "token":
                parts.append(event.data["text"])
                if not options["json"]:
                    self.stdout.write(event.data["text"], ending="")
                    self.stdout.flush()
            elif event.type == "citations":
                citations = event.data["items"]
            elif event.type == "error":
                if event.data["fatal"]:
                    raise CommandError(event.data["message"])
                self.stderr.write(f"\n[{event.data['code']}] {event.data['message']}")
            elif event.type == "done":
                done = event.data
        if done is None:
            raise CommandError("no answer was produced")
        if options["json"]:
            keys = ("provider", "model", "mode", "extractive", "fallback_reason", "retrieval_ms", "generation_ms", "usage")
            self.stdout.write(json.dumps({"answer": "".join(parts), "citations": citations,
                                          **{k: done[k] for k in keys}, "conversation": key}, ensure_ascii=False))
            return
        self.stdout.write("")
        if citations:
            self.stdout.write("\nSources:")
            for c in citations:
                where = f", {c['location']}" if c["location"] else ""
                self.stdout.write(f"  [{c['n']}] {c['title']}{where} ({c['source']})")
        self.stdout.write(
            self.style.HTTP_INFO(
                f"\n{done['provider']}/{done['model']} · retrieval {done['retrieval_ms']:.0f} ms · "
                f"generation {done['generation_ms']:.0f} ms · continue with --conversation {key}"
            )
        )
