"""A small web site on 127.0.0.1 whose pages a test sets: status, headers and body per path, requests recorded.

A page with an ETag (or Last-Modified) answers 304 to a request whose If-None-Match (or If-Modified-Since)
matches, as a real server does. Tests change `pages` between listings to edit the site.

    with FakeSite() as site:
        site.html("/", "<a href='/guide'>Guide</a>", etag='"v1"')
        ...
        assert site.requests_for("/")[-1].headers["If-None-Match"] == '"v1"'
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fakes.http_thread import ThreadedServer


@dataclass
class Page:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    status: int
    at: float = field(default_factory=time.monotonic)  # when it arrived: politeness delays are asserted on it


class FakeSite(ThreadedServer):
    """A thread serving `pages`; anything else is a 404."""

    def __init__(self) -> None:
        self.pages: dict[str, Page] = {}
        self.requests: list[Request] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real sites: the crawler reuses its connection
            disable_nagle_algorithm = True  # headers and body are two writes; Nagle would hold the second 40 ms

            def do_GET(self) -> None:
                site._answer(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        super().__init__(Handler)

    def url(self, path: str) -> str:
        return self.base_url + path

    def html(self, path: str, body: str, *, title: str = "", status: int = 200, **headers: str) -> None:
        """Sets a page of HTML; keyword headers use underscores (etag='"v1"', last_modified=...)."""
        document = f"<!doctype html><html><head><title>{title}</title></head><body>{body}</body></html>"
        self.set(path, document.encode(), status=status, content_type="text/html; charset=utf-8", **headers)

    def set(self, path: str, body: bytes, *, status: int = 200, content_type: str = "text/html", **headers: str) -> None:
        names = {"etag": "ETag", "last_modified": "Last-Modified", "location": "Location"}
        page_headers = {"Content-Type": content_type} if content_type else {}
        page_headers.update({names.get(k, k.replace("_", "-")): v for k, v in headers.items()})
        self.pages[path] = Page(status, body, page_headers)

    def redirect(self, path: str, location: str, status: int = 301) -> None:
        self.pages[path] = Page(status, b"", {"Location": location})

    def requests_for(self, path: str) -> list[Request]:
        return [request for request in self.requests if request.path == path]

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        page = self.pages.get(handler.path) or Page(404, b"<h1>Not found</h1>", {"Content-Type": "text/html"})
        status = page.status
        etag, modified = page.headers.get("ETag"), page.headers.get("Last-Modified")
        if status == 200 and (
            (etag and handler.headers.get("If-None-Match") == etag)
            or (not etag and modified and handler.headers.get("If-Modified-Since") == modified)
        ):
            status = 304
        self.requests.append(Request(handler.path, dict(handler.headers.items()), status))
        body = b"" if status == 304 else page.body
        handler.send_response(status)
        for name, value in page.headers.items():
            if status != 304 or name in ("ETag", "Last-Modified"):
                handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
