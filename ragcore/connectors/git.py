"""A Git repository as a source: the files of one branch at its newest commit, through the real `git` binary.

Settings: `url` (https://, http://, ssh://, git@host:owner/repo.git or file:///path; a bare local path is
refused so a typo cannot read the server's own disk by accident), `branch` (default: the remote's default
branch), `include` / `exclude` (path patterns with .gitignore's meaning, relative to `subdirectory`; no
`include` means every document type Lorebot reads, as for a folder, so images and code are left out),
`subdirectory` (only the files under it), `web` ("github", "gitlab", "gitea" for a self-hosted host whose
name does not say it; "none" for no links), `max_file_bytes`, `timeout_seconds`.

The repository is fetched into a bare repository in the source's work folder, once in full depth 1 and
then incrementally; the fetched branch is force-updated, so a force-push simply lists the new history's
files. A file's version is its blob id, so only files whose content changed are fetched again. Git runs
with no prompts and no credential helpers (GIT_TERMINAL_PROMPT=0, ssh BatchMode): a repository that needs
credentials fails at once with a clear error instead of hanging a worker, and a token written in the URL
is never logged or shown (it is masked in every message).

`git` via subprocess rather than dulwich: it speaks every transport (smart and dumb HTTP, ssh with the
host's keys and config, file) exactly as the user's own git does, shallow fetches are fast, and its
messages are the ones people already know.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import structlog

from ragcore import metrics
from ragcore.connectors.base import (
    ConnectorConfigError,
    ConnectorError,
    FetchedItem,
    ItemFetchError,
    Setting,
    SourceItem,
)
from ragcore.connectors.paths import DEFAULT_INCLUDE, PathFilter, hidden, pattern_list

log = structlog.get_logger(__name__, component="git")

_SCP_LIKE = re.compile(r"^(?P<user>[\w.+-]+)@(?P<host>[\w.-]+):(?!/)(?P<path>.+)$")  # git@github.com:o/r.git
_SCHEMES = ("https", "http", "ssh", "file")
_BRANCH = re.compile(r"^(?!-)(?!.*\.\.)(?!.*//)[\w./+@-]+(?<![./])$")
_OBJECT_ID = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
# Hosts whose name says which web interface they run; self-hosted ones say it with the `web` setting.
_KNOWN_HOSTS = {"github.com": "github", "gitlab.com": "gitlab", "codeberg.org": "gitea", "gitea.com": "gitea"}
# How each web interface shows one file at one commit.
_FILE_PAGES = {
    "github": "{base}/blob/{commit}/{path}",
    "gitlab": "{base}/-/blob/{commit}/{path}",
    "gitea": "{base}/src/commit/{commit}/{path}",
}
_SYNCED_REF = "refs/lorebot/synced"  # the commit the last listing was of (describe() reads it)
_FETCHED_REF = "refs/lorebot/fetched"


@dataclass(frozen=True)
class _Entry:
    mode: str
    kind: str
    object_id: str
    path: str


class GitConnector:
    """The files of one branch of a Git repository, at the newest commit."""

    kind: ClassVar[str] = "git"
    label: ClassVar[str] = "Git repository"
    settings: ClassVar[tuple[Setting, ...]] = (
        Setting("url", "Repository URL", help="https://, ssh:// or file://; a private repository's token goes in "
                                              "the URL (https://user:TOKEN@host/…) and is never shown again.",
                required=True),
        Setting("branch", "Branch", help="Empty: the repository's default branch."),
        Setting("subdirectory", "Folder in the repository", help="Empty: the whole repository."),
        Setting("include", "Include", "lines", "Patterns, one per line, as in .gitignore (*.md, docs/). "
                                               "Empty: every document type Lorebot reads."),
        Setting("exclude", "Exclude", "lines", "Patterns to leave out, one per line."),
        Setting("web", "Web host", help="github, gitlab or gitea to link each file there; none for the source viewer; "
                                        "empty: guessed from the URL."),
        Setting("max_file_bytes", "Largest file (bytes)", "int", "Larger files fail alone (default 50 MB)."),
        Setting("timeout_seconds", "Timeout per git command (s)", "int", "Default 600."),
    )

    def __init__(
        self,
        *,
        url: str,
        branch: str,
        subdirectory: str,
        paths: PathFilter,
        web: str,
        max_file_bytes: int,
        timeout_seconds: float,
        work_dir: Path,
    ) -> None:
        self.url = url
        self.branch = branch  # "" until the remote's default branch is known
        self.subdirectory = subdirectory
        self.paths = paths
        self.web = web
        self.max_file_bytes = max_file_bytes
        self.timeout_seconds = timeout_seconds
        self.repo = work_dir / "repo.git"
        self._secret = (urlsplit(url).password or "") if "://" in url else ""
        self._commit = ""

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, work_dir: Path) -> GitConnector:
        """Validate the settings and build the connector; raises ConnectorConfigError naming the field."""
        url = _check_url(config.get("url"))
        branch = config.get("branch") or ""
        if not isinstance(branch, str) or (branch and not _BRANCH.match(branch)):
            raise ConnectorConfigError("branch", f"not a branch name: {branch!r}")
        subdirectory = config.get("subdirectory") or ""
        if not isinstance(subdirectory, str):
            raise ConnectorConfigError("subdirectory", "must be a relative folder path")
        subdirectory = subdirectory.strip().strip("/")
        if subdirectory.startswith("-") or ".." in PurePosixPath(subdirectory).parts or "\\" in subdirectory:
            raise ConnectorConfigError("subdirectory", f"must be a folder inside the repository: {subdirectory!r}")
        web = config.get("web") or ""
        if web not in ("", "none", *_FILE_PAGES):
            raise ConnectorConfigError("web", f"one of {', '.join(sorted(_FILE_PAGES))} or none, not {web!r}")
        return cls(
            url=url,
            branch=branch,
            subdirectory=subdirectory,
            paths=PathFilter(pattern_list(config, "include") or list(DEFAULT_INCLUDE), pattern_list(config, "exclude")),
            web=web,
            max_file_bytes=_positive_int(config, "max_file_bytes", 50 * 1024 * 1024),
            timeout_seconds=_positive_int(config, "timeout_seconds", 600),
            work_dir=work_dir,
        )

    def list_items(self, known: Mapping[str, str]) -> Iterator[SourceItem]:
        """The files at the branch's newest commit; every error is raised before the first item."""
        commit = self._sync()
        prefix = f"{self.subdirectory}/" if self.subdirectory else ""
        entries = list(self._tree(commit))
        items = []
        for entry in entries:
            if entry.kind != "blob" or entry.mode == "120000" or not entry.path.startswith(prefix):
                continue  # submodules, symlinks (their "content" is a path), files outside the subdirectory
            inside = entry.path[len(prefix) :]  # a subdirectory named by the source may itself be hidden
            if hidden(inside) or not self.paths.keeps(inside):
                continue  # hidden files and folders are left out, as a folder source leaves them out
            name = PurePosixPath(entry.path).name
            items.append(SourceItem(key=entry.path, version=entry.object_id, url=file_page_url(self.url, self.web, commit, entry.path), filename=name))
        if prefix and not any(entry.path.startswith(prefix) for entry in entries):
            # A renamed or mistyped folder must not read as "every document was deleted".
            raise self._count(ConnectorConfigError("subdirectory", f"no folder {self.subdirectory!r} at {self.branch} ({commit[:7]})"))
        log.info("git.listed", url=self.safe_url, branch=self.branch, commit=commit[:12], items=len(items))
        yield from items

    def fetch(self, item: SourceItem) -> FetchedItem:
        """The file's bytes at the listed commit, by its blob id."""
        if not _OBJECT_ID.match(item.version):
            raise self._count(ItemFetchError(item.key, f"not a Git object id: {item.version!r}"))
        try:
            size = int(self._git("cat-file", "-s", item.version).strip())
            if size > self.max_file_bytes:
                raise ItemFetchError(item.key, f"{size} bytes is over the {self.max_file_bytes}-byte limit")
            data = self._git_bytes("cat-file", "blob", item.version)
        except ItemFetchError as exc:
            raise self._count(exc) from None
        except ConnectorError as exc:
            raise self._count(ItemFetchError(item.key, str(exc), transient=exc.transient)) from None
        return FetchedItem(data=data, filename=item.filename or PurePosixPath(item.key).name)

    def describe(self) -> str:
        """ "git https://github.com/o/r @ main (3f2a1c9)", without any password."""
        commit = self._commit or self._local_commit(_SYNCED_REF)
        branch = self.branch or "default branch"
        return f"git {self.safe_url} @ {branch}" + (f" ({commit[:7]})" if commit else "")

    @property
    def safe_url(self) -> str:
        """The URL as it may be shown and logged: any password replaced by ***."""
        return _mask(self.url, self._secret)

    # --- the repository ---

    def _sync(self) -> str:
        """Fetches the branch into the local bare repository; returns the commit it is at."""
        if not (self.repo / "HEAD").exists():
            self.repo.mkdir(parents=True, exist_ok=True)
            self._git("init", "--bare", "--quiet", str(self.repo), git_dir=False)
        self.branch = self.branch or self._default_branch()
        refspec = f"+refs/heads/{self.branch}:{_FETCHED_REF}"  # "+": a force-pushed branch replaces ours
        try:
            self._fetch(refspec, shallow=True)
        except ConnectorError as exc:
            if "shallow" not in str(exc):
                raise
            self._fetch(refspec, shallow=False)  # dumb HTTP servers cannot serve shallow fetches
        commit = self._git("rev-parse", "--verify", f"{_FETCHED_REF}^{{commit}}").strip()
        self._git("update-ref", _SYNCED_REF, commit)
        self._commit = commit
        return commit

    def _fetch(self, refspec: str, *, shallow: bool) -> None:
        depth = ["--depth=1"] if shallow else []
        try:
            self._git("fetch", "--quiet", "--no-tags", "--no-write-fetch-head", *depth, "--", self.url, refspec)
        except ConnectorError as exc:
            if "couldn't find remote ref" in str(exc):
                raise self._count(
                    ConnectorConfigError("branch", f"no branch {self.branch!r} at {self.safe_url} (deleted or renamed?)")
                ) from None
            raise

    def _default_branch(self) -> str:
        """The branch the remote's HEAD points at: what a plain `git clone` would check out."""
        out = self._git("ls-remote", "--symref", "--", self.url, "HEAD")
        for line in out.splitlines():
            if line.startswith("ref: refs/heads/") and line.endswith("\tHEAD"):
                return line[len("ref: refs/heads/") : -len("\tHEAD")]
        if not out.strip():
            raise self._count(ConnectorError(f"{self.safe_url} has no branches yet (an empty repository?)"))
        raise self._count(ConnectorConfigError("branch", f"{self.safe_url} does not say its default branch; set one"))

    def _tree(self, commit: str) -> Iterator[_Entry]:
        out = self._git_bytes("ls-tree", "-r", "-z", "--full-tree", commit)
        for record in out.split(b"\0"):
            if not record:
                continue
            meta, _, path = record.partition(b"\t")
            mode, kind, object_id = meta.decode().split()
            yield _Entry(mode, kind, object_id, path.decode("utf-8", "surrogateescape"))

    def _local_commit(self, ref: str) -> str:
        if not (self.repo / "HEAD").exists():
            return ""
        try:
            return self._git("rev-parse", "--verify", "--quiet", ref).strip()
        except ConnectorError:
            return ""

    # --- running git ---

    def _git(self, *args: str, git_dir: bool = True) -> str:
        return self._git_bytes(*args, git_dir=git_dir).decode("utf-8", "replace")

    def _git_bytes(self, *args: str, git_dir: bool = True) -> bytes:
        """Runs git with no prompts and no credential helpers; a failure is a ConnectorError with git's own words."""
        command = [
            "git",
            "-c", "credential.helper=",  # an empty value clears every helper the host's config may set
            "-c", "core.askPass=",
            "-c", "http.lowSpeedLimit=1000",  # a stalled transfer fails after a minute, not at the timeout
            "-c", "http.lowSpeedTime=60",
            *([f"--git-dir={self.repo}"] if git_dir else []),
            *args,
        ]  # fmt: skip
        try:
            # A new session, so a timeout can end git's helpers (git-remote-https, ssh) with it.
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=_environment(), start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            raise self._count(ConnectorError(f"cannot run git: {exc.strerror or exc}")) from None
        try:
            out, err = process.communicate(timeout=self.timeout_seconds)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise self._count(
                ConnectorError(f"git {args[0]} of {self.safe_url} took over {self.timeout_seconds:g} s")
            ) from None
        if process.returncode != 0:
            message = _mask(err.decode("utf-8", "replace").strip(), self._secret)
            lines = [line.removeprefix("fatal: ").removeprefix("error: ") for line in message.splitlines() if line.strip()]
            hint = ""
            if "could not read username" in message.lower() or "authentication failed" in message.lower():
                hint = " (the repository needs credentials: a token in the URL, https://user:TOKEN@host/…, or an ssh key)"
            error = ConnectorError(f"git {args[0]} of {self.safe_url} failed: {'; '.join(lines) or 'no message'}{hint}")
            error.transient = not _permanent(message)
            raise self._count(error)
        return out

    @staticmethod
    def _count(error: ConnectorError) -> ConnectorError:
        metrics.PIPELINE_ERRORS.labels("git").inc()
        return error


