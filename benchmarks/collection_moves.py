"""How long the console's bulk move takes: N documents (4 chunks each) moved to another collection.

    .venv/bin/python benchmarks/collection_moves.py [--documents 500]

A fresh SQLite file and data folder; the documents are indexed with the tests' hashing embedder (the
move never embeds, so the model does not matter), then moved through the real page
(`POST /console/documents/move`, as staff), which re-labels their chunks in Chroma and the keyword index.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lorebot-bench-") as tmp:
        os.environ["RAG_DATA_DIR"] = tmp
        os.environ.pop("DATABASE_URL", None)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
        os.environ.setdefault("LOG_LEVEL", "WARNING")
        import django

        django.setup()
        from django.conf import settings
        from django.contrib.auth import get_user_model
        from django.core.management import call_command
        from django.test import Client

        from console.engine import set_engine
        from console.models import Collection, Document
        from ragcore.ingest import IngestRequest
        from ragcore.logsetup import quiet_cli_logging
        from tests.support import make_engine

        quiet_cli_logging()
        settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
        call_command("migrate", verbosity=0)
        engine = make_engine(Path(tmp) / "index")
        set_engine(engine)
        source, target = Collection.create("Source"), Collection.create("Target")
        folder = Path(tmp) / "docs"
        folder.mkdir()
        requests, pks = [], []
        for i in range(args.documents):
            doc = Document.objects.create(checksum=f"{i:064d}", original_filename=f"d{i}.md", status="indexed",
                                          collection=source, chunk_count=4)
            path = folder / f"d{i}.md"
            path.write_text("\n\n".join(f"# Part {j}\n\n" + f"word{i} topic{j} " * 60 for j in range(4)))
            requests.append(IngestRequest(path, document_id=doc.engine_id, collection=source.key))
            pks.append(doc.pk)
        engine.ingest_files(requests)
        client = Client()
        client.force_login(get_user_model().objects.create_user("bench", is_staff=True))
        load = os.getloadavg()[0]
        started = time.perf_counter()
        response = client.post("/console/documents/move", {"documents": pks, "collection": target.pk})
        seconds = time.perf_counter() - started
        assert response.status_code == 302, response.status_code
        moved = Document.objects.filter(collection=target).count()
        print(f"{moved:,} documents moved in {seconds:.2f} s ({seconds / max(moved, 1) * 1000:.1f} ms each) · "
              f"load average {load:.1f} · {engine.document_status(f'doc-{pks[0]}').sparse_chunks} chunks each")


if __name__ == "__main__":
    main()
