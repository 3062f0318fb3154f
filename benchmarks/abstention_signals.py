"""Candidate abstention signals, measured before any is built: does one separate the out-of-corpus questions
the decline still answers from every answerable question, on every answer set?

    .venv/bin/python benchmarks/abstention_signals.py benchmarks/answer_sets/python benchmarks/answer_sets/django ...

For each question the retrieval `Engine.retrieve` does (the index `answer_quality.py` keeps in
data/answer_quality/<set>; run that first), the verdict's own evidence and these candidates, each 0..1 unless said:
- pair_chunk / pair_sentence: the idf-weighted share of the question's adjacent content-term pairs ("templat
  filter", "databas migrat") whose two terms are in one of the top three chunks / one sentence of the top chunks;
- rarest_held: 1 when the question's rarest term that the index holds is in one of the top three chunks;
- keyword_minus_dense: keyword evidence less the best dense similarity (a keyword match the meaning does not share);
- one_chunk_loss: how much the chunk and keyword evidence lose when both must come from the same one of the top
  three chunks (`DENSE_WEIGHT * dense + KEYWORD_WEIGHT * keyword` of the best chunk, against the best of each);
- heading_similarity: the best dense similarity between the question and the title and section path of one of the
  top three chunks (whether the passage is about the question's topic or mentions it in passing).
It prints, per signal, the values of the missed declines (out-of-corpus questions the decline answers), the
answerable questions on the same side of them, and whether one threshold separates them on all sets given.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from answer_quality import load_set
from common import ROOT

from ragcore import Engine, RagSettings, abstention, extractive
from ragcore.tokenize import tokenize

# Which way each signal points: +1 when a higher value is more like a question the documents do not cover.
SIGNALS = {"pair_chunk": -1, "pair_sentence": -1, "rarest_held": -1, "keyword_minus_dense": +1, "one_chunk_loss": +1,
           "heading_similarity": -1}
_SENTENCE_END = re.compile(r"(?<=[.!?:])\s+")


def measure(engine: Engine, question: str) -> dict[str, float] | None:
    """The verdict's evidence and the candidate signals for one question (None when it is declined before any)."""
    retrieval = engine.retrieve(question)
    verdict = retrieval.verdict
    chunks = list(retrieval.chunks)
    if verdict is None or verdict.dense is None or not chunks or verdict.reason not in ("covered", "weak_evidence"):
        return None
    retriever = engine.retriever
    terms = list(dict.fromkeys(tokenize(question)))
    n, df = retriever.bm25.document_frequencies(set(terms))
    idf = {t: abstention._idf(n, max(1, df.get(t, 0))) for t in terms}
    bags = [set(tokenize(c.chunk.index_text)) for c in chunks]
    sentences = [set(tokenize(s)) for c in chunks for unit in extractive.split_units(c.chunk.text)
                 for s in _SENTENCE_END.split(unit.text) if s.strip()]
    pairs = list(zip(terms, terms[1:]))

    def pair_share(bags_: list[set[str]]) -> float:
        total = sum(idf[a] + idf[b] for a, b in pairs)
        held = sum(idf[a] + idf[b] for a, b in pairs if any(a in bag and b in bag for bag in bags_))
        return held / total if total else 1.0

    held_terms = [t for t in terms if df.get(t, 0)]
    rarest = max(held_terms, key=idf.__getitem__) if held_terms else None
    dense_of = dict(retriever._dense(retriever.queries.embed_query(question), 200, None))
    floor = min(dense_of.values(), default=0.0)
    joint = max(abstention.DENSE_WEIGHT * dense_of.get(c.chunk.chunk_id, floor)
                + abstention.KEYWORD_WEIGHT * abstention.keyword_evidence(question, [c], n, df)
                for c in chunks[: abstention.KEYWORD_CHUNKS])
    sentence = extractive.best_sentence_similarity(question, chunks, engine.answerer.sentences)
    score = verdict.score
    if verdict.needs_sentence(engine.settings.abstain_threshold):
        score = abstention.reconsider(verdict, sentence, threshold=engine.settings.abstain_threshold).score
    headings = [f"{c.chunk.title} {c.chunk.location}" for c in chunks[:3]]
    vectors = engine.answerer.sentences([question, *headings])
    return {
        "score": score,
        "heading_similarity": float(max(vectors[1:] @ vectors[0])),
        "pair_chunk": pair_share(bags[:3]),
        "pair_sentence": pair_share(sentences),
        "rarest_held": float(rarest is not None and any(rarest in bag for bag in bags[:3])),
        "keyword_minus_dense": verdict.keyword - verdict.dense,
        "one_chunk_loss": abstention.DENSE_WEIGHT * verdict.dense + abstention.KEYWORD_WEIGHT * verdict.keyword - joint,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sets", type=Path, nargs="+", help="answer set folders (already run by answer_quality.py)")
    args = parser.parse_args()
    rows: list[tuple[str, str, bool, dict[str, float]]] = []
    for folder in args.sets:
        data_dir = ROOT / "data" / "answer_quality" / folder.name
        if not (data_dir / "bm25_index").exists():
            sys.exit(f"{folder.name}: no index in {data_dir}; run benchmarks/answer_quality.py {folder} first")
        _, _, questions = load_set(folder, None)
        engine = Engine(RagSettings(data_dir=data_dir))
        for q in questions:
            figures = measure(engine, q.text)
            if figures is not None:
                rows.append((folder.name, q.text, q.covered, figures))
    threshold = RagSettings().abstain_threshold
    missed = [r for r in rows if not r[2] and r[3]["score"] >= threshold]
    answerable = [r for r in rows if r[2]]
    print(f"{len(answerable)} answerable questions, {len(rows) - len(answerable)} not covered, "
          f"{len(missed)} of these answered: {[m[1] for m in missed]}")
    for name, sign in SIGNALS.items():
        if not missed:
            break
        # A threshold declines every missed question without an answerable one iff no answerable question is
        # at least as far on the decline side as the least extreme missed one.
        edge = min(sign * m[3][name] for m in missed)
        caught = sorted(((round(r[3][name], 3), f"{r[0]}: {r[1]}") for r in answerable if sign * r[3][name] >= edge),
                        reverse=sign > 0)
        each = [sum(sign * r[3][name] >= sign * m[3][name] for r in answerable) for m in missed]
        print(f"\n{name} ({'higher' if sign > 0 else 'lower'} = not covered): missed "
              f"{[round(m[3][name], 3) for m in missed]}; answerable as far or further than each {each}, "
              f"than all {len(caught)}{' -> separates' if not caught else ''}")
        for value, text in caught[:5]:
            print(f"  {value:7.3f}  {text}")


if __name__ == "__main__":
    main()
