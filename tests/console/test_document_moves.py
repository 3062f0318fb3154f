"""Moving documents between collections from the console: the document page, the documents list's bulk move,
and a source's collection; both indexes follow, and the real `ask` path finds each document where it now is."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.urls import reverse

from console.models import Collection, Document, Source
from console.syncing import runs, service
from ragcore import Engine
from tests.console.test_collections_console import csrf_client, post
from tests.support import process_engine

# `ask` answers through the chat service, whose ORM calls run on other threads: committed rows only.
pytestmark = pytest.mark.django_db(transaction=True)

LEDGER = "# Quarterly ledger\n\nThe quarterly ledger closes with the walrus reconciliation on the fifth.\n"
CONTRACT = "# Vendor contract\n\nThe vendor contract renews with the pelican clause every April.\n"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    with process_engine(tmp_path / "data") as built:
        yield built


@pytest.fixture
def world(engine: Engine) -> dict[str, Any]:
    """Two restricted collections, a member of each, and staff."""
    User = get_user_model()
    out: dict[str, Any] = {"staff": User.objects.create_user("alice", is_staff=True)}
    for name in ("Finance", "Legal"):
        collection = Collection.create(name, visibility=Collection.Visibility.GROUPS)
        group = Group.objects.create(name=name)
        collection.groups.add(group)
        member = User.objects.create_user(name.lower() + "-member")
        member.groups.add(group)
        out[name.lower()], out[f"{name.lower()}_member"] = collection, member
    return out


def plant(engine: Engine, tmp_path: Path, collection: Collection, name: str, text: str) -> Document:
    doc = Document.objects.create(checksum=name.ljust(64, "0")[:64], original_filename=name, kind="markdown",
                                  status=Document.Status.INDEXED, collection=collection, chunk_count=1)
    path = tmp_path / name
    path.write_text(text)
    engine.ingest_file(path, document_id=doc.engine_id, title=name, collection=collection.key)
    return doc


def cited(question: str, user: Any) -> set[str]:
    """The document ids `manage.py ask --as USER` cites for `question`."""
    out = io.StringIO()
    call_command("ask", question, "--json", "--as", user.get_username(), stdout=out)
    return {c["document_id"] for c in json.loads(out.getvalue())["citations"]}


def labels(engine: Engine, doc: Document) -> tuple[str, set[str], set[str]]:
    """Its chunk's collection in the dense store, and which collections each index finds it under."""
    chunk = engine.store.get_chunks([f"{doc.engine_id}:0"])[f"{doc.engine_id}:0"]
    where: dict[str, set[str]] = {"bm25": set(), "dense": set()}
    for mode in where:
        for key in ("finance", "legal", "default"):
            ranked, _ = engine.search("walrus reconciliation", mode=mode, collections={key})
            if any(cid.startswith(f"{doc.engine_id}:") for cid, _ in ranked):
                where[mode].add(key)
    return chunk.collection, where["bm25"], where["dense"]


def test_a_document_moved_from_its_page_is_found_only_by_those_who_may_see_its_new_collection(
        engine: Engine, world: dict[str, Any], tmp_path: Path) -> None:
    doc = plant(engine, tmp_path, world["finance"], "ledger.md", LEDGER)
    # Two more documents: with fewer, a word in one document has BM25 idf <= 0 and the keyword index finds nothing.
    plant(engine, tmp_path, Collection.default(), "contract.md", CONTRACT)
    plant(engine, tmp_path, Collection.default(), "lunch.md", "# Lunch\n\nThe canteen serves soup on Mondays.\n")
    question = "When does the quarterly ledger close with the walrus reconciliation?"
    assert doc.engine_id in cited(question, world["finance_member"])
    assert doc.engine_id not in cited(question, world["legal_member"])
    assert labels(engine, doc) == ("finance", {"finance"}, {"finance"})

    client = csrf_client(world["staff"])
    page = client.get(reverse("console:document", args=[doc.pk]))
    assert 'data-move-form' in page.content.decode() and "Finance" in page.content.decode()
    response = post(client, reverse("console:document-move", args=[doc.pk]), {"collection": world["legal"].pk},
                    follow=True)
    assert "1 document moved to Legal (1 chunk)." in [str(m) for m in response.context["messages"]]

    doc.refresh_from_db()
    assert doc.collection == world["legal"]
    assert labels(engine, doc) == ("legal", {"legal"}, {"legal"})  # both indexes re-labelled, nothing re-embedded
    assert doc.engine_id in cited(question, world["legal_member"])
    assert doc.engine_id not in cited(question, world["finance_member"])
    entry = LogEntry.objects.get(content_type__model="document", object_id=str(doc.pk))
    assert entry.get_change_message() == "Moved from collection Finance to Legal."
    assert entry.user == world["staff"]


def test_the_bulk_move_moves_the_ticked_documents_and_names_those_it_refuses(
        engine: Engine, world: dict[str, Any], tmp_path: Path) -> None:
    ledger = plant(engine, tmp_path, world["finance"], "ledger.md", LEDGER)
    contract = plant(engine, tmp_path, world["finance"], "contract.md", CONTRACT)
    busy = Document.objects.create(checksum="f" * 64, original_filename="busy.md", status=Document.Status.INDEXING,
                                   collection=world["finance"])
    client = csrf_client(world["staff"])
    listing = client.get(reverse("console:documents"), {"collection": "finance"}).content.decode()
    assert 'form="bulk-move"' in listing and "ledger.md" in listing
    back = reverse("console:documents") + "?collection=finance"
    response = post(client, reverse("console:documents-move"),
                    {"documents": [ledger.pk, contract.pk, busy.pk], "collection": world["legal"].pk, "next": back})
    assert response.status_code == 302 and response["Location"] == back
    shown = [str(m) for m in client.get(back).context["messages"]]
    assert shown == ["2 documents moved to Legal (2 chunks); 1 refused: busy.md (indexing; move it once its job is done)."]
    assert set(Document.objects.filter(collection=world["legal"]).values_list("pk", flat=True)) == {ledger.pk, contract.pk}
    assert Document.objects.get(pk=busy.pk).collection == world["finance"]
    assert contract.engine_id in cited("When does the vendor contract renew with the pelican clause?", world["legal_member"])

    # Nothing ticked, or somewhere else than this site to go back to: said, and back to the list.
    response = post(client, reverse("console:documents-move"), {"collection": world["legal"].pk,
                                                                "next": "https://evil.example/"})
    assert response["Location"] == reverse("console:documents")
    assert "Tick the documents to move first." in [str(m) for m in client.get(reverse("console:documents")).context["messages"]]


