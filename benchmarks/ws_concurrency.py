"""WebSocket chat under load: one daphne process, the fake Groq streaming slowly, many sockets at once.

The fake LLM sends its first token after --first-token-ms (200) and then one token every --token-ms
(20) for --tokens (200) tokens. Each client opens /ws/chat/, and all of them ask at the same moment.
Reported: errors, the time to first token that Lorebot *adds* over the LLM's own first-token delay
(retrieval, the database, framing; p50/p95), the time to `start`, the whole answer, and the daphne
process's peak memory (VmHWM).

    .venv/bin/python benchmarks/ws_concurrency.py                 # 1 client, then 200 at once
    .venv/bin/python benchmarks/ws_concurrency.py --clients 50 --json
    .venv/bin/python benchmarks/ws_concurrency.py --distinct      # 200 different questions
    .venv/bin/python benchmarks/ws_concurrency.py --profile /tmp/daphne.txt   # py-spy during the wave
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import fake_llm_reply, percentile  # noqa: E402
from tests.daphne_server import make_site, peak_rss_kb, start_daphne  # noqa: E402
from tests.fakes.groq import FakeGroqServer  # noqa: E402

QUESTIONS = ("How do I roll back a release?", "When do releases go out?", "Who is notified on a rollback?")


async def _one_client(url: str, origin: str, cookie: str, question: str, start_at: float) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    result: dict[str, Any] = {"error": None}
    try:
        async with connect(url, origin=origin, additional_headers={"Cookie": cookie},  # type: ignore[arg-type]
                           open_timeout=60, max_queue=None) as ws:
            await asyncio.sleep(max(0.0, start_at - time.time()))
            sent = time.perf_counter()
            await ws.send(json.dumps({"type": "ask", "text": question}))
            tokens = 0
            async for raw in ws:
                frame = json.loads(raw)
                now = time.perf_counter()
                kind = frame["type"]
                if kind == "start":
                    result["start_ms"] = (now - sent) * 1000
                elif kind == "token":
                    tokens += 1
                    result.setdefault("first_token_ms", (now - sent) * 1000)
                elif kind == "error":
                    result["error"] = frame.get("code", "error")
                    if frame.get("fatal", True):
                        break
                elif kind == "done":
                    result["done_ms"] = (now - sent) * 1000
                    result["provider"] = frame.get("provider")
                    result["retrieval_ms"] = frame.get("retrieval_ms")
                    break
            result["tokens"] = tokens
    except Exception as exc:  # a benchmark counts failures rather than stopping at the first
        result["error"] = f"{type(exc).__name__}: {exc}"
    return result


def question(n: int, distinct: bool) -> str:
    """The n-th client's question: one of three, or with --distinct one no other client asks."""
    text = QUESTIONS[n % len(QUESTIONS)]
    return f"{text[:-1]} (ticket {n})?" if distinct else text


def _client_batch(args: tuple[str, str, str, int, int, float, bool]) -> list[dict[str, Any]]:
    """One client process: `count` sockets in one event loop."""
    url, origin, cookie, first, count, start_at, distinct = args

    async def run() -> list[dict[str, Any]]:
        return await asyncio.gather(*(
            _one_client(url, origin, cookie, question(first + i, distinct), start_at) for i in range(count)
        ))

    return asyncio.run(run())


