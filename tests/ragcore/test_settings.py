"""RagSettings: validation, and from_env reading the variables the README documents."""

from __future__ import annotations

import pytest

from ragcore.settings import MB, RagSettings


def test_from_env_reads_the_documented_variables() -> None:
    settings = RagSettings.from_env({"RAG_MAX_FILE_MB": "5", "RAG_TOP_K": "3", "RAG_FUSION": "rrf",
                                     "GROQ_API_KEY": "gsk-x", "CHROMA_URL": "http://127.0.0.1:8001"})
    assert settings.max_file_bytes == 5 * MB
    assert (settings.top_k, settings.fusion, settings.groq_api_key) == (3, "rrf", "gsk-x")
    assert settings.chroma_url == "http://127.0.0.1:8001"


@pytest.mark.parametrize("env", [{"RAG_TOP_K": "three"}, {"RAG_MAX_FILE_MB": "big"}, {"RAG_FUSION": "max"}, {"RAG_TOP_K": "0"}])
def test_a_bad_value_is_a_clear_error_naming_it(env: dict[str, str]) -> None:
    with pytest.raises(ValueError, match=r"RAG_|RagSettings\."):
        RagSettings.from_env(env)
