"""The folder kind: the documents under a folder on the server, walked recursively.

Settings (a JSON object): `path` (absolute, a folder the server can read), `include` and `exclude`
(lists of gitignore-style patterns relative to that folder, matched with pathspec, the library git-aware
tools such as black and yamllint use; no `include` means every document type Lorebot reads).
Hidden files and folders are left out, and a symlink is followed only when it points at a file inside
the folder (a link to /etc/passwd or to a parent folder must not pull the whole server in).

An item's version is its content checksum, so touching a file without changing it is "unchanged".
Reading every file on every sync would make a re-sync of a large folder cost as much as the first, so
the checksum is computed only when a file's size or modification time differ from what the folder's
stat cache (in the source's working folder) recorded last time.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from ragcore.connectors.base import (
    ConnectorConfigError,
    ConnectorError,
    FetchedItem,
    ItemFetchError,
    Setting,
    SourceItem,
)
from ragcore.connectors.paths import DEFAULT_INCLUDE, PathFilter, hidden, pattern_list

STAT_CACHE = "stat-cache.json"
READ_BYTES = 1 << 20


class FolderConnector:
    """Every document under one folder on the server, recursively."""

    kind: ClassVar[str] = "folder"
    label: ClassVar[str] = "Folder on the server"
    settings: ClassVar[tuple[Setting, ...]] = (
        Setting("path", "Folder on the server", help="An absolute path the server can read, e.g. /srv/handbook.",
                required=True),
        Setting("include", "Include", "lines", "Patterns, one per line, as in .gitignore (*.md, docs/). "
                                               "Empty: every document type Lorebot reads."),
        Setting("exclude", "Exclude", "lines", "Patterns to leave out, one per line (drafts/, *.tmp.md)."),
    )

    def __init__(self, root: Path, include: list[str], exclude: list[str], work_dir: Path) -> None:
        self.root = root
        self.include = include
        self.exclude = exclude
        self.work_dir = work_dir
        self._filter = PathFilter(include or list(DEFAULT_INCLUDE), exclude)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, work_dir: Path) -> FolderConnector:
        """Validates `path` (an absolute, readable folder), `include` and `exclude`."""
        raw = config.get("path")
        if not isinstance(raw, str) or not raw.strip():
            raise ConnectorConfigError("path", "the folder to sync is required")
        path = Path(raw.strip()).expanduser()
        if not path.is_absolute():
            raise ConnectorConfigError("path", f"must be an absolute path on the server, not {raw!r}")
        if not path.is_dir():
            raise ConnectorConfigError("path", f"{path} is not a folder on this server")
        if not os.access(path, os.R_OK | os.X_OK):
            raise ConnectorConfigError("path", f"{path} cannot be read by the server")
        return cls(path.resolve(), pattern_list(config, "include"), pattern_list(config, "exclude"), work_dir)

    def describe(self) -> str:
        globs = f" ({', '.join(self.include)})" if self.include else ""
        return f"folder {self.root}{globs}"

    # -- listing -------------------------------------------------------------------------------

    def list_items(self, known: Mapping[str, str]) -> Iterator[SourceItem]:
        """Every included file under the folder, folder by folder; checksums only for files whose stat changed."""
        if not self.root.is_dir():
            raise ConnectorError(f"path: {self.root} is no longer a folder on this server")
        cache = self._read_cache()
        fresh: dict[str, list[Any]] = {}
        for key, path in self._walk():
            try:
                stat = path.stat()
            except OSError:
                continue  # deleted while we walked: gone, as far as this sync knows
            cached = cache.get(key)
            if cached and cached[0] == stat.st_size and cached[1] == stat.st_mtime_ns:
                checksum = str(cached[2])
            else:
                try:
                    checksum = _checksum(path)
                except OSError:  # unreadable: listed all the same, so its fetch names the file and why
                    yield SourceItem(key=key, version=f"unreadable:{stat.st_mtime_ns}", filename=path.name)
                    continue
            fresh[key] = [stat.st_size, stat.st_mtime_ns, checksum]
            yield SourceItem(key=key, version=f"sha256:{checksum}", filename=path.name)
        self._write_cache(fresh)

    def _walk(self) -> Iterator[tuple[str, Path]]:
        # os.walk without followlinks: a symlinked folder (possibly a loop, or /) is never entered.
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not hidden(d))  # not even entered
            here = Path(dirpath)
            for name in sorted(filenames):
                if hidden(name):
                    continue
                path = here / name
                key = PurePosixPath(path.relative_to(self.root).as_posix()).as_posix()
                if not self._filter.keeps(key):
                    continue
                if path.is_symlink() and not self._inside(path):
                    continue
                if path.is_file():
                    yield key, path

    def _inside(self, path: Path) -> bool:
        try:
            path.resolve(strict=True).relative_to(self.root)
        except (OSError, ValueError):
            return False
        return True

    # -- fetching ------------------------------------------------------------------------------

    def fetch(self, item: SourceItem) -> FetchedItem:
        path = self.root / item.key
        if ".." in PurePosixPath(item.key).parts or (path.is_symlink() and not self._inside(path)):
            raise ItemFetchError(item.key, "outside the synced folder")
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ItemFetchError(item.key, "deleted while the sync ran", transient=True) from None
        except OSError as exc:
            raise ItemFetchError(item.key, f"cannot be read: {exc.strerror or exc}") from None
        return FetchedItem(data=data, filename=item.filename or path.name)

    # -- the stat cache ------------------------------------------------------------------------

    def _read_cache(self) -> dict[str, list[Any]]:
        try:
            data = json.loads((self.work_dir / STAT_CACHE).read_text())
        except (OSError, ValueError):
            return {}  # no cache (first sync, another host): every file is read once
        if not isinstance(data, dict) or data.get("root") != str(self.root) or not isinstance(data.get("files"), dict):
            return {}  # another folder's (the path was edited): start afresh
        return data["files"]

    def _write_cache(self, files: dict[str, list[Any]]) -> None:
        try:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            temp = self.work_dir / f"{STAT_CACHE}.tmp"
            temp.write_text(json.dumps({"root": str(self.root), "files": files}))
            os.replace(temp, self.work_dir / STAT_CACHE)
        except OSError:
            pass  # only a cache: the next sync reads the files again


def _checksum(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while piece := f.read(READ_BYTES):
            digest.update(piece)
    return digest.hexdigest()