def _check_url(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConnectorConfigError("url", "the repository's URL is required")
    url = value.strip()
    if url.startswith("-") or any(ch.isspace() for ch in url):
        raise ConnectorConfigError("url", "not a repository URL")
    if _SCP_LIKE.match(url) and "://" not in url:
        return url
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in _SCHEMES:
        if not scheme:
            raise ConnectorConfigError(
                "url", "a folder on this server must be written file:///path/to/repo; otherwise use https://, ssh:// or git@host:owner/repo.git"
            )
        raise ConnectorConfigError("url", f"{scheme}:// is not supported; use https://, http://, ssh://, git@host:… or file://")
    parts = urlsplit(url)
    if scheme == "file" and not parts.path.startswith("/"):
        raise ConnectorConfigError("url", "a file:// URL needs an absolute path: file:///path/to/repo")
    if scheme != "file" and not parts.hostname:
        raise ConnectorConfigError("url", "the URL names no host")
    return url


def file_page_url(url: str, web: str, commit: str, path: str) -> str:
    """The file at that commit on the repository's web host (GitHub, GitLab, Gitea/Forgejo), or "" when none is known."""
    base, host_kind = _web_base(url, web)
    if not base:
        return ""
    return _FILE_PAGES[host_kind].format(base=base, commit=commit, path=quote(path, safe="/"))


def _web_base(url: str, web: str) -> tuple[str, str]:
    """The repository's web page ("https://github.com/o/r") and which interface it runs, or ("", "")."""
    if web == "none":
        return "", ""
    scp = _SCP_LIKE.match(url) if "://" not in url else None
    if scp:
        host, path, scheme = scp["host"], scp["path"], "https"
    else:
        parts = urlsplit(url)
        if parts.scheme == "file" or not parts.hostname:
            return "", ""
        host, path = parts.hostname, parts.path
        scheme = parts.scheme if parts.scheme in ("http", "https") else "https"
    name = host.lower()
    host_kind = web or _KNOWN_HOSTS.get(name, "")
    if not scp and urlsplit(url).scheme in ("http", "https") and urlsplit(url).port:
        host = f"{host}:{urlsplit(url).port}"  # a web host on its own port keeps it; an ssh port is not the web's
    if not host_kind:
        host_kind = next((kind for kind in ("gitlab", "gitea", "forgejo") if kind in name), "")
        host_kind = "gitea" if host_kind == "forgejo" else host_kind  # Forgejo is a Gitea fork, same URLs
    path = path.strip("/").removesuffix(".git")
    if not host_kind or not path:
        return "", ""
    return f"{scheme}://{host}/{path}", host_kind


def _mask(text: str, secret: str) -> str:
    """`text` with the password of any URL in it (and the configured one anywhere) replaced by ***."""
    if secret:
        text = text.replace(secret, "***").replace(quote(secret, safe=""), "***")
    return re.sub(r"(://[^/\s:@]+):[^/\s@]+@", r"\1:***@", text)


def _permanent(message: str) -> bool:
    """Whether git's message says retrying cannot help (credentials, a missing repository) rather than a flaky network."""
    lowered = message.lower()
    return any(
        words in lowered
        for words in (
            "authentication failed", "could not read username", "terminal prompts disabled", "permission denied",
            "repository not found", "does not appear to be a git repository", "not found", "403", "401",
        )
    )  # fmt: skip


def _environment() -> dict[str, str]:
    """The environment git runs in: the host's, without anything that could prompt or redirect it."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("GIT_") and name != "SSH_ASKPASS"}
    env.update(
        GIT_TERMINAL_PROMPT="0",  # fail instead of asking for a username on a terminal nobody watches
        GIT_ASKPASS="",
        GIT_ALLOW_PROTOCOL="file:http:https:ssh",  # never ext:: or other transports that run commands
        GIT_SSH_COMMAND=os.environ.get("GIT_SSH_COMMAND", "ssh -o BatchMode=yes"),
        LC_ALL="C",  # git's messages in English, so the checks above read them
    )
    return env


def _positive_int(config: Mapping[str, Any], field: str, default: int) -> int:
    value = config.get(field, default)
    if value in (None, ""):
        return default
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConnectorConfigError(field, "must be a positive number")
    try:
        number = int(value)
    except ValueError:
        raise ConnectorConfigError(field, f"must be a positive number, not {value!r}") from None
    if number <= 0:
        raise ConnectorConfigError(field, f"must be a positive number, not {value!r}")
    return number
