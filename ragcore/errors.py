"""Every error the engine raises on purpose; each message names what failed and why."""

from __future__ import annotations


class RagError(Exception):
    """Base of the engine's errors. `transient` says whether retrying may succeed."""

    transient = False


class LoaderError(RagError):
    """A file could not be turned into text; the message names the file and the reason."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


class FileMissing(LoaderError):
    pass


class FileTooLarge(LoaderError):
    pass


class EmptyFile(LoaderError):
    pass


class UnsupportedType(LoaderError):
    pass


class CorruptFile(LoaderError):
    pass


class NoExtractableText(LoaderError):
    pass


class IndexMismatch(RagError):
    """The indexes on disk were built by another embedding model."""


class ExportError(RagError):
    """The embedding model could not be exported to (or found in) ONNX; the message says why."""


class StoreUnavailable(RagError):
    """The vector store could not be reached (a Chroma server that is down, say)."""

    transient = True


class KeywordIndexUnavailable(RagError):
    """The keyword index's shared storage (PostgreSQL) could not be reached; the message names where."""

    transient = True


class GenerationError(RagError):
    """The LLM failed: timeout, rate limit, server error, broken stream."""

    transient = True

    def __init__(self, message: str, *, code: str = "llm_error") -> None:
        self.code = code
        super().__init__(message)
