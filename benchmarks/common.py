"""What the benchmarks share: SciFact-derived text, percentiles, memory readings."""

from __future__ import annotations

import json
import os
import random
import re
import resource
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SCIFACT = Path(os.getenv("SCIFACT_DIR", str(ROOT.parent / "shared" / "eval" / "scifact")))
_SENTENCE = re.compile(r"(?<=[.!?])\s+")

from ragcore.logsetup import quiet_cli_logging  # noqa: E402

quiet_cli_logging()


def load_corpus(limit: int | None = None) -> list[dict[str, str]]:
    docs = []
    with open(SCIFACT / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            docs.append(json.loads(line))
            if limit and len(docs) == limit:
                break
    return docs


def load_sentences() -> list[str]:
    sentences = []
    for doc in load_corpus():
        sentences.append(doc["title"])
        sentences.extend(s for s in _SENTENCE.split(doc["text"]) if s.strip())
    return sentences


def load_queries(n: int) -> list[str]:
    with open(SCIFACT / "queries.jsonl", encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f][:n]


def make_chunks(n: int, words: int, seed: int) -> Iterator[str]:
    """`n` chunks of at least `words` words, each a random run of SciFact sentences."""
    rng = random.Random(seed)
    sentences = load_sentences()
    lengths = [len(s.split()) for s in sentences]
    for _ in range(n):
        parts, count = [], 0
        while count < words:
            i = rng.randrange(len(sentences))
            parts.append(sentences[i])
            count += lengths[i]
        yield " ".join(parts)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def fake_llm_reply(tokens: int) -> str:
    """What the fake LLM streams in the chat benchmarks: about `tokens` words, citing source [1]."""
    return "According to the documents " + " ".join(f"word{i}" for i in range(max(1, tokens - 5))) + " [1]."


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def dir_size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20
