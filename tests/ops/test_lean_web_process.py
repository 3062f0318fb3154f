"""A web process on the default ONNX int8 encoder never imports torch, transformers or sentence-transformers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support import DEPLOY

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers", "sentence_transformers")

# What a daphne process does: load the ASGI app, warm the engine up, then ingest and answer.
SCRIPT = textwrap.dedent("""
    import json, sys
    import django
    django.setup()
    import console.asgi  # the web application, as daphne loads it
    from console.engine import get_engine
    engine = get_engine()
    engine.warmup()
    result = engine.ingest_file(sys.argv[1])
    answer = engine.answer("How do I roll back a release?")
    print(json.dumps({
        "status": result.status, "answer": answer.text, "cited": sorted({c.title for c in answer.citations}),
        "embedder": engine.embedder.name, "backend": engine.embedder.backend,
        "heavy": sorted(m for m in sys.modules if m.split(".")[0] in sys.argv[2].split(",")),
    }))
""")


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnx-int8", "onnx"])
def test_a_web_process_on_onnx_answers_without_torch(tmp_path: Path, backend: str) -> None:
    doc = tmp_path / "deploy.md"
    doc.write_text(DEPLOY)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "console.settings", "RAG_DATA_DIR": str(tmp_path / "data"),
           "RAG_EMBEDDING_BACKEND": backend, "WARMUP_ON_START": "False"}
    env.pop("DATABASE_URL", None)
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(doc), ",".join(HEAVY)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["backend"] == backend and report["embedder"] == f"all-MiniLM-L6-v2 [{backend}]"
    assert report["status"] == "indexed" and report["cited"] == ["Deployment"]
    assert "rollback pipeline" in report["answer"]
    assert report["heavy"] == []
