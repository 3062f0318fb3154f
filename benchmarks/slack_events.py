"""Slack events against a real daphne process, with the fake Slack Web API and the fake LLM.

Each event is a signed `app_mention` POSTed to /slack/events. Measured, from just before the POST:
the HTTP acknowledgement (Slack's limit is 3 s; target p95 ≤ 100 ms), the 👀 reaction and the
placeholder message in the thread (target ≤ 500 ms), as the fake Slack recorded them; and per answer,
how many chat.update calls streamed it and the fastest edit rate seen (Slack allows about one update
per second per message; SLACK_UPDATE_INTERVAL, 1 s). Events go out in waves of --concurrency.

    .venv/bin/python benchmarks/slack_events.py                      # 100 events, 5 at a time
    .venv/bin/python benchmarks/slack_events.py --events 10 --concurrency 2 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import fake_llm_reply, percentile  # noqa: E402
from tests.daphne_server import make_site, start_daphne  # noqa: E402
from tests.fakes.groq import FakeGroqServer  # noqa: E402
from tests.fakes.slack import SIGNING_SECRET, FakeSlackServer, event_body, mention, sign  # noqa: E402

QUESTIONS = ("How do I roll back a release?", "When do releases go out?", "Who is notified on a rollback?")


async def _one_event(http: Any, fake: FakeSlackServer, question: str, user: str) -> dict[str, Any]:
    import httpx

    event = mention(question, user=user)
    body = json.dumps(event_body(event))
    headers = {**sign(body), "Content-Type": "application/json"}
    sent = time.perf_counter()
    result: dict[str, Any] = {"error": None, "ts": event["ts"]}
    try:
        response = await http.post("/slack/events", content=body, headers=headers)
        result["ack_ms"] = (time.perf_counter() - sent) * 1000
        if response.status_code != 200:
            result["error"] = f"HTTP {response.status_code}"
            return result
        eyes, = await fake.wait_for("reactions.add", lambda c: c.args.get("timestamp") == event["ts"], timeout=60)
        placeholder, = await fake.wait_for("chat.postMessage", lambda c: c.args.get("thread_ts") == event["ts"],
                                           timeout=60)
        result["eyes_ms"] = (eyes.at - sent) * 1000
        result["placeholder_ms"] = (placeholder.at - sent) * 1000
        deadline = time.monotonic() + 120
        while not any(b["type"] == "actions" for m in fake.thread("C0GENERAL", event["ts"]) for b in m.blocks):
            if time.monotonic() > deadline:
                raise TimeoutError("the answer did not finish within 120 s")
            await asyncio.sleep(0.05)
        result["done_ms"] = (time.perf_counter() - sent) * 1000
    except (httpx.HTTPError, AssertionError, TimeoutError) as exc:  # counted, not fatal
        result["error"] = f"{type(exc).__name__}: {exc}"[:200]
    return result


def _edits(fake: FakeSlackServer, results: list[dict[str, Any]]) -> None:
    """chat.update calls per answer, and the shortest gap between two of them."""
    for r in results:
        if r["error"] is not None:
            continue
        reply, = fake.thread("C0GENERAL", r["ts"])
        times = sorted(c.at for c in fake.calls("chat.update") if c.args.get("ts") == reply.ts)
        r["updates"] = len(times)
        r["min_gap_s"] = min((b - a for a, b in zip(times, times[1:])), default=None)


async def run(base_url: str, fake: FakeSlackServer, events: int, concurrency: int) -> list[dict[str, Any]]:
    import httpx

    results: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        await _one_event(http, fake, QUESTIONS[0], "U0WARMUP")  # model, indexes, first auth.test
        for start in range(0, events, concurrency):
            wave = range(start, min(events, start + concurrency))
            results += await asyncio.gather(*(
                _one_event(http, fake, QUESTIONS[i % len(QUESTIONS)], f"U{i:08d}") for i in wave))
    _edits(fake, results)
    return results


def _stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    return {"p50": round(percentile(values, 50), 1), "p95": round(percentile(values, 95), 1),
            "max": round(max(values), 1)}


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in results if r["error"] is None]
    errors: dict[str, int] = {}
    for r in results:
        if r["error"] is not None:
            errors[r["error"]] = errors.get(r["error"], 0) + 1
    gaps = [r["min_gap_s"] for r in ok if r.get("min_gap_s") is not None]
    return {
        "events": len(results), "answered": len(ok), "errors": errors,
        "ack_ms": _stats([r["ack_ms"] for r in ok]),
        "eyes_ms": _stats([r["eyes_ms"] for r in ok]),
        "placeholder_ms": _stats([r["placeholder_ms"] for r in ok]),
        "answer_ms": _stats([r["done_ms"] for r in ok]),
        "updates_per_answer": {"mean": round(statistics.mean(r["updates"] for r in ok), 1) if ok else None,
                               "max": max((r["updates"] for r in ok), default=None)},
        "min_seconds_between_updates": round(min(gaps), 3) if gaps else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=5, help="events sent at the same moment")
    parser.add_argument("--tokens", type=int, default=150, help="tokens in each fake LLM answer")
    parser.add_argument("--token-ms", type=float, default=20.0)
    parser.add_argument("--first-token-ms", type=float, default=200.0)
    parser.add_argument("--slack-latency-ms", type=float, default=0.0, help="time each fake Web API call takes")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    groq = FakeGroqServer(token_delay=args.token_ms / 1000, first_token_delay=args.first_token_ms / 1000,
                          reply=fake_llm_reply(args.tokens))
    slack = FakeSlackServer(latency=args.slack_latency_ms / 1000)
    groq.start()
    slack.start()
    try:
        with tempfile.TemporaryDirectory(prefix="lorebot-slack-bench-") as tmp:
            site = make_site(Path(tmp) / "data", users=(), GROQ_API_KEY="gsk-bench", GROQ_BASE_URL=groq.base_url,
                             GROQ_TIMEOUT="120", GROQ_MAX_RETRIES="0", CHAT_RATE_LIMIT_CONVERSATION="0")
            daphne = start_daphne(site, name="slack-bench", SLACK_BOT_TOKEN="xoxb-bench",
                                  SLACK_SIGNING_SECRET=SIGNING_SECRET, SLACK_API_URL=slack.api_url,
                                  SLACK_RATE_LIMIT_USER="0")
            try:
                results = asyncio.run(run(daphne.http_url, slack, args.events, args.concurrency))
            finally:
                daphne.stop()
    finally:
        slack.stop()
        groq.stop()
    report = {"llm": {"tokens": args.tokens, "token_ms": args.token_ms, "first_token_ms": args.first_token_ms},
              "concurrency": args.concurrency, **summarize(results)}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"events={report['events']} answered={report['answered']} errors={report['errors'] or 0} "
              f"concurrency={args.concurrency}")
        for name in ("ack_ms", "eyes_ms", "placeholder_ms", "answer_ms"):
            s = report[name]
            print(f"  event → {name[:-3]:12} p50={s['p50']} ms  p95={s['p95']} ms  max={s['max']} ms")
        u = report["updates_per_answer"]
        print(f"  chat.update per answer: mean={u['mean']} max={u['max']}; "
              f"shortest gap between two updates of one message: {report['min_seconds_between_updates']} s")
    return 0 if not report["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
