"""WebSocket chat under load: one or more daphne processes, the fake Groq streaming slowly, many sockets at once.

The fake LLM sends its first token after --first-token-ms (200) and then one token every --token-ms
(20) for --tokens (200) tokens. Each client opens /ws/chat/, and all of them ask at the same moment.
Reported: errors, the time to first token that Lorebot *adds* over the LLM's own first-token delay
(retrieval, the database, framing; p50/p95), the time to `start`, the whole answer, and the daphne
process's peak memory (VmHWM).

    .venv/bin/python benchmarks/ws_concurrency.py                 # 1 client, then 200 at once
    .venv/bin/python benchmarks/ws_concurrency.py --clients 50 --json
    .venv/bin/python benchmarks/ws_concurrency.py --distinct      # 200 different questions
    .venv/bin/python benchmarks/ws_concurrency.py --profile /tmp/daphne.txt   # py-spy during the wave
    .venv/bin/python benchmarks/ws_concurrency.py --processes 1,2 --nginx --cpu-ms 12
        # 1 and then 2 daphne processes behind the shipped deploy/nginx/lorebot.conf (TLS, least_conn),
        # each with the wave's questions/s and the floor that --cpu-ms (benchmarks/question_cpu.py) implies

With --nginx, the real nginx (Debian's package) runs the shipped config as tests/nginx_server.py does
(own prefix, self-signed certificate, unprivileged), in front of every daphne process of the run; clients
speak wss:// to it. Questions/s: answers completed in the wave ÷ the time from the common ask to the last
`done`. The daphne processes' CPU over the wave (utime + stime, /proc) is reported per answer. The floor
is what the CPU cost of the questions alone puts on the added TTFT: all of them queue for the cores, so
the last first token waits about clients × CPU per question ÷ the cores Python can use (a process runs
Python on one core at a time; the machine has os.cpu_count() cores).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import fake_llm_reply, percentile  # noqa: E402
from benchmarks.question_cpu import cpu_seconds  # noqa: E402
from tests.daphne_server import Daphne, Site, free_port, make_site, peak_rss_kb, start_daphne  # noqa: E402
from tests.fakes.groq import FakeGroqServer  # noqa: E402
from tests.nginx_server import NGINX, make_certificate, nginx_prefix, render_site, start_nginx, write_config  # noqa: E402

QUESTIONS = ("How do I roll back a release?", "When do releases go out?", "Who is notified on a rollback?")


async def _one_client(url: str, origin: str, cookie: str, question: str, start_at: float,
                      tls: ssl.SSLContext | None = None) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    result: dict[str, Any] = {"error": None}
    try:
        async with connect(url, origin=origin, additional_headers={"Cookie": cookie},  # type: ignore[arg-type]
                           open_timeout=60, max_queue=None, ssl=tls) as ws:
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
                    result["done_at"] = time.time()
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


def _client_batch(args: tuple[str, str, str, int, int, float, bool, str]) -> list[dict[str, Any]]:
    """One client process: `count` sockets in one event loop (`cafile`: trust that certificate, for wss://)."""
    url, origin, cookie, first, count, start_at, distinct, cafile = args
    tls = ssl.create_default_context(cafile=cafile) if cafile else None

    async def run() -> list[dict[str, Any]]:
        return await asyncio.gather(*(
            _one_client(url, origin, cookie, question(first + i, distinct), start_at, tls) for i in range(count)
        ))

    return asyncio.run(run())


def run_wave(url: str, origin: str, cookie: str, clients: int, processes: int,
             distinct: bool = False, cafile: str = "", at_ask: Callable[[], None] | None = None) -> list[dict[str, Any]]:
    """`clients` sockets spread over `processes` client processes, all asking at the same moment.

    Each result also holds `start_at`, the moment every client asked (time.time()); `at_ask` is called then.
    """
    processes = max(1, min(processes, clients))
    share = [clients // processes + (1 if i < clients % processes else 0) for i in range(processes)]
    start_at = time.time() + 2.0 + clients / 100  # time to open every socket before anyone asks
    if cafile:
        start_at += clients / 100  # and their TLS handshakes
    jobs = [(url, origin, cookie, sum(share[:i]), n, start_at, distinct, cafile) for i, n in enumerate(share)]
    if at_ask is not None:
        threading.Timer(start_at - time.time(), at_ask).start()
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        return [{**r, "start_at": start_at} for batch in pool.map(_client_batch, jobs) for r in batch]


def summarize(results: list[dict[str, Any]], llm_first_ms: float) -> dict[str, Any]:
    ok = [r for r in results if r["error"] is None and "done_ms" in r]
    added = [r["first_token_ms"] - llm_first_ms for r in ok if "first_token_ms" in r]
    errors: dict[str, int] = {}
    for r in results:
        if r["error"] is not None:
            errors[r["error"]] = errors.get(r["error"], 0) + 1
    done_at = [r["done_at"] for r in ok]
    wave_seconds = max(done_at) - results[0]["start_at"] if ok else float("nan")
    return {
        "clients": len(results),
        "completed": len(ok),
        "wave_seconds": round(wave_seconds, 2),
        "questions_per_second": round(len(ok) / wave_seconds, 1) if ok else 0.0,
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


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine has spent busy so far (/proc/stat: all but idle and iowait)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _start_profiler(pid: int, out: str) -> subprocess.Popen[bytes]:
    """py-spy sampling whichever daphne thread holds the GIL: one process runs one line of Python at a
    time, so this is where its time goes. --nonblocking: pausing daphne per sample would distort it."""
    py_spy = str(Path(sys.executable).with_name("py-spy"))
    return subprocess.Popen([py_spy, "record", "--pid", str(pid), "--format", "raw", "--threads", "--gil",
                             "--nonblocking", "--rate", "100", "--output", out],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@dataclass
class Endpoint:
    """Where the clients connect: one daphne, or nginx in front of several."""

    ws_url: str
    origin: str
    cafile: str = ""  # nginx's self-signed certificate, for wss://


def _measure(args: argparse.Namespace, site: Site, daphnes: list[Daphne], endpoint: Endpoint) -> dict[str, Any]:
    """The single-user runs, then the wave, against `endpoint`; with the daphne processes' CPU over the wave."""
    cookie = site.cookie("bench")
    run = (endpoint.ws_url, endpoint.origin, cookie)
    run_wave(*run, 1, 1, cafile=endpoint.cafile)  # warm-up: model, indexes, HTTP client
    for _ in range(len(daphnes)):  # each process gets its warm-up (least_conn spreads them)
        run_wave(*run, len(daphnes), 1, cafile=endpoint.cafile)
    single = []
    for _ in range(args.single_runs):
        single += run_wave(*run, 1, 1, cafile=endpoint.cafile)
    pids = [d.process.pid for d in daphnes]
    profiler = _start_profiler(pids[0], args.profile) if args.profile else None
    cpu = sum(cpu_seconds(pid) for pid in pids)
    # From the common ask to the last answer: the machine's and daphne's CPU, and this process's (the fake
    # LLM's). The client processes' CPU is only known once they end, so theirs counts from their start.
    asked: list[float] = []
    wave = run_wave(*run, args.clients, args.client_processes, args.distinct, cafile=endpoint.cafile, at_ask=lambda: asked.extend(
        (time.monotonic(), machine_busy_seconds(), sum(cpu_seconds(pid) for pid in pids), _self_cpu())))
    ended = (time.monotonic(), machine_busy_seconds(), sum(cpu_seconds(pid) for pid in pids), _self_cpu())
    cpu = sum(cpu_seconds(pid) for pid in pids) - cpu
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)  # py-spy writes its report on Ctrl-C
        profiler.wait(timeout=60)
    concurrent = summarize(wave, args.first_token_ms)
    concurrent["daphne_cpu_ms_per_answer"] = round(cpu * 1000 / max(concurrent["completed"], 1), 2)
    # Where the machine's cores went while the questions were answered: daphne, the fake LLM (this process),
    # and the rest (nginx, the clients, the kernel, other work on the machine).
    if len(asked) == 4:
        wall = ended[0] - asked[0]
        concurrent["cores_busy"] = {name: round((ended[i] - asked[i]) / wall, 2)
                                    for i, name in ((1, "machine"), (2, "daphne"), (3, "fake_llm"))}
    return {
        "processes": len(daphnes),
        "via": "nginx" if endpoint.cafile else "direct",
        "single_user": summarize(single, args.first_token_ms),
        "concurrent": concurrent,
        "daphne_peak_rss_mb": [round(peak_rss_kb(pid) / 1024, 1) for pid in pids],
    }


def _run_config(args: argparse.Namespace, site: Site, processes: int, https_port: int) -> dict[str, Any]:
    """`processes` daphne processes on the site, directly or behind nginx, measured."""
    daphnes: list[Daphne] = []
    try:
        for i in range(processes):
            daphnes.append(start_daphne(site, name=f"bench{i}", app=args.app))
        if not args.nginx:
            return _measure(args, site, daphnes, Endpoint(daphnes[0].ws_url, daphnes[0].http_url))
        with nginx_prefix() as prefix:
            cert, key = make_certificate(prefix)
            text = render_site(prefix, cert=cert, key=key, https_port=https_port, http_port=free_port(),
                               upstream_ports=[d.port for d in daphnes])
            # Each socket is two connections (client side and upstream); room for the wave and then some.
            conf = write_config(prefix, text, worker_connections=max(1024, 4 * args.clients))
            nginx = start_nginx(prefix, conf, https_port)
            try:
                origin = f"https://localhost:{https_port}"
                run = _measure(args, site, daphnes, Endpoint(f"wss://localhost:{https_port}/ws/chat/", origin, str(cert)))
                if run["concurrent"]["errors"]:  # what nginx saw of them (upstream refusals, timeouts)
                    errors = [line for line in nginx.error_log.splitlines() if "[error]" in line or "[crit]" in line]
                    print(f"nginx error log, {len(errors)} errors; the last:", *errors[-5:], sep="\n  ", file=sys.stderr)
                    for daphne in daphnes:
                        print(f"{daphne.log.name}, the last lines:", *daphne.log.read_text().splitlines()[-8:],
                              sep="\n  ", file=sys.stderr)
                return run
            finally:
                nginx.stop()
    finally:
        for daphne in daphnes:
            daphne.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--single-runs", type=int, default=20, help="sequential asks of the single-user run")
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--token-ms", type=float, default=20.0)
    parser.add_argument("--first-token-ms", type=float, default=200.0)
    parser.add_argument("--client-processes", type=int, default=2, help="client processes sharing the sockets")
    parser.add_argument("--processes", default="1",
                        help="comma-separated daphne process counts, each measured in turn (e.g. 1,2)")
    parser.add_argument("--nginx", action="store_true",
                        help="clients connect through the shipped nginx config in front of the daphne processes")
    parser.add_argument("--cpu-ms", type=float, default=0.0,
                        help="CPU per question (benchmarks/question_cpu.py), to report the floor it implies")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for the daphne process, e.g. REDIS_URL=redis://127.0.0.1:6379/0")
    parser.add_argument("--app", default="console.asgi:application", help="the ASGI application daphne serves")
    parser.add_argument("--distinct", action="store_true",
                        help="every client asks its own question (by default they share three, and the server "
                             "embeds a question asked by several clients at once only once)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--profile", metavar="FILE",
                        help="record the (first) daphne with py-spy during the concurrent wave (collapsed stacks, "
                             "one line per stack: `sort -k2 -n`); needs `pip install py-spy`")
    args = parser.parse_args()
    if args.nginx and not NGINX:
        parser.error("--nginx: nginx is not installed (apt-get install -y nginx)")
    extra_env = dict(item.split("=", 1) for item in args.env)
    https_port = free_port()

    fake = FakeGroqServer(token_delay=args.token_ms / 1000, first_token_delay=args.first_token_ms / 1000,
                          reply=fake_llm_reply(args.tokens))
    fake.start()
    runs = []
    with tempfile.TemporaryDirectory(prefix="lorebot-ws-bench-") as tmp:
        site = make_site(
            Path(tmp) / "data", users=("bench",), GROQ_API_KEY="gsk-bench", GROQ_BASE_URL=fake.base_url,
            GROQ_TIMEOUT="120", GROQ_MAX_RETRIES="0",
            # The benchmark is one user asking 200 questions at once: the per-user limits would refuse it,
            CHAT_RATE_LIMIT_USER="0", CHAT_RATE_LIMIT_CONVERSATION="0",
            # ... and its session's frame budget (60 per 10 s) would drop 140 of the 200 asks unread.
            CHAT_FRAME_RATE="0",
            # Behind nginx: the Host and Origin are https://localhost:PORT, and nginx's X-Forwarded-* believed.
            DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost", LOREBOT_PUBLIC_URL=f"https://localhost:{https_port}",
            TRUSTED_PROXIES="127.0.0.1", **extra_env,
        )
        try:
            for processes in (int(n) for n in args.processes.split(",")):
                runs.append(_run_config(args, site, processes, https_port))
        finally:
            fake.stop()
    cores = os.cpu_count() or 1
    report = {
        "llm": {"tokens": args.tokens, "token_ms": args.token_ms, "first_token_ms": args.first_token_ms},
        "clients": args.clients,
        "cores": cores,
        "cpu_ms_per_question": args.cpu_ms or None,
        # What the questions' CPU alone costs the last first token, as issue 16 puts it: clients × CPU ÷ cores.
        "floor_ms": round(args.clients * args.cpu_ms / cores, 1) if args.cpu_ms else None,
        "runs": runs,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for run in runs:
            print(f"-- {run['processes']} daphne process(es), {run['via']}")
            for name in ("single_user", "concurrent"):
                r = run[name]
                print(f"{name:12} clients={r['clients']:4} completed={r['completed']:4} errors={r['errors'] or 0}  "
                      f"added TTFT p50={r['added_first_token_ms']['p50']} ms p95={r['added_first_token_ms']['p95']} ms "
                      f"max={r['added_first_token_ms']['max']} ms  start p95={r['start_ms']['p95']} ms  "
                      f"retrieval p95={r['retrieval_ms']['p95']} ms  "
                      f"answer p50={r['answer_ms']['p50']} ms  tokens/answer={r['tokens_per_answer']}"
                      + (f"  questions/s={r['questions_per_second']}" if name == "concurrent" else ""))
            print(f"daphne CPU per answer in the wave: {run['concurrent']['daphne_cpu_ms_per_answer']} ms; "
                  f"peak RSS (VmHWM): {run['daphne_peak_rss_mb']} MB")
            busy = run["concurrent"].get("cores_busy")
            if busy:
                print(f"cores busy from the ask to the last answer (of {cores}): machine {busy['machine']}, "
                      f"daphne {busy['daphne']}, fake LLM {busy['fake_llm']}")
        if report["floor_ms"] is not None:
            print(f"floor: {args.clients} × {args.cpu_ms} ms ÷ {cores} cores = {report['floor_ms']} ms")
    failed = any(run[name]["errors"] for run in runs for name in ("single_user", "concurrent"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