def run_wave(url: str, origin: str, cookie: str, clients: int, processes: int,
             distinct: bool = False) -> list[dict[str, Any]]:
    """`clients` sockets spread over `processes` client processes, all asking at the same moment."""
    processes = max(1, min(processes, clients))
    share = [clients // processes + (1 if i < clients % processes else 0) for i in range(processes)]
    start_at = time.time() + 2.0 + clients / 100  # time to open every socket before anyone asks
    jobs = [(url, origin, cookie, sum(share[:i]), n, start_at, distinct) for i, n in enumerate(share)]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        return [r for batch in pool.map(_client_batch, jobs) for r in batch]


def summarize(results: list[dict[str, Any]], llm_first_ms: float) -> dict[str, Any]:
    ok = [r for r in results if r["error"] is None and "done_ms" in r]
    added = [r["first_token_ms"] - llm_first_ms for r in ok if "first_token_ms" in r]
    errors: dict[str, int] = {}
    for r in results:
        if r["error"] is not None:
            errors[r["error"]] = errors.get(r["error"], 0) + 1
    return {
        "clients": len(results),
        "completed": len(ok),
        "errors": errors,
        "added_first_token_ms": {"p50": round(percentile(added, 50), 1), "p95": round(percentile(added, 95), 1),
                                 "max": round(max(added), 1) if added else None},
        "start_ms": {"p50": round(percentile([r["start_ms"] for r in ok], 50), 1),
                     "p95": round(percentile([r["start_ms"] for r in ok], 95), 1)},
        # The server's own figure: search only, without waiting for a worker thread.
        "retrieval_ms": {"p50": round(percentile([r["retrieval_ms"] for r in ok], 50), 1),
                         "p95": round(percentile([r["retrieval_ms"] for r in ok], 95), 1)},
        "answer_ms": {"p50": round(percentile([r["done_ms"] for r in ok], 50), 1),
                      "p95": round(percentile([r["done_ms"] for r in ok], 95), 1)},
        "tokens_per_answer": round(statistics.mean(r["tokens"] for r in ok), 1) if ok else 0,
    }


def _start_profiler(pid: int, out: str) -> subprocess.Popen[bytes]:
    """py-spy sampling whichever daphne thread holds the GIL: one process runs one line of Python at a
    time, so this is where its time goes. --nonblocking: pausing daphne per sample would distort it."""
    py_spy = str(Path(sys.executable).with_name("py-spy"))
    return subprocess.Popen([py_spy, "record", "--pid", str(pid), "--format", "raw", "--threads", "--gil",
                             "--nonblocking", "--rate", "100", "--output", out],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--single-runs", type=int, default=20, help="sequential asks of the single-user run")
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--token-ms", type=float, default=20.0)
    parser.add_argument("--first-token-ms", type=float, default=200.0)
    parser.add_argument("--client-processes", type=int, default=2, help="client processes sharing the sockets")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for the daphne process, e.g. REDIS_URL=redis://127.0.0.1:6379/0")
    parser.add_argument("--app", default="console.asgi:application", help="the ASGI application daphne serves")
    parser.add_argument("--distinct", action="store_true",
                        help="every client asks its own question (by default they share three, and the server "
                             "embeds a question asked by several clients at once only once)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--profile", metavar="FILE",
                        help="record daphne with py-spy during the concurrent wave (collapsed stacks, "
                             "one line per stack: `sort -k2 -n`); needs `pip install py-spy`")
    args = parser.parse_args()
    extra_env = dict(item.split("=", 1) for item in args.env)

    fake = FakeGroqServer(token_delay=args.token_ms / 1000, first_token_delay=args.first_token_ms / 1000,
                          reply=fake_llm_reply(args.tokens))
    fake.start()
    with tempfile.TemporaryDirectory(prefix="lorebot-ws-bench-") as tmp:
        site = make_site(
            Path(tmp) / "data", users=("bench",), GROQ_API_KEY="gsk-bench", GROQ_BASE_URL=fake.base_url,
            GROQ_TIMEOUT="120", GROQ_MAX_RETRIES="0",
            # The benchmark is one user asking 200 questions at once: the per-user limits would refuse it.
            CHAT_RATE_LIMIT_USER="0", CHAT_RATE_LIMIT_CONVERSATION="0",
            # ... and its session's frame budget (60 per 10 s) would drop 140 of the 200 asks unread.
            CHAT_FRAME_RATE="0", **extra_env,
        )
        daphne = start_daphne(site, name="bench", app=args.app)
        cookie, origin = site.cookie("bench"), daphne.http_url
        try:
            run_wave(daphne.ws_url, origin, cookie, 1, 1)  # warm-up: model, indexes, HTTP client
            single = []
            for _ in range(args.single_runs):
                single += run_wave(daphne.ws_url, origin, cookie, 1, 1)
            profiler = _start_profiler(daphne.process.pid, args.profile) if args.profile else None
            wave = run_wave(daphne.ws_url, origin, cookie, args.clients, args.client_processes, args.distinct)
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)  # py-spy writes its report on Ctrl-C
                profiler.wait(timeout=60)
            rss_kb = peak_rss_kb(daphne.process.pid)
        finally:
            daphne.stop()
            fake.stop()
    report = {
        "llm": {"tokens": args.tokens, "token_ms": args.token_ms, "first_token_ms": args.first_token_ms},
        "single_user": summarize(single, args.first_token_ms),
        "concurrent": summarize(wave, args.first_token_ms),
        "daphne_peak_rss_mb": round(rss_kb / 1024, 1),
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for name in ("single_user", "concurrent"):
            r = report[name]
            print(f"{name:12} clients={r['clients']:4} completed={r['completed']:4} errors={r['errors'] or 0}  "
                  f"added TTFT p50={r['added_first_token_ms']['p50']} ms p95={r['added_first_token_ms']['p95']} ms "
                  f"max={r['added_first_token_ms']['max']} ms  start p95={r['start_ms']['p95']} ms  "
                  f"retrieval p95={r['retrieval_ms']['p95']} ms  "
                  f"answer p50={r['answer_ms']['p50']} ms  tokens/answer={r['tokens_per_answer']}")
        print(f"daphne peak RSS (VmHWM): {report['daphne_peak_rss_mb']} MB")
    return 0 if not report["concurrent"]["errors"] and not report["single_user"]["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
