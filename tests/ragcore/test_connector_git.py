"""The Git repository kind: a real repository the test commits to, served over file://, smart and dumb HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ragcore.connectors import ConnectorConfigError, ConnectorError, SourceItem, connector_class
from ragcore.connectors.git import GitConnector, file_page_url
from ragcore.errors import LoaderError
from ragcore.loaders import load_bytes
from tests.fakes.git_http import PRIVATE_TOKEN, FakeGitHost, WorkRepo

GUIDE = "# Install\n\nRun `make install`, then `make run`.\n"
PAGE = "<html><head><title>FAQ</title></head><body><h1>FAQ</h1><p>Ask the bot.</p></body></html>"


@pytest.fixture
def repo(tmp_path: Path) -> WorkRepo:
    work = WorkRepo(tmp_path / "work", tmp_path / "served" / "docs.git")
    work.commit({"README.md": "# Docs\n\nThe team's docs.\n", "guide/install.md": GUIDE, "faq.html": PAGE}, "first")
    return work


@pytest.fixture
def host(tmp_path: Path) -> Iterator[FakeGitHost]:
    with FakeGitHost(tmp_path / "served") as fake:
        yield fake


def connect(tmp_path: Path, **config: object) -> GitConnector:
    connector = connector_class("git").from_config(config, work_dir=tmp_path / "cache")
    assert isinstance(connector, GitConnector)
    return connector


def listing(connector: GitConnector, known: dict[str, str] | None = None) -> dict[str, SourceItem]:
    return {item.key: item for item in connector.list_items(known or {})}


def test_it_lists_every_file_at_the_branch_tip_by_blob_id(tmp_path: Path, repo: WorkRepo) -> None:
    connector = connect(tmp_path, url=f"file://{repo.served}")
    items = listing(connector)
    assert set(items) == {"README.md", "guide/install.md", "faq.html"}
    assert items["guide/install.md"].version == repo.blob("guide/install.md")
    assert items["guide/install.md"].filename == "install.md"
    assert items["guide/install.md"].url == ""  # no web host for a file:// repository: the source viewer
    assert connector.describe() == f"git file://{repo.served} @ main ({repo.head()[:7]})"


def test_fetched_files_pass_through_the_loaders(tmp_path: Path, repo: WorkRepo) -> None:
    connector = connect(tmp_path, url=f"file://{repo.served}")
    items = listing(connector)
    guide = connector.fetch(items["guide/install.md"])
    assert guide.data == GUIDE.encode()
    assert guide.filename == "install.md"
    parsed = load_bytes(guide.data, guide.filename)
    assert parsed.title == "Install" and "make install" in parsed.sections[0].text
    page = connector.fetch(items["faq.html"])
    assert load_bytes(page.data, page.filename).title == "FAQ"


def test_a_change_changes_only_that_files_version(tmp_path: Path, repo: WorkRepo) -> None:
    connector = connect(tmp_path, url=f"file://{repo.served}")
    before = {key: item.version for key, item in listing(connector).items()}
    repo.commit({"guide/install.md": GUIDE + "\nOr use Docker.\n", "new.md": "# New\n\nFresh.\n", "faq.html": None})
    after = listing(connect(tmp_path, url=f"file://{repo.served}"), before)
    assert set(after) == {"README.md", "guide/install.md", "new.md"}
    assert after["README.md"].version == before["README.md"]
    assert after["guide/install.md"].version != before["guide/install.md"]
    assert connector.fetch(after["guide/install.md"]).data.endswith(b"Or use Docker.\n")


def test_a_force_push_lists_the_new_history(tmp_path: Path, repo: WorkRepo) -> None:
    listing(connect(tmp_path, url=f"file://{repo.served}"))
    head = repo.rewrite({"only.md": "# Only\n\nA new start.\n"})
    connector = connect(tmp_path, url=f"file://{repo.served}")
    items = listing(connector)
    assert set(items) == {"only.md"}
    assert connector.fetch(items["only.md"]).data == b"# Only\n\nA new start.\n"
    assert connector.describe().endswith(f"({head[:7]})")


def test_a_deleted_branch_is_a_clear_error_naming_it(tmp_path: Path, repo: WorkRepo) -> None:
    repo.git("branch", "release")
    repo.git("push", "--quiet", str(repo.served), "release")
    listing(connect(tmp_path, url=f"file://{repo.served}", branch="release"))
    repo.git("push", "--quiet", str(repo.served), ":release")
    with pytest.raises(ConnectorConfigError) as caught:
        listing(connect(tmp_path, url=f"file://{repo.served}", branch="release"))
    assert caught.value.field == "branch"
    assert "no branch 'release'" in str(caught.value)


def test_without_a_branch_it_follows_the_remotes_default(tmp_path: Path) -> None:
    trunk = WorkRepo(tmp_path / "work", tmp_path / "served" / "t.git", branch="trunk")
    trunk.commit({"a.md": "# A\n\nText.\n"})
    connector = connect(tmp_path, url=f"file://{trunk.served}")
    assert set(listing(connector)) == {"a.md"}
    assert " @ trunk (" in connector.describe()


def test_include_exclude_and_subdirectory_choose_the_files(tmp_path: Path, repo: WorkRepo) -> None:
    repo.commit({"guide/draft.md": "# Draft\n\nNot yet.\n", "guide/img/logo.png": b"\x89PNG\r\n\x1a\n\0\0"})
    only_md = connect(tmp_path, url=f"file://{repo.served}", include=["*.md"], exclude=["draft.md"])
    assert set(listing(only_md)) == {"README.md", "guide/install.md"}
    guide = connect(tmp_path, url=f"file://{repo.served}", subdirectory="guide/", exclude=["img/"])
    assert set(listing(guide)) == {"guide/install.md", "guide/draft.md"}  # keys stay repository paths


def test_a_subdirectory_that_is_not_there_fails_rather_than_listing_nothing(tmp_path: Path, repo: WorkRepo) -> None:
    with pytest.raises(ConnectorConfigError) as caught:
        listing(connect(tmp_path, url=f"file://{repo.served}", subdirectory="handbook"))
    assert caught.value.field == "subdirectory"


def test_without_include_only_document_types_are_listed(tmp_path: Path, repo: WorkRepo) -> None:
    repo.commit({"logo.png": b"\x89PNG\r\n\x1a\n", "src/app.py": "print(1)\n", "Makefile": "all:\n"})
    assert set(listing(connect(tmp_path, url=f"file://{repo.served}"))) == {"README.md", "guide/install.md", "faq.html"}
    assert "src/app.py" in listing(connect(tmp_path, url=f"file://{repo.served}", include=["*.md", "*.py"]))


def test_hidden_files_and_folders_are_left_out_as_a_folder_source_leaves_them(tmp_path: Path, repo: WorkRepo) -> None:
    repo.commit({".github/PULL_REQUEST_TEMPLATE.md": "# Checklist\n", "guide/.draft.md": "# Draft\n",
                 ".changeset/one.md": "# Change\n", "guide/deploy.md": "# Deploy\n"})
    assert set(listing(connect(tmp_path, url=f"file://{repo.served}"))) == {
        "README.md", "guide/install.md", "guide/deploy.md", "faq.html"}
    # A hidden folder the source names as its subdirectory is synced: only what is hidden inside it is left out.
    assert set(listing(connect(tmp_path, url=f"file://{repo.served}", subdirectory=".github"))) == {
        ".github/PULL_REQUEST_TEMPLATE.md"}


def test_a_binary_file_let_in_by_include_is_listed_and_fails_alone_in_the_loader(tmp_path: Path, repo: WorkRepo) -> None:
    repo.commit({"logo.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256))})
    connector = connect(tmp_path, url=f"file://{repo.served}", include=["*"])
    items = listing(connector)
    fetched = connector.fetch(items["logo.png"])
    with pytest.raises(LoaderError, match="logo.png"):
        load_bytes(fetched.data, fetched.filename)


def test_a_file_over_the_size_limit_is_an_item_error(tmp_path: Path, repo: WorkRepo) -> None:
    connector = connect(tmp_path, url=f"file://{repo.served}", max_file_bytes=10)
    items = listing(connector)
    with pytest.raises(ConnectorError, match="guide/install.md: .*over the 10-byte limit"):
        connector.fetch(items["guide/install.md"])


def test_it_syncs_over_smart_http(tmp_path: Path, repo: WorkRepo, host: FakeGitHost) -> None:
    url = f"{host.base_url}/docs.git"
    first = listing(connect(tmp_path, url=url))
    assert set(first) == {"README.md", "guide/install.md", "faq.html"}
    repo.commit({"README.md": "# Docs\n\nUpdated.\n"})
    connector = connect(tmp_path, url=url)
    second = listing(connector, {key: item.version for key, item in first.items()})
    assert second["README.md"].version == repo.blob("README.md") != first["README.md"].version
    assert connector.fetch(second["README.md"]).data == b"# Docs\n\nUpdated.\n"
    assert any("git-upload-pack" in request.path for request in host.requests)
    assert (tmp_path / "cache" / "repo.git").is_dir()  # cloned once, fetched after


def test_it_syncs_from_a_dumb_http_server(tmp_path: Path, repo: WorkRepo, host: FakeGitHost) -> None:
    connector = connect(tmp_path, url=f"{host.base_url}/dumb/docs.git")
    items = listing(connector)
    assert items["guide/install.md"].version == repo.blob("guide/install.md")
    assert connector.fetch(items["guide/install.md"]).data == GUIDE.encode()


def test_a_repository_needing_credentials_fails_at_once_without_showing_the_token(
    tmp_path: Path, host: FakeGitHost
) -> None:
    private = WorkRepo(tmp_path / "work", tmp_path / "served" / "private" / "team.git")
    private.commit({"secret.md": "# Secret\n\nPlans.\n"})
    with pytest.raises(ConnectorError) as caught:
        listing(connect(tmp_path, url=f"{host.base_url}/private/team.git"))
    assert not caught.value.transient
    assert "private/team.git" in str(caught.value)

    wrong = connect(tmp_path, url=f"http://user:wrong-{PRIVATE_TOKEN}@127.0.0.1:{host.server.server_address[1]}/private/team.git")
    with pytest.raises(ConnectorError) as caught:
        listing(wrong)
    assert PRIVATE_TOKEN not in str(caught.value) and "***" in str(caught.value)

    right = connect(tmp_path, url=f"http://user:{PRIVATE_TOKEN}@127.0.0.1:{host.server.server_address[1]}/private/team.git")
    assert set(listing(right)) == {"secret.md"}
    assert PRIVATE_TOKEN not in right.describe() and "user:***@" in right.describe()


def test_an_unreachable_host_is_a_transient_error(tmp_path: Path) -> None:
    with pytest.raises(ConnectorError) as caught:
        listing(connect(tmp_path, url="http://127.0.0.1:9/nothing.git", timeout_seconds=30))
    assert caught.value.transient and "127.0.0.1:9" in str(caught.value)


@pytest.mark.parametrize(
    "url",
    ["/srv/repos/docs.git", "./docs", "C:\\repos\\docs", "ext::sh -c touch% /tmp/pwned", "-uhelp", "ftp://host/r.git", ""],
)
def test_local_paths_and_other_transports_are_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConnectorConfigError) as caught:
        connect(tmp_path, url=url)
    assert caught.value.field == "url"


@pytest.mark.parametrize(
    ("config", "field"),
    [({"branch": "-x"}, "branch"), ({"subdirectory": "../etc"}, "subdirectory"), ({"web": "bitbucket"}, "web"),
     ({"include": "*.md\n[z-a]"}, "include"), ({"max_file_bytes": 0}, "max_file_bytes")],
)  # fmt: skip
def test_bad_settings_name_their_field(tmp_path: Path, config: dict[str, object], field: str) -> None:
    with pytest.raises(ConnectorConfigError) as caught:
        connect(tmp_path, url="https://github.com/o/r.git", **config)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("url", "config", "expected"),
    [
        ("https://github.com/acme/docs.git", {}, "https://github.com/acme/docs/blob/{c}/guide/a%20b.md"),
        ("git@github.com:acme/docs.git", {}, "https://github.com/acme/docs/blob/{c}/guide/a%20b.md"),
        ("ssh://git@gitlab.com:22/acme/sub/docs.git", {}, "https://gitlab.com/acme/sub/docs/-/blob/{c}/guide/a%20b.md"),
        ("https://gitlab.example.org/acme/docs", {}, "https://gitlab.example.org/acme/docs/-/blob/{c}/guide/a%20b.md"),
        ("https://codeberg.org/acme/docs.git", {}, "https://codeberg.org/acme/docs/src/commit/{c}/guide/a%20b.md"),
        ("git@git.example.org:acme/docs.git", {"web": "gitea"}, "https://git.example.org/acme/docs/src/commit/{c}/guide/a%20b.md"),
        ("https://tok:x-oauth@github.com/acme/docs.git", {}, "https://github.com/acme/docs/blob/{c}/guide/a%20b.md"),
        ("https://git.example.org/acme/docs.git", {}, ""),
        ("https://github.com/acme/docs.git", {"web": "none"}, ""),
    ],
)
def test_files_link_to_their_page_on_the_web_host(tmp_path: Path, url: str, config: dict[str, str], expected: str) -> None:
    connect(tmp_path, url=url, **config)  # a valid source's settings
    commit = "a" * 40
    assert file_page_url(url, config.get("web", ""), commit, "guide/a b.md") == expected.format(c=commit)


def test_symlinks_and_submodules_are_not_listed(tmp_path: Path, repo: WorkRepo) -> None:
    (repo.path / "link.md").symlink_to("README.md")
    inner = WorkRepo(tmp_path / "inner", tmp_path / "served" / "inner.git")
    inner.commit({"inner.md": "# Inner\n\nText.\n"})
    repo.git("-c", "protocol.file.allow=always", "submodule", "add", "--quiet", f"file://{inner.served}", "vendor/inner")
    repo.commit({}, "a symlink and a submodule")
    assert set(listing(connect(tmp_path, url=f"file://{repo.served}"))) == {"README.md", "guide/install.md", "faq.html"}
