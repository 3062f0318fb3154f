"""The ONNX encoders: the same vectors and token counts as torch, a fallback, and the backend in the index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ragcore import Engine, RagSettings
from ragcore.embeddings import ConfiguredEmbedder, backend_name, shared_embedder
from ragcore.errors import IndexMismatch
from ragcore.metrics import PIPELINE_ERRORS
from tests.support import captured_logs

pytestmark = pytest.mark.slow

SENTENCES = [
    "How do I roll back a release?",
    "Releases go out every Tuesday after the change review; hotfixes can go out any day.",
    "The on-call engineer is paged through the #incidents channel.",
    "Zebrafish embryos regenerate heart tissue after cryoinjury.",
    "def rollback(tag: str) -> None:\n    run('deploy', '--tag', tag)",
]
# Accents, CJK, emoji, control characters, URLs and a text longer than the model's window:
# token counts decide where chunks are cut, so they must be exactly torch's.
AWKWARD = [
    "",
    "Crème brûlée, naïve café, Ångström, straße",
    "東京の天気は晴れです。北京欢迎你",
    "deploy 🚀 done ✅\tnext\x00line",
    "https://example.com/a/b?c=d&e=f#frag mixed-CASE_words 3.14159 1e-9",
    "word " * 600,
]


@pytest.fixture(scope="session")
def onnx_fp32() -> ConfiguredEmbedder:
    embedder = shared_embedder(backend="onnx")
    embedder.embed_query("load")
    return embedder


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_the_int8_encoder_gives_torchs_vectors_within_0_98_cosine(real_embedder: ConfiguredEmbedder,
                                                                    torch_embedder: object) -> None:
    assert real_embedder.backend == "onnx-int8"
    got, expected = real_embedder.embed(SENTENCES), torch_embedder.embed(SENTENCES)  # type: ignore[attr-defined]
    assert got.shape == expected.shape == (len(SENTENCES), 384) and got.dtype == np.float32
    assert cosines(got, expected).min() >= 0.98
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)  # normalized, as the model's config says


def test_the_fp32_encoder_gives_torchs_vectors(onnx_fp32: ConfiguredEmbedder, torch_embedder: object) -> None:
    got, expected = onnx_fp32.embed(SENTENCES), torch_embedder.embed(SENTENCES)  # type: ignore[attr-defined]
    assert cosines(got, expected).min() >= 0.9999


def test_a_text_gets_the_same_vector_alone_and_among_others(real_embedder: ConfiguredEmbedder) -> None:
    batch = real_embedder.embed(SENTENCES)
    alone = np.stack([real_embedder.embed_query(s) for s in SENTENCES])
    assert np.allclose(batch, alone, atol=1e-6)  # a vector never depends on its neighbours
    assert real_embedder.embed([]).shape == (0, 384)


def test_token_counts_and_window_are_exactly_torchs(real_embedder: ConfiguredEmbedder, torch_embedder: object) -> None:
    texts = SENTENCES + AWKWARD
    assert real_embedder.count_tokens(texts) == torch_embedder.count_tokens(texts)  # type: ignore[attr-defined]
    assert real_embedder.count_tokens(["word " * 600]) == [600]  # untruncated
    assert real_embedder.max_tokens == torch_embedder.max_tokens == 254  # type: ignore[attr-defined]
    assert real_embedder.dimension == torch_embedder.dimension == 384  # type: ignore[attr-defined]


def test_each_backend_has_its_own_name_and_torch_keeps_the_old_one(real_embedder: ConfiguredEmbedder,
                                                                     onnx_fp32: ConfiguredEmbedder,
                                                                     torch_embedder: object) -> None:
    assert real_embedder.name == "all-MiniLM-L6-v2 [onnx-int8]"
    assert onnx_fp32.name == "all-MiniLM-L6-v2 [onnx]"
    assert torch_embedder.name == backend_name("", "torch") == "all-MiniLM-L6-v2"  # type: ignore[attr-defined]


def test_a_new_embedder_finds_the_export_again_without_exporting(real_embedder: ConfiguredEmbedder) -> None:
    fresh = ConfiguredEmbedder(backend="onnx-int8")  # as another process, or another data folder's engine
    with captured_logs() as logs:
        fresh.embed_query("load")
    assert fresh.impl.onnx_file == real_embedder.impl.onnx_file  # type: ignore[attr-defined]
    assert [e["event"] for e in logs] == ["embedder.loaded"]


def test_a_failed_export_falls_back_to_torch_and_says_so_once(tmp_path: Path, torch_embedder: object) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    before = PIPELINE_ERRORS.labels("embedder")._value.get()
    embedder = ConfiguredEmbedder(backend="onnx-int8", cache_dir=blocker / "onnx")
    with captured_logs() as logs:
        vectors = embedder.embed(SENTENCES[:2])
        embedder.embed_query("again")
        assert embedder.name == "all-MiniLM-L6-v2"
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 1 and warnings[0]["event"] == "embedder.onnx_unavailable"
    assert str(blocker) in warnings[0]["reason"] and warnings[0]["fallback"] == "torch"
    assert embedder.backend == "torch" and str(blocker) in embedder.fallback_reason
    assert PIPELINE_ERRORS.labels("embedder")._value.get() == before + 1
    assert np.allclose(vectors, torch_embedder.embed(SENTENCES[:2]), atol=1e-5)  # type: ignore[attr-defined]


def test_an_unknown_backend_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="RAG_EMBEDDING_BACKEND.*onnx-int8"):
        ConfiguredEmbedder(backend="tensorflow")
    with pytest.raises(ValueError, match="embedding_backend"):
        RagSettings(embedding_backend="tensorflow")


def test_the_index_records_the_backend_and_a_switch_asks_for_a_reindex(
        tmp_path: Path, real_embedder: ConfiguredEmbedder, torch_embedder: object) -> None:
    doc = tmp_path / "deploy.md"
    doc.write_text("# Rollback\n\nTo roll back a release, run the rollback pipeline with the previous tag.\n")
    settings = RagSettings(data_dir=tmp_path / "data", index_refresh_seconds=0.0)
    assert Engine(settings, embedder=torch_embedder).ingest_file(doc).status == "indexed"  # type: ignore[arg-type]
    switched = Engine(settings, embedder=real_embedder)
    with pytest.raises(IndexMismatch) as error:
        switched.store.count()
    message = str(error.value)
    assert "built with all-MiniLM-L6-v2 (384" in message
    assert "all-MiniLM-L6-v2 [onnx-int8]" in message and "--reindex" in message
    switched.reset_indexes()  # what `ingest --reindex` does first
    assert switched.ingest_file(doc).status == "indexed"
    assert switched.retrieve("how do I roll back a release", mode="dense").chunks


@pytest.mark.timeout(900)
def test_a_missing_export_is_made_on_first_use_with_a_progress_message(tmp_path: Path) -> None:
    embedder = ConfiguredEmbedder(backend="onnx-int8", cache_dir=tmp_path / "onnx")
    with captured_logs() as logs:
        vector = embedder.embed_query("How do I roll back a release?")
    assert embedder.backend == "onnx-int8", embedder.fallback_reason
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["embedder.onnx_export_started"]
    assert len(list((tmp_path / "onnx").glob("*/model.int8.onnx"))) == 1
    assert len(list((tmp_path / "onnx").glob("*/model.onnx"))) == 1
    assert vector.shape == (384,)
