"""Start-up: how soon a fresh `daphne console.asgi:application` answers /health, and /health/ready.

Time to live: from starting the process to the first 200 from /health (it accepts connections and
answers before anything is loaded). Time to ready: to the first 200 from /health/ready (the
background warm-up has loaded the embedding model, opened Chroma and the BM25 index, and checked
the LLM). RSS: the process's resident memory once ready. Each run is a new process on the same site
(a migrated database, two ingested documents); with several encoder backends each has its own site
(an index records its backend) and the backends take turns run by run.

    .venv/bin/python benchmarks/startup.py              # 5 runs on the default onnx-int8 encoder
    .venv/bin/python benchmarks/startup.py --runs 3 --backends onnx-int8,onnx,torch
    .venv/bin/python benchmarks/startup.py --runs 1 --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.daphne_server import DAPHNE, Site, free_port, make_site  # noqa: E402


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0  # not accepting connections yet


def _wait_for(url: str, started: float, deadline: float, interval: float) -> float:
    while time.monotonic() < deadline:
        if _status(url) == 200:
            return time.monotonic() - started
        time.sleep(interval)
    raise RuntimeError(f"{url} did not answer 200 in time")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure(site: Site, timeout: float) -> dict[str, Any]:
    """One cold start of daphne: seconds to live, to ready, RSS at ready, and the warm-up's own account."""
    port = free_port()
    log = site.data_dir / f"startup-{port}.log"
    base = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    process = subprocess.Popen([DAPHNE, "-b", "127.0.0.1", "-p", str(port), "console.asgi:application"],
                               env=site.env, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        deadline = started + timeout
        live = _wait_for(f"{base}/health", started, deadline, 0.01)
        ready = _wait_for(f"{base}/health/ready", started, deadline, 0.05)
        rss = _rss_mb(process.pid)
        with urllib.request.urlopen(f"{base}/health/ready", timeout=5) as response:
            body = json.loads(response.read())
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:  # a loaded machine: the figures are taken, do not lose them
            process.kill()
            process.wait()
    return {"live_s": round(live, 3), "ready_s": round(ready, 3), "rss_mb": round(rss), "warmup_s": body["warmup"]["seconds"],
            "checks_ms": {name: check.get("ms") for name, check in body["checks"].items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds a run may take to become ready")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--backends", default="onnx-int8", help="comma-separated RAG_EMBEDDING_BACKEND values")
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]

    with tempfile.TemporaryDirectory(prefix="lorebot-startup-bench-") as tmp:
        sites = {b: make_site(Path(tmp) / b, RAG_EMBEDDING_BACKEND=b) for b in backends}
        runs: dict[str, list[dict[str, Any]]] = {b: [] for b in backends}
        for _ in range(args.runs):
            for backend, site in sites.items():
                runs[backend].append(measure(site, args.timeout))
    report = {backend: {
        "runs": r,
        **{key: {"median": statistics.median(x[key] for x in r), "max": max(x[key] for x in r)}
           for key in ("live_s", "ready_s", "rss_mb")},
    } for backend, r in runs.items()}
    if args.json:
        print(json.dumps(report if len(backends) > 1 else report[backends[0]], indent=2))
        return 0
    for backend, r in report.items():
        print(f"{backend}:")
        for i, run in enumerate(r["runs"], 1):
            print(f"  run {i}: live {run['live_s']:.2f} s  ready {run['ready_s']:.2f} s  RSS {run['rss_mb']} MB  "
                  f"(warm-up {run['warmup_s']} s; checks ms {run['checks_ms']})")
        print(f"  time to live:  median {r['live_s']['median']:.2f} s, max {r['live_s']['max']:.2f} s")
        print(f"  time to ready: median {r['ready_s']['median']:.2f} s, max {r['ready_s']['max']:.2f} s")
        print(f"  RSS at ready:  median {r['rss_mb']['median']:.0f} MB, max {r['rss_mb']['max']:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
