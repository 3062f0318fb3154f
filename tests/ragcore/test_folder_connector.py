"""The folder kind: which files a sync sees, their versions, and what it refuses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ragcore.connectors import ConnectorConfigError, ItemFetchError, connector_class
from ragcore.connectors.folder import FolderConnector


def make(root: Path, work: Path, **config: object) -> FolderConnector:
    return FolderConnector.from_config({"path": str(root), **config}, work_dir=work)


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    (root / "guide").mkdir(parents=True)
    (root / "guide" / "install.md").write_text("# Install\n\nRun the installer.\n")
    (root / "readme.txt").write_text("Read me first.\n")
    (root / "logo.png").write_bytes(b"\x89PNG\r\n")
    (root / ".secret.md").write_text("hidden file\n")
    (root / ".git").mkdir()
    (root / ".git" / "notes.md").write_text("hidden folder\n")
    return root


def test_it_is_the_registered_folder_kind() -> None:
    assert connector_class("folder") is FolderConnector


def test_it_lists_documents_recursively_and_skips_hidden_files_and_other_types(docs: Path, tmp_path: Path) -> None:
    items = list(make(docs, tmp_path / "work").list_items({}))
    assert [i.key for i in items] == ["readme.txt", "guide/install.md"]
    assert all(i.version.startswith("sha256:") and i.url == "" for i in items)
    install = next(i for i in items if i.key == "guide/install.md")
    assert install.filename == "install.md"


def test_include_and_exclude_globs_choose_the_files(docs: Path, tmp_path: Path) -> None:
    (docs / "guide" / "draft.md").write_text("draft\n")
    connector = make(docs, tmp_path / "work", include=["guide/**"], exclude=["draft.md"])
    assert [i.key for i in connector.list_items({})] == ["guide/install.md"]
    # A textarea's lines work too.
    connector = make(docs, tmp_path / "work2", include="*.txt\n\n")
    assert [i.key for i in connector.list_items({})] == ["readme.txt"]


def test_a_touch_without_a_change_keeps_the_version_and_an_edit_changes_it(docs: Path, tmp_path: Path) -> None:
    connector = make(docs, tmp_path / "work")
    first = {i.key: i.version for i in connector.list_items({})}
    path = docs / "readme.txt"
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    assert {i.key: i.version for i in connector.list_items(first)} == first
    path.write_text("Read me first, then the guide.\n")
    changed = {i.key: i.version for i in connector.list_items(first)}
    assert changed["readme.txt"] != first["readme.txt"]
    assert changed["guide/install.md"] == first["guide/install.md"]


def test_an_unchanged_file_is_not_read_again(docs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    connector = make(docs, tmp_path / "work")
    first = {i.key: i.version for i in connector.list_items({})}
    import ragcore.connectors.folder as folder

    def no_reading(path: Path) -> str:
        raise AssertionError(f"{path} was read although its size and mtime are the same")

    monkeypatch.setattr(folder, "_checksum", no_reading)
    assert {i.key: i.version for i in connector.list_items(first)} == first


def test_symlinks_out_of_the_folder_are_not_followed(docs: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwords.txt").write_text("hunter2\n")
    (docs / "leak.txt").symlink_to(outside / "passwords.txt")
    (docs / "linked-dir").symlink_to(outside, target_is_directory=True)
    (docs / "loop").symlink_to(docs, target_is_directory=True)
    (docs / "alias.txt").symlink_to(docs / "readme.txt")  # inside the folder: followed
    keys = [i.key for i in make(docs, tmp_path / "work").list_items({})]
    assert "leak.txt" not in keys and not any(k.startswith(("linked-dir/", "loop/")) for k in keys)
    assert "alias.txt" in keys


def test_it_fetches_an_items_bytes_and_names_a_file_deleted_meanwhile(docs: Path, tmp_path: Path) -> None:
    connector = make(docs, tmp_path / "work")
    items = {i.key: i for i in connector.list_items({})}
    fetched = connector.fetch(items["guide/install.md"])
    assert fetched.data.startswith(b"# Install") and fetched.filename == "install.md"
    (docs / "readme.txt").unlink()
    with pytest.raises(ItemFetchError) as caught:
        connector.fetch(items["readme.txt"])
    assert caught.value.key == "readme.txt" and "deleted" in str(caught.value)


@pytest.mark.parametrize(("config", "field", "words"), [
    ({}, "path", "required"),
    ({"path": "relative/docs"}, "path", "absolute"),
    ({"path": "/no/such/folder"}, "path", "not a folder"),
    ({"include": "ok", "exclude": [3]}, "exclude", "list of glob patterns"),
])
def test_bad_settings_name_their_field(docs: Path, tmp_path: Path, config: dict[str, object], field: str,
                                       words: str) -> None:
    if "path" not in config:
        config = {"path": str(docs), **config} if config else config
    with pytest.raises(ConnectorConfigError) as caught:
        FolderConnector.from_config(config, work_dir=tmp_path / "work")
    assert caught.value.field == field and words in str(caught.value)


def test_describe_says_which_folder(docs: Path, tmp_path: Path) -> None:
    assert make(docs, tmp_path / "work", include=["*.md"]).describe() == f"folder {docs.resolve()} (*.md)"