def test_a_move_the_indexes_refuse_leaves_the_document_where_it_was(
        engine: Engine, world: dict[str, Any], tmp_path: Path) -> None:
    doc = plant(engine, tmp_path, world["finance"], "ledger.md", LEDGER)
    client = csrf_client(world["staff"])
    with patch.object(Engine, "move_documents", side_effect=RuntimeError("chroma is down")):
        response = post(client, reverse("console:document-move", args=[doc.pk]), {"collection": world["legal"].pk},
                        follow=True)
    assert "Could not move ledger.md: chroma is down" in [str(m) for m in response.context["messages"]]
    doc.refresh_from_db()
    assert doc.collection == world["finance"]
    assert not LogEntry.objects.filter(content_type__model="document").exists()


def test_members_cannot_move_documents(engine: Engine, world: dict[str, Any], tmp_path: Path) -> None:
    doc = plant(engine, tmp_path, world["finance"], "ledger.md", LEDGER)
    member = csrf_client(world["legal_member"])
    assert post(member, reverse("console:document-move", args=[doc.pk]), {"collection": world["legal"].pk}).status_code == 403
    assert post(member, reverse("console:documents-move"),
                {"documents": [doc.pk], "collection": world["legal"].pk}).status_code == 403
    assert Document.objects.get(pk=doc.pk).collection == world["finance"]


def test_a_sources_collection_puts_its_synced_documents_there_and_changing_it_moves_them(
        engine: Engine, world: dict[str, Any], tmp_path: Path) -> None:
    folder = tmp_path / "books"
    folder.mkdir()
    (folder / "ledger.md").write_text(LEDGER)
    client = csrf_client(world["staff"])
    response = post(client, reverse("syncing:add"),
                    {"name": "books", "kind": "folder", "folder-path": str(folder), "schedule": "manual",
                     "collection": world["finance"].pk})
    source = Source.objects.get(name="books")
    assert response.status_code == 302 and source.collection == world["finance"]
    run = service.request_sync(source, enqueue=False)
    runs.run_sync(run.pk)
    doc = Document.objects.get(source=source)
    assert doc.collection == world["finance"]
    question = "When does the quarterly ledger close with the walrus reconciliation?"
    assert doc.engine_id in cited(question, world["finance_member"])
    assert doc.engine_id not in cited(question, world["legal_member"])

    # A synced document follows its source: moved on its own, it is refused.
    response = post(client, reverse("console:document-move", args=[doc.pk]), {"collection": world["legal"].pk},
                    follow=True)
    assert ("Not moved: Quarterly ledger (synced by the source books; change the source's collection)."
            in [str(m) for m in response.context["messages"]])

    form = client.get(reverse("syncing:edit", args=[source.pk])).content.decode()
    assert 'name="collection"' in form
    response = post(client, reverse("syncing:edit", args=[source.pk]),
                    {"name": "books", "kind": "folder", "folder-path": str(folder), "schedule": "manual",
                     "collection": world["legal"].pk}, follow=True)
    assert "Source books saved. 1 document moved to Legal (1 chunk)." in [str(m) for m in response.context["messages"]]
    source.refresh_from_db()
    doc.refresh_from_db()
    assert (source.collection, doc.collection) == (world["legal"], world["legal"])
    assert doc.engine_id in cited(question, world["legal_member"])
    assert doc.engine_id not in cited(question, world["finance_member"])

    # The next sync's new documents go to the new collection too.
    (folder / "contract.md").write_text(CONTRACT)
    runs.run_sync(service.request_sync(source, enqueue=False).pk)
    assert Document.objects.get(source=source, original_filename="contract.md").collection == world["legal"]
    assert LogEntry.objects.filter(content_type__model="source", object_id=str(source.pk)).exists()


def test_emptying_a_collection_from_its_page_then_deleting_it(engine: Engine, world: dict[str, Any],
                                                               tmp_path: Path) -> None:
    ledger = plant(engine, tmp_path, world["finance"], "ledger.md", LEDGER)
    contract = plant(engine, tmp_path, world["finance"], "contract.md", CONTRACT)
    client = csrf_client(world["staff"])
    url = reverse("console:collection-delete", args=[world["finance"].pk])
    assert "it still holds 2 documents" in client.get(url).content.decode()
    response = post(client, reverse("console:collection-move-all", args=[world["finance"].pk]),
                    {"collection": world["legal"].pk}, follow=True)
    assert "2 documents moved to Legal (2 chunks)." in [str(m) for m in response.context["messages"]]
    assert {d.collection for d in Document.objects.filter(pk__in=[ledger.pk, contract.pk])} == {world["legal"]}
    assert contract.engine_id in cited("When does the vendor contract renew with the pelican clause?", world["legal_member"])
    response = post(client, url, follow=True)
    assert "Collection Finance deleted." in [str(m) for m in response.context["messages"]]
    assert not Collection.objects.filter(key="finance").exists()
