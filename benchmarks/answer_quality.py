"""Answer quality: does the answer state the fact, cite the right source, number citations without
gaps, render cleanly, and decline what the documents do not cover?

    .venv/bin/python benchmarks/answer_quality.py benchmarks/answer_sets/lorebot
    .venv/bin/python benchmarks/answer_quality.py benchmarks/answer_sets/python --docs /usr/share/doc/python3.11-doc/html
    .venv/bin/python benchmarks/answer_quality.py SET --llm       # also with the LLM from LLM_* / GROQ_* variables
    .venv/bin/python benchmarks/answer_quality.py SET --calibrate # decline precision/recall per abstention threshold
    .venv/bin/python benchmarks/answer_quality.py SET --show-misses  # only the answers that miss, and why

A set is a folder with `questions.jsonl` and `set.json` (`{"docs": "...", "files": [...]}`: the documentation
folder and the files of it to ingest; benchmarks/answer_sets/README.md says where each comes from). Each
question line is `{"q": ..., "facts": [...], "source": "file name"}` (or a list of names, any of which is right)
for an answerable question, or
`{"q": ..., "covered": false}`. A fact is a string the answer must contain (case and spacing ignored), or a
list of alternatives. The index is kept in `--data-dir` (default data/answer_quality/<set>), so a second
run embeds nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from common import ROOT, percentile

from ragcore import Engine, RagSettings, abstention, extractive
from ragcore.citations import cited_numbers, numbering_gaps
from ragcore.engine import IngestRequest
from ragcore.extractive import markup_problems
from ragcore.types import DoneEvent, TokenEvent


@dataclass(frozen=True)
class Question:
    text: str
    facts: tuple[tuple[str, ...], ...] = ()  # each fact: alternatives, one of which must appear
    sources: tuple[str, ...] = ()  # file names, any of which is a right source
    covered: bool = True


@dataclass
class Outcome:
    question: Question
    answer: str
    sources: list[str]
    not_covered: bool
    ttft_ms: float
    gaps: bool
    score: float | None  # the abstention evidence score the decision compares with the threshold
    markup: list[str] = field(default_factory=list)  # what would render broken (ragcore.extractive.markup_problems)
    dense: float | None = None
    keyword: float = 0.0
    sentence: float | None = None
    unheld: float = 0.0

    def evidence(self) -> str:
        """The score and the signals it is made of, as --show prints them."""
        if self.score is None:
            return "no score"
        parts = [f"score {self.score:.3f}"]
        if self.dense is not None:
            parts.append(f"chunk {self.dense:.3f}")
        if self.sentence is not None:
            parts.append(f"sentence {self.sentence:.3f}")
        parts.append(f"keyword {self.keyword:.3f}")
        if self.unheld:
            parts.append(f"unheld {self.unheld:.2f}")
        return ", ".join(parts)

    @property
    def states_fact(self) -> bool:
        text = _flat(self.answer)
        return not self.not_covered and all(any(_flat(alt) in text for alt in fact) for fact in self.question.facts)

    @property
    def cites_source(self) -> bool:
        return not self.not_covered and any(Path(s).name in self.question.sources for s in self.sources)


@dataclass
class Report:
    mode: str
    outcomes: list[Outcome] = field(default_factory=list)

    def figures(self) -> dict[str, object]:
        answerable = [o for o in self.outcomes if o.question.covered]
        uncovered = [o for o in self.outcomes if not o.question.covered]
        declined = [o for o in self.outcomes if o.not_covered]
        correct_declines = [o for o in declined if not o.question.covered]
        ttft = [o.ttft_ms for o in self.outcomes]
        return {
            "mode": self.mode,
            "questions": len(self.outcomes),
            "answerable": len(answerable),
            "not_covered": len(uncovered),
            "fact_stated": _share(sum(o.states_fact for o in answerable), len(answerable)),
            "right_source": _share(sum(o.cites_source for o in answerable), len(answerable)),
            "numbering_gaps": sum(o.gaps for o in self.outcomes),
            "broken_markup": sum(bool(o.markup) for o in self.outcomes),
            "decline_precision": _share(len(correct_declines), len(declined)),
            "decline_recall": _share(len(correct_declines), len(uncovered)),
            "wrongly_declined": _share(len(declined) - len(correct_declines), len(answerable)),
            "ttft_p50_ms": round(percentile(ttft, 50), 1),
            "ttft_p95_ms": round(percentile(ttft, 95), 1),
        }


def _flat(text: str) -> str:
    return " ".join(re.sub(r"[`*_]", "", text).lower().split())


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 3) if whole else None


def load_set(folder: Path, docs_override: str | None) -> tuple[Path, list[Path], list[Question]]:
    """The documentation folder, the files to ingest and the questions of an answer set."""
    meta = json.loads((folder / "set.json").read_text())
    docs = Path(docs_override or os.path.expandvars(meta["docs"]))
    if not docs.is_absolute():
        docs = ROOT / docs
    files = [docs / f for f in meta["files"]] if meta.get("files") else sorted(p for p in docs.rglob("*") if p.is_file())
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        sys.exit(f"{folder.name}: missing documentation files (see benchmarks/answer_sets/README.md): {missing[:3]}")
    questions = []
    for number, line in enumerate((folder / "questions.jsonl").read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            facts = tuple(tuple(f) if isinstance(f, list) else (f,) for f in raw.get("facts", []))
            source = raw.get("source", [])
            sources = tuple(source) if isinstance(source, list) else (source,)
            questions.append(Question(raw["q"], facts, sources, raw.get("covered", True)))
        except (ValueError, KeyError, TypeError) as exc:
            sys.exit(f"{folder / 'questions.jsonl'} line {number}: {type(exc).__name__}: {exc}")
    return docs, files, questions


def ask(engine: Engine, question: Question) -> Outcome:
    """One question through `Engine.stream`, exactly as every surface asks it."""
    started = time.perf_counter()
    ttft = None
    answer = None
    for event in engine.stream(question.text):
        if isinstance(event, TokenEvent) and ttft is None:
            ttft = (time.perf_counter() - started) * 1000
        elif isinstance(event, DoneEvent):
            answer = event.answer
    assert answer is not None, f"no answer for {question.text!r}"
    shown = [c.n for c in answer.citations]
    gaps = numbering_gaps(answer.text) or shown != cited_numbers(answer.text)
    retrieval = engine.retrieve(question.text)
    verdict = retrieval.verdict
    if verdict is None:
        return Outcome(question, answer.text, [c.source for c in answer.citations], answer.not_covered,
                       ttft or 0.0, gaps, None, markup_problems(answer.text))
    sentence = None
    score = verdict.score
    if verdict.reason in ("covered", "weak_evidence") and verdict.dense is not None:
        # The score with the closest sentence scored: at any threshold the answer's decision is this score's
        # (the engine scores the sentence only when it could change the decision, `Verdict.needs_sentence`).
        sentence = extractive.best_sentence_similarity(question.text, retrieval.chunks, engine.answerer.sentences)
        score = abstention.evidence(verdict.dense, sentence, verdict.keyword, verdict.unheld)
    return Outcome(question, answer.text, [c.source for c in answer.citations], answer.not_covered,
                   ttft or 0.0, gaps, score, markup_problems(answer.text),
                   verdict.dense, verdict.keyword, sentence, verdict.unheld)


def calibrate(outcomes: list[Outcome]) -> None:
    """Decline precision and recall, and answerable questions wrongly declined, per threshold
    (`RAG_ABSTAIN_THRESHOLD`), with the evidence as `ragcore.abstention` weighs it."""
    print("threshold  decline_recall  wrongly_declined  decline_precision")
    for step in range(30, 71, 2):
        threshold = step / 100
        declined = [o for o in outcomes if o.score is not None and o.score < threshold]
        right = sum(not o.question.covered for o in declined)
        uncovered = sum(not o.question.covered for o in outcomes) or 1
        answerable = sum(o.question.covered for o in outcomes) or 1
        print(f"{threshold:9.2f}  {right / uncovered:14.3f}  {(len(declined) - right) / answerable:16.3f}  "
              f"{right / len(declined) if declined else float('nan'):17.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("set", type=Path, help="an answer set folder (questions.jsonl, set.json)")
    parser.add_argument("--docs", help="the documentation folder, instead of the one set.json names")
    parser.add_argument("--data-dir", type=Path, help="where the set's index is kept")
    parser.add_argument("--llm", action="store_true", help="also run with the LLM configured in the environment")
    parser.add_argument("--calibrate", action="store_true", help="print decline figures per abstention threshold")
    parser.add_argument("--show", action="store_true", help="print each question's answer and verdict")
    parser.add_argument("--show-misses", action="store_true",
                        help="print only the answers that miss (fact, source, decline, numbering or markup)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    docs, files, questions = load_set(args.set, args.docs)
    data_dir = args.data_dir or ROOT / "data" / "answer_quality" / args.set.name
    # Only the offline knobs here: the extractive run must never reach a model by accident.
    base = RagSettings(data_dir=data_dir)
    engine = Engine(base)
    started = time.perf_counter()
    results = engine.ingest_files([IngestRequest(f, source=str(f.relative_to(docs))) for f in files])
    failed = [r for r in results if r.status == "failed"]
    print(f"# {args.set.name}: {len(files)} files from {docs}, {sum(r.chunks for r in results)} chunks written, "
          f"{len(failed)} failed, {time.perf_counter() - started:.1f} s", file=sys.stderr)
    for r in failed:
        print(f"#   failed {r.source}: {r.error}", file=sys.stderr)
    engine.answer("warm up")  # the model is loaded before the first timed question

    modes = [("extractive", engine)]
    if args.llm:
        llm = RagSettings.from_env().with_changes(data_dir=data_dir)
        if not llm.llm_enabled:
            sys.exit("--llm needs LLM_PROVIDER=openai (LLM_BASE_URL, LLM_MODEL) or GROQ_API_KEY in the environment")
        modes.append((f"llm:{llm.provider}", Engine(llm, embedder=engine.embedder)))
    reports = []
    for mode, mode_engine in modes:
        report = Report(mode, [ask(mode_engine, q) for q in questions])
        reports.append(report)
        if args.show or args.show_misses:
            for o in report.outcomes:
                good = (o.states_fact and o.cites_source) if o.question.covered else o.not_covered
                good = good and not o.gaps and not o.markup
                if args.show_misses and good:
                    continue
                print(f"\n[{'ok ' if good else 'BAD'}] {o.question.text}  ({o.evidence()}, declined {o.not_covered}, "
                      f"sources {o.sources}{', numbering gaps' if o.gaps else ''}"
                      f"{', markup: ' + '; '.join(o.markup) if o.markup else ''})\n{o.answer}")
        if args.calibrate:
            calibrate(report.outcomes)
    figures = [r.figures() for r in reports]
    if args.json:
        print(json.dumps({"set": args.set.name, "results": figures}, indent=2))
        return
    print(f"\nanswer set {args.set.name}: {len(questions)} questions")
    for f in figures:
        print(f"{f['mode']:>14}: fact stated {f['fact_stated']}, right source {f['right_source']}, "
              f"numbering gaps {f['numbering_gaps']}, broken markup {f['broken_markup']}, decline precision {f['decline_precision']} "
              f"recall {f['decline_recall']}, wrongly declined {f['wrongly_declined']}, "
              f"first token p50 {f['ttft_p50_ms']} ms p95 {f['ttft_p95_ms']} ms")


if __name__ == "__main__":
    main()
