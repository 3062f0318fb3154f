"""`manage.py ingest` and `manage.py ask`, run as a user runs them."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "docs"

# `ask` runs the chat service, whose ORM calls use pool threads' own connections.
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def lines_starting(text: str, word: str) -> int:
    return sum(1 for line in text.splitlines() if line.startswith(word + " "))


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    shutil.copytree(SAMPLES, folder)
    return folder


def test_ingest_reports_each_file_and_skips_unchanged_ones(data_dir: Path, corpus: Path) -> None:
    first = run("ingest", str(corpus))
    assert lines_starting(first, "indexed") == len(list(corpus.iterdir()))
    assert "chunks written" in first
    second = run("ingest", str(corpus))
    assert lines_starting(second, "unchanged") == len(list(corpus.iterdir()))


def test_ingest_names_each_failed_file_and_exits_with_an_error(data_dir: Path, corpus: Path) -> None:
    (corpus / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    (corpus / "empty.md").write_bytes(b"")
    out = io.StringIO()
    with pytest.raises(CommandError, match="3 failed"):  # broken.pdf, empty.md, nope.txt
        call_command("ingest", str(corpus), str(corpus / "nope.txt"), stdout=out, stderr=io.StringIO())
    text = out.getvalue()
    assert "broken.pdf" in text and "empty.md" in text
    assert "nope.txt" in text
    assert lines_starting(text, "indexed") == len(list(corpus.iterdir())) - 2  # broken.pdf and empty.md


def test_ask_json_prints_the_answer_with_numbered_citations(data_dir: Path, corpus: Path) -> None:
    run("ingest", str(corpus))
    answer = json.loads(run("ask", "How do I configure the Groq API key?", "--json"))
    assert set(answer) >= {"answer", "citations", "provider", "model", "retrieval_ms", "generation_ms", "usage"}
    assert answer["retrieval_ms"] > 0
    assert answer["provider"] == "extractive"
    assert answer["citations"], answer
    first = answer["citations"][0]
    assert set(first) == {"n", "document_id", "title", "source", "location", "snippet", "chunk_id",
                          "origin_url", "synced_at"}
    assert first["source"] in {p.name for p in corpus.iterdir()}  # the folder-relative path, never a server path
    assert f"[{first['n']}]" in answer["answer"]
    assert any("GROQ_API_KEY" in c["snippet"] for c in answer["citations"])


def test_ask_streams_the_answer_then_lists_the_sources(data_dir: Path, corpus: Path) -> None:
    run("ingest", str(corpus))
    out = run("ask", "Which file types can I upload?")
    assert "Sources:" in out
    assert "[1]" in out


def test_ask_is_stored_as_a_cli_conversation_that_can_be_continued(data_dir: Path, corpus: Path) -> None:
    from console.models import Conversation

    run("ingest", str(corpus))
    first = json.loads(run("ask", "How do I configure the Groq API key?", "--json"))
    run("ask", "and what is its default model?", "--conversation", first["conversation"], "--json")
    conversation = Conversation.objects.get(surface="cli", external_key=first["conversation"])
    assert [m.role for m in conversation.messages.all()] == ["user", "assistant", "user", "assistant"]
    assert conversation.messages.last().retrieval_mode == "context"


def test_ask_can_force_the_keyword_retriever(data_dir: Path, corpus: Path) -> None:
    run("ingest", str(corpus))
    answer = json.loads(run("ask", "GROQ_API_KEY", "--mode", "bm25", "--json"))
    assert answer["mode"] == "bm25" and answer["citations"]
