"""The Discord bot under load: the real discord.py client against the fake Discord and the fake Groq.

The bot runs in this process (as `manage.py rundiscordbot` would run it), the fake Discord gateway +
REST and the fake LLM in threads. The fake LLM sends its first token after --first-token-ms (200)
and then one every --token-ms (20), --tokens (120) in all. Reported:

- MESSAGE_CREATE → first visible reply (the placeholder reaching Discord's REST API), p50/p95, for
  --single questions one after another (target: ≤ 500 ms plus retrieval), and → the first edit that
  shows answer text (after retrieval, the LLM's first token and DISCORD_EDIT_INTERVAL);
- edits per answer, and the most edits one channel saw in any 5 s (Discord allows about 5);
- --concurrent questions (50) posted at the same moment in as many channels by as many users:
  how many were answered, errors, first reply and whole-answer p50/p95;
- the payloads the bot must survive, before those: a malformed interaction (a member without `user`,
  which raises inside discord.py), a garbage gateway frame, a mention written by another bot, and a
  question whose edits get 429s with only Discord's documented headers (no `Via`); then --same-channel
  (5) long answers at once in one channel, with the most writes that channel saw in any 5 s and in any
  minute. Counted: events handled, gateway reconnects, process restarts (the bot's task never ended:
  0) and answers lost (questions without a finished answer).

    .venv/bin/python benchmarks/discord_events.py
    .venv/bin/python benchmarks/discord_events.py --single 3 --concurrent 5 --tokens 20   # a quick check
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import fake_llm_reply, percentile  # noqa: E402
from tests.fakes.discord import BOT_ID, BOT_TOKEN, FakeDiscord, user_payload  # noqa: E402
from tests.fakes.groq import FakeGroqServer  # noqa: E402
from tests.support import DEPLOY  # noqa: E402

QUESTIONS = ("How do I roll back a release?", "When do releases go out?", "Who is notified on a rollback?")
EDIT_WINDOW_SECONDS = 5.0


def _setup(data_dir: Path, fake: FakeDiscord, groq: FakeGroqServer) -> None:
    os.environ.update({
        "RAG_DATA_DIR": str(data_dir), "DJANGO_SETTINGS_MODULE": "console.settings", "HF_HUB_OFFLINE": "1",
        "LOG_LEVEL": os.getenv("LOG_LEVEL", "WARNING"),
        "GROQ_API_KEY": "gsk-bench", "GROQ_BASE_URL": groq.base_url, "GROQ_MAX_RETRIES": "0", "GROQ_TIMEOUT": "120",
        "DISCORD_BOT_TOKEN": BOT_TOKEN, "DISCORD_API_URL": fake.api_url, "DISCORD_GATEWAY_URL": fake.gateway_url,
        # Every question comes from its own user and conversation; no limit should refuse the benchmark.
        "DISCORD_RATE_LIMIT_USER": "0", "CHAT_RATE_LIMIT_CONVERSATION": "0",
    })
    import django

    django.setup()
    from django.core.management import call_command

    from console.engine import get_engine

    call_command("migrate", verbosity=0)
    doc = data_dir / "deploy.md"
    doc.write_text(DEPLOY)
    get_engine().ingest_file(doc)
    get_engine().warmup()


def _done(fake: FakeDiscord, question: dict[str, Any]) -> dict[str, Any] | None:
    replies = fake.replies_to(int(question["id"]))
    return replies[0] if replies and replies[0]["components"] else None


async def _ask(fake: FakeDiscord, questions: list[tuple[int, int, str]], timeout: float) -> list[dict[str, Any]]:
    """Posts the questions (channel, user, text) at once; returns one result per question."""
    sent = []
    for channel_id, user_id, text in questions:
        at = time.monotonic()
        sent.append((at, fake.send_message(f"<@{BOT_ID}> {text}", channel_id=channel_id,
                                            author=user_payload(user_id, f"user{user_id}"))))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(_done(fake, q) for _, q in sent):
        await asyncio.sleep(0.02)
    results = []
    for at, question in sent:
        replies = fake.replies_to(int(question["id"]))
        answer = _done(fake, question)
        result: dict[str, Any] = {"error": None if answer else "no finished answer"}
        if replies:
            placeholder = next(c for c in fake.calls_to("POST", r"/channels/\d+/messages")
                               if (c.body.get("message_reference") or {}).get("message_id") == int(question["id"]))
            result["first_reply_ms"] = (placeholder.at - at) * 1000
            edits = [c for c in fake.calls_to("PATCH", r"/channels/\d+/messages/\d+")
                     if c.path.endswith(replies[0]["id"]) and c.status == 200]
            result["edits"] = len(edits)
            result["edit_times"] = [c.at for c in edits]
            if edits:
                result["first_text_ms"] = (edits[0].at - at) * 1000
                result["answer_ms"] = (edits[-1].at - at) * 1000
        results.append(result)
    return results


def _channel_writes(fake: FakeDiscord, channel_id: int, since: float) -> dict[str, int]:
    """Edits (PATCH) and posts (the placeholders) the bot made in one channel since `since`, and the most
    edits in any 5 s and in any 60 s (the edits are what the channel budget paces)."""
    def times(method: str) -> list[float]:
        return sorted(c.at for c in fake.calls if c.at >= since and c.status < 400 and c.method == method
                      and c.path.startswith(f"/channels/{channel_id}/messages"))
    edits = times("PATCH")
    def most(window: float) -> int:
        return max((sum(1 for t in edits if start <= t < start + window) for start in edits), default=0)
    return {"edits": len(edits), "posts": len(times("POST")), "max_edits_in_any_5_s": most(5.0),
            "max_edits_in_any_60_s": most(60.0)}


async def _hostile(fake: FakeDiscord, client: Any, timeout: float) -> dict[str, Any]:
    """The payloads the bot must survive; each is 'handled' when the bot did what the README says."""
    handled: dict[str, bool] = {}
    broken = fake.slash_command("ask", {"question": QUESTIONS[0]}, malformed=True)
    apology = await fake.until(lambda: fake.calls_to("POST", rf"/interactions/{broken['id']}/[^/]+/callback"), 30)
    handled["malformed_interaction_apologised"] = bool(apology)
    identifies = fake.identifies
    fake.send_raw("{not json")
    await fake.until(lambda: fake.identifies > identifies and client.is_ready(), 30)
    handled["garbage_frame_reconnected"] = client.reconnects == 1
    from_bot = fake.send_message(f"<@{BOT_ID}> {QUESTIONS[0]}", author=user_payload(555, "otherbot", bot=True))
    fake.rate_limit("PATCH", r"/channels/\d+/messages/\d+", retry_after=0.5, times=3, via=False)
    limited = await _ask(fake, [(fake.channel_ids[1], 2, QUESTIONS[1])], timeout)
    handled["429_without_via_final_text_landed"] = limited[0]["error"] is None
    handled["bot_mention_not_answered"] = not fake.replies_to(int(from_bot["id"]))
    return {"payloads": 4, "handled": handled}


def _max_edits_in_window(results: list[dict[str, Any]]) -> int:
    """The most edits one message (one channel here) got within any EDIT_WINDOW_SECONDS."""
    most = 0
    for result in results:
        times = result.get("edit_times", [])
        for i, start in enumerate(times):
            most = max(most, sum(1 for t in times[i:] if t - start < EDIT_WINDOW_SECONDS))
    return most


def _summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    def stats(key: str) -> dict[str, float | None]:
        values = [r[key] for r in results if key in r]
        if not values:
            return {"p50": None, "p95": None}
        return {"p50": round(percentile(values, 50), 1), "p95": round(percentile(values, 95), 1)}

    edits = [r["edits"] for r in results if "edits" in r]
    return {
        "questions": len(results),
        "answered": sum(r["error"] is None for r in results),
        "errors": sum(r["error"] is not None for r in results),
        "first_reply_ms": stats("first_reply_ms"),
        "first_text_ms": stats("first_text_ms"),
        "answer_ms": stats("answer_ms"),
        "edits_per_answer": {"min": min(edits, default=0), "max": max(edits, default=0),
                             "mean": round(sum(edits) / len(edits), 1) if edits else 0},
        "max_edits_per_5s": _max_edits_in_window(results),
    }


async def _run(args: argparse.Namespace, fake: FakeDiscord) -> dict[str, Any]:
    from prometheus_client import REGISTRY

    from bots.discord.client import LorebotClient

    client = LorebotClient()
    task = asyncio.create_task(client.start(BOT_TOKEN))
    await fake.until(lambda: client.is_ready() or task.done(), timeout=60)
    try:
        channels = fake.channel_ids
        await _ask(fake, [(channels[0], 1, QUESTIONS[0])], args.timeout)  # warm-up: HTTP client, indexes
        hostile = await _hostile(fake, client, args.timeout)
        since = time.monotonic()
        same = await _ask(fake, [(channels[0], 500 + i, QUESTIONS[i % len(QUESTIONS)])
                                 for i in range(args.same_channel)], args.timeout)
        one_channel = {**_channel_writes(fake, channels[0], since), "answers": len(same),
                       "answered": sum(r["error"] is None for r in same)}
        single: list[dict[str, Any]] = []
        for i in range(args.single):
            single += await _ask(fake, [(channels[i % len(channels)], 100 + i, QUESTIONS[i % len(QUESTIONS)])],
                                 args.timeout)
        wave = await _ask(fake, [(channels[i], 1000 + i, QUESTIONS[i % len(QUESTIONS)])
                                 for i in range(args.concurrent)], args.timeout)
    finally:
        restarts = int(task.done())  # the bot's connect loop ended before we closed it: it would be restarted
        await client.close()
        await task
    failed = REGISTRY.get_sample_value("rag_bot_events_total", {"platform": "discord", "outcome": "failed"}) or 0.0
    questions = 2 + len(same) + len(single) + len(wave)  # the warm-up and the rate-limited one too
    lost = sum(r["error"] is not None for r in [*same, *single, *wave])
    return {"single": _summary(single), "concurrent": _summary(wave), "bot_failed_events": failed,
            "hostile": hostile, "one_channel": one_channel, "events_handled": questions + hostile["payloads"] - 1,
            "gateway_reconnects": client.reconnects, "process_restarts": restarts, "answers_lost": lost}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--single", type=int, default=20, help="questions asked one after another")
    parser.add_argument("--concurrent", type=int, default=50, help="questions asked at once, one channel each")
    parser.add_argument("--same-channel", type=int, default=5, help="long answers at once in one channel")
    parser.add_argument("--tokens", type=int, default=120)
    parser.add_argument("--token-ms", type=float, default=20.0)
    parser.add_argument("--first-token-ms", type=float, default=200.0)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for a wave's answers")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    groq = FakeGroqServer(token_delay=args.token_ms / 1000, first_token_delay=args.first_token_ms / 1000,
                          reply=fake_llm_reply(args.tokens))
    fake = FakeDiscord(channels=max(args.concurrent, 1))
    groq.start()
    fake.start()
    try:
        with tempfile.TemporaryDirectory(prefix="lorebot-discord-bench-") as tmp:
            _setup(Path(tmp), fake, groq)
            report = asyncio.run(_run(args, fake))
    finally:
        fake.stop()
        groq.stop()
    report["llm"] = {"tokens": args.tokens, "token_ms": args.token_ms, "first_token_ms": args.first_token_ms}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for name in ("single", "concurrent"):
            r = report[name]
            print(f"{name:10} questions={r['questions']:3} answered={r['answered']:3} errors={r['errors']}  "
                  f"MESSAGE_CREATE→first reply p50={r['first_reply_ms']['p50']} ms p95={r['first_reply_ms']['p95']} ms  "
                  f"first answer text p50={r['first_text_ms']['p50']} ms  "
                  f"whole answer p50={r['answer_ms']['p50']} ms p95={r['answer_ms']['p95']} ms  "
                  f"edits/answer {r['edits_per_answer']['min']}–{r['edits_per_answer']['max']} "
                  f"(mean {r['edits_per_answer']['mean']}), most in 5 s: {r['max_edits_per_5s']}")
        print(f"bot answers failed: {report['bot_failed_events']:.0f}")
        c = report["one_channel"]
        print(f"one channel, {c['answers']} answers at once: answered={c['answered']} edits={c['edits']} "
              f"posts={c['posts']} most edits in any 5 s={c['max_edits_in_any_5_s']} "
              f"in any 60 s={c['max_edits_in_any_60_s']}")
        print(f"events handled={report['events_handled']} hostile={report['hostile']['handled']} "
              f"gateway reconnects={report['gateway_reconnects']} process restarts={report['process_restarts']} "
              f"answers lost={report['answers_lost']}")
    errors = report["single"]["errors"] + report["concurrent"]["errors"] + report["bot_failed_events"]
    ok = all(report["hostile"]["handled"].values()) and not report["process_restarts"] and not report["answers_lost"]
    return 0 if not errors and ok else 1


if __name__ == "__main__":
    sys.exit(main())
