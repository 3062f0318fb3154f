"""`python -m ragcore.eval` on a tiny BEIR folder, run as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ragcore.eval import documents_of, ndcg_at, recall_at

ROOT = Path(__file__).resolve().parents[2]
CORPUS = {
    "d1": ("Volcanoes", "Basaltic lava flows from shield volcanoes such as Mauna Loa in Hawaii."),
    "d2": ("Coral reefs", "Coral bleaching happens when warm water makes corals expel their algae."),
    "d3": ("Glaciers", "Glaciers retreat as summer melt exceeds winter snowfall over many years."),
    "d4": ("Honey bees", "Honey bees communicate the direction of flowers with a waggle dance."),
    "d5": ("Tides", "Ocean tides are caused mainly by the gravitational pull of the moon."),
}
QUERIES = {"q1": "why do corals turn white in warm water", "q2": "what makes the tides", "q3": "how do bees tell where flowers are"}
QRELS = [("q1", "d2", 1), ("q2", "d5", 1), ("q3", "d4", 1)]


@pytest.fixture
def beir(tmp_path: Path) -> Path:
    folder = tmp_path / "tiny"
    (folder / "qrels").mkdir(parents=True)
    with open(folder / "corpus.jsonl", "w") as f:
        for doc_id, (title, text) in CORPUS.items():
            f.write(json.dumps({"_id": doc_id, "title": title, "text": text}) + "\n")
    with open(folder / "queries.jsonl", "w") as f:
        for qid, text in QUERIES.items():
            f.write(json.dumps({"_id": qid, "text": text}) + "\n")
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in QRELS))
    return folder


def test_the_metrics_follow_their_definitions() -> None:
    assert ndcg_at(["a", "b"], {"a": 1}) == 1.0
    assert ndcg_at(["b", "a"], {"a": 1}) == pytest.approx(1 / 1.5849625, rel=1e-6)
    assert recall_at(["x", "a"], {"a": 1, "b": 1}) == 0.5
    assert documents_of([("d1:0", 3.0), ("d1:1", 2.0), ("d2:0", 1.0)]) == ["d1", "d2"]


@pytest.mark.slow  # a subprocess and the real model
def test_it_reports_ndcg_and_recall_for_each_mode_as_json(beir: Path, tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "ragcore.eval", str(beir), "--split", "test", "--json", "--data-dir", str(tmp_path / "cache")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert set(report["results"]) == {"bm25", "dense", "hybrid"}
    for mode in ("dense", "hybrid"):
        assert report["results"][mode]["ndcg@10"] > 0.9, report
        assert report["results"][mode]["recall@100"] == 1.0
    assert report["results"]["hybrid"]["queries"] == 3


@pytest.mark.slow  # a subprocess
def test_a_folder_that_is_not_beir_is_a_clear_error(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "ragcore.eval", str(tmp_path), "--split", "train"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert "missing corpus.jsonl" in run.stderr
