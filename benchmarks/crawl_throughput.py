"""Listing throughput of the synced-source kinds: a web crawl of a local site, and a Git repository's files.

    .venv/bin/python benchmarks/crawl_throughput.py [--pages 500] [--files 1000]

Web: a site of N HTML pages on 127.0.0.1 (each links to the next five and back home, every page has an
ETag), crawled from its home page with delay 0: pages/s of the first crawl (every page downloaded, links
read), then a re-crawl with the first listing's versions as `known` (every page answers 304), then the
main-content reduction (readability-lxml) of 50 pages, which a sync does only for changed pages.
Git: a repository of N Markdown files, served by `git http-backend` (smart HTTP) on 127.0.0.1: the first
listing (init + depth-1 fetch + ls-tree) and a re-listing with nothing changed (an incremental fetch).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (puts the repository on sys.path)

from ragcore.connectors import connector_class
from tests.fakes.git_http import FakeGitHost, WorkRepo
from tests.fakes.web_site import FakeSite


def bench_web(pages: int, tmp: Path) -> None:
    with FakeSite() as site:
        site.set("/robots.txt", b"User-agent: *\nDisallow: /private/\n", content_type="text/plain")
        for n in range(pages):
            path = "/" if n == 0 else f"/page/{n}"
            links = "".join(f"<a href='/page/{m}'>page {m}</a> " for m in range(n + 1, min(n + 6, pages)))
            body = f"<nav><a href='/'>Home</a></nav><main><h1>Page {n}</h1><p>{'Some words about the topic. ' * 40}</p>{links}</main>"
            site.html(path, body, title=f"Page {n}", etag=f'"{n}-v1"')
        config = {"start_url": site.url("/"), "delay_seconds": 0, "page_limit": pages + 10}
        connector = connector_class("web").from_config(config, work_dir=tmp / "web")
        started = time.perf_counter()
        first = list(connector.list_items({}))
        crawl = time.perf_counter() - started
        started = time.perf_counter()
        for item in first[:50]:
            connector.fetch(item)
        reduce = (time.perf_counter() - started) / min(50, len(first))
        known = {item.key: item.version for item in first}
        site.requests.clear()
        started = time.perf_counter()
        again = list(connector_class("web").from_config(config, work_dir=tmp / "web").list_items(known))
        recrawl = time.perf_counter() - started
        not_modified = sum(1 for request in site.requests if request.status == 304)
    print(f"web crawl, {len(first)} pages, delay 0: {crawl:.2f} s = {len(first) / crawl:.0f} pages/s")
    print(f"web re-crawl, {len(again)} pages, {not_modified} answered 304: {recrawl:.2f} s = {len(again) / recrawl:.0f} pages/s")
    print(f"web fetch (main content of a changed page, from the listing's download): {reduce * 1000:.1f} ms/page")


def bench_git(files: int, tmp: Path) -> None:
    repo = WorkRepo(tmp / "work", tmp / "served" / "big.git")
    repo.commit({f"docs/section-{n % 20}/page-{n}.md": f"# Page {n}\n\n{'Words. ' * 50}\n" for n in range(files)}, "many files")
    with FakeGitHost(tmp / "served") as host:
        config = {"url": f"{host.base_url}/big.git"}
        started = time.perf_counter()
        first = list(connector_class("git").from_config(config, work_dir=tmp / "git").list_items({}))
        clone = time.perf_counter() - started
        known = {item.key: item.version for item in first}
        started = time.perf_counter()
        again = list(connector_class("git").from_config(config, work_dir=tmp / "git").list_items(known))
        refetch = time.perf_counter() - started
    assert {item.version for item in again} == set(known.values())
    print(f"git first listing (clone depth 1 over smart HTTP), {len(first)} files: {clone:.2f} s")
    print(f"git re-listing, nothing changed (fetch + ls-tree), {len(again)} files: {refetch:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=500)
    parser.add_argument("--files", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        bench_web(args.pages, Path(folder))
        bench_git(args.files, Path(folder))


if __name__ == "__main__":
    main()
