"""A Git host on 127.0.0.1: `git http-backend` (smart HTTP) behind a small CGI bridge, or dumb HTTP files.

Every repository under `root` is served at /<name>.git. Repositories under `root/private/` answer 401
unless the request carries Basic credentials `user:` + PRIVATE_TOKEN, as a host does for a private repo.
Each request's path and Authorization header are recorded for assertions.

    with FakeGitHost(root) as host:
        url = f"{host.base_url}/docs.git"          # smart HTTP
        dumb = f"{host.base_url}/dumb/docs.git"    # the same files as static files (after update-server-info)
"""

from __future__ import annotations

import base64
import shutil
import subprocess
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from tests.fakes.http_thread import ThreadedServer

PRIVATE_TOKEN = "s3cret-token-value"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    authorization: str


class FakeGitHost(ThreadedServer):
    """A thread serving Git repositories over HTTP; `requests` lists what it was asked."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[Request] = []
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                host._handle(self)

            def do_POST(self) -> None:
                host._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        super().__init__(Handler)

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        auth = handler.headers.get("Authorization", "")
        self.requests.append(Request(handler.command, handler.path, auth))
        path, _, query = handler.path.partition("?")
        if path.startswith("/private/") and auth != "Basic " + base64.b64encode(f"user:{PRIVATE_TOKEN}".encode()).decode():
            handler.send_response(401)
            handler.send_header("WWW-Authenticate", 'Basic realm="git"')
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        if path.startswith("/dumb/"):
            self._serve_file(handler, self.root / path.removeprefix("/dumb/"))
            return
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        env = {
            "PATH": "/usr/bin:/bin:/usr/local/bin",
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": handler.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": handler.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(length),
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_CONTENT_ENCODING": handler.headers.get("Content-Encoding", ""),
            "GIT_PROTOCOL": handler.headers.get("Git-Protocol", ""),
        }
        result = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, timeout=60)
        head, _, payload = result.stdout.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        handler.send_response(status)
        for name, value in headers:
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def _serve_file(self, handler: BaseHTTPRequestHandler, file: Path) -> None:
        if not file.resolve().is_relative_to(self.root.resolve()) or not file.is_file():
            handler.send_response(404)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        data = file.read_bytes()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/octet-stream")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)


class WorkRepo:
    """A repository a test writes and commits to, pushing (or force-pushing) to a bare one it serves."""

    def __init__(self, path: Path, served: Path, *, branch: str = "main") -> None:
        self.path = path
        self.served = served
        self.branch = branch
        path.mkdir(parents=True)
        served.parent.mkdir(parents=True, exist_ok=True)
        self.git("init", "--quiet", f"--initial-branch={branch}", str(path), cwd=path.parent)
        self.git("init", "--quiet", "--bare", f"--initial-branch={branch}", str(served), cwd=path.parent)

    def git(self, *args: str, cwd: Path | None = None) -> str:
        command = ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false", *args]
        result = subprocess.run(command, cwd=cwd or self.path, capture_output=True, text=True, timeout=60, check=False)
        if result.returncode:
            raise AssertionError(f"git {' '.join(args)} failed: {result.stderr}")
        return result.stdout

    def write(self, files: dict[str, str | bytes | None]) -> None:
        """Writes (or, for None, deletes) files in the working tree."""
        for name, content in files.items():
            file = self.path / name
            if content is None:
                file.unlink()
                continue
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_bytes(content if isinstance(content, bytes) else content.encode())

    def commit(self, files: dict[str, str | bytes | None], message: str = "change") -> str:
        """Writes the files, commits everything and pushes; returns the new commit."""
        self.write(files)
        self.git("add", "--all")
        self.git("commit", "--quiet", "-m", message)
        self.push()
        return self.head()

    def push(self, *, force: bool = False) -> None:
        self.git("push", "--quiet", *(["--force"] if force else []), str(self.served), f"HEAD:refs/heads/{self.branch}")
        self.git("--git-dir", str(self.served), "update-server-info")  # for dumb HTTP clients

    def head(self) -> str:
        return self.git("rev-parse", "HEAD").strip()

    def blob(self, path: str) -> str:
        return self.git("rev-parse", f"HEAD:{path}").strip()

    def rewrite(self, files: dict[str, str | bytes], message: str = "new history") -> str:
        """Replaces the branch with a new history of one commit holding only `files`, force-pushed."""
        self.git("checkout", "--quiet", "--orphan", "rewritten")
        self.git("rm", "-rf", "--quiet", ".")
        for child in self.path.iterdir():
            if child.name != ".git":
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        self.write(dict(files))
        self.git("add", "--all")
        self.git("commit", "--quiet", "-m", message)
        self.git("branch", "-M", self.branch)
        self.push(force=True)
        return self.head()
