"""Plain dataclasses that flow through the engine: documents, chunks, answers, events."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_COLLECTION = "default"
"""The collection of a chunk nobody put anywhere else (and of every chunk indexed before collections)."""


@dataclass(frozen=True)
class Section:
    """A run of text and where it sits in its document ("page 4", "§ Installation")."""

    text: str
    location: str = ""


@dataclass(frozen=True)
class ParsedDocument:
    """What a loader makes of a file: a title, the detected kind, and located sections."""

    title: str
    kind: str
    sections: tuple[Section, ...]

    @property
    def text(self) -> str:
        return "\n\n".join(s.text for s in self.sections)


def chunk_id_for(document_id: str, position: int) -> str:
    """A chunk's id: stable, so a re-ingest replaces rather than adds, and a delete needs no lookup."""
    return f"{document_id}:{position}"


@dataclass(frozen=True)
class Chunk:
    """A piece of a document small enough for the embedding model's window."""

    chunk_id: str
    document_id: str
    position: int
    text: str
    title: str = ""
    source: str = ""
    location: str = ""
    checksum: str = ""
    collection: str = DEFAULT_COLLECTION  # who may see it: retrieval filters on this key

    @property
    def index_text(self) -> str:
        """The text both indexes see: the title and location give a chunk its context."""
        header = " › ".join(p for p in (self.title, self.location) if p)
        return f"{header}\n{self.text}" if header else self.text


@dataclass(frozen=True)
class ScoredChunk:
    chunk: Chunk
    score: float


@dataclass(frozen=True)
class Citation:
    n: int
    document_id: str
    title: str
    source: str
    location: str
    snippet: str
    chunk_id: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "n": self.n,
            "document_id": self.document_id,
            "title": self.title,
            "source": self.source,
            "location": self.location,
            "snippet": self.snippet,
            # "<document_id>:<position>": the source viewer highlights this exact passage.
            "chunk_id": self.chunk_id,
        }


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}


@dataclass(frozen=True)
class Turn:
    """One earlier message of a conversation, used as context for follow-ups."""

    role: str  # "user" or "assistant"
    text: str


@dataclass(frozen=True)
class Answer:
    text: str
    citations: tuple[Citation, ...]
    provider: str
    model: str
    mode: str = "hybrid"
    retrieval_ms: float = 0.0
    generation_ms: float = 0.0
    usage: Usage = field(default_factory=Usage)
    extractive: bool = False
    fallback_reason: str = ""
    fallback_detail: str = ""  # the fallback in words ("Could not connect to Groq at …"), key-free
    not_covered: bool = False  # the documents do not answer it: declined, or the model said so

    def to_dict(self) -> dict[str, object]:
        return {
            "answer": self.text,
            "citations": [c.to_dict() for c in self.citations],
            "provider": self.provider,
            "model": self.model,
            "mode": self.mode,
            "extractive": self.extractive,
            "fallback_reason": self.fallback_reason,
            "fallback_detail": self.fallback_detail,
            "not_covered": self.not_covered,
            "retrieval_ms": round(self.retrieval_ms, 1),
            "generation_ms": round(self.generation_ms, 1),
            "usage": self.usage.to_dict(),
        }


@dataclass(frozen=True)
class TokenEvent:
    text: str
    type: str = "token"


@dataclass(frozen=True)
class CitationsEvent:
    citations: tuple[Citation, ...]
    type: str = "citations"


@dataclass(frozen=True)
class DoneEvent:
    answer: Answer
    type: str = "done"


@dataclass(frozen=True)
class ErrorEvent:
    """A failure. Fatal ones end the stream; others (LLM cut off, fallback follows) do not."""

    code: str
    message: str
    fatal: bool = True
    type: str = "error"


Event = TokenEvent | CitationsEvent | DoneEvent | ErrorEvent
