"""A web site as a source: its pages, crawled from a start URL or read from its sitemap, each page one document.

Settings: `start_url` (crawl same-site links from it) and/or `sitemap_url` (the pages a sitemap.xml or sitemap
index lists; with no start_url, only those), `page_limit` (default 500 requests), `delay_seconds` (between
requests, default 0.5; robots.txt's Crawl-delay wins when longer), `include` / `exclude` (URL path prefixes:
"/docs/"), `max_page_bytes` (default 10 MB), `timeout_seconds` (per request, default 20).

What a listing does, page by page:
- only the site's own pages (same scheme, host and port as the start URL) are requested; robots.txt is
  honoured for the user agent "Lorebot", and so are `<meta name="robots" content="noindex|nofollow">` and
  rel="nofollow" links; excluded prefixes are never requested, and with `include` only those are (plus the
  start page, for its links);
- redirects are followed within the site, and the page is listed under the URL it ends at; a redirect off
  the site, or a loop, is not followed: the page is listed with `unavailable` saying so, so the sync reports
  it as a failed item naming the URL (a page synced before is kept as it was);
- 404 and 410 mean the page is gone (it is not listed, so its document is removed); 401 and 403 (a page
  behind a login) are reported like a refused redirect, and a start URL behind one fails the listing;
- a 5xx answer, a timeout or a dropped connection is transient: the page is listed with its previous
  version and `unavailable` saying what the server answered, so a server having a bad minute never
  deletes a document (the pipeline keeps it as synced and reports the page as failed; the next sync tries
  again); a page never synced has an empty version and its fetch raises a transient ItemFetchError;
- a page synced before is revalidated with If-None-Match / If-Modified-Since; a 304 lists it with its
  known version without downloading it (its links are remembered in the work folder from the last time);
- only HTML, plain text, Markdown and PDF are kept; a page over the size limit is listed with a version
  that says so and fails alone at fetch, with the limit in its error.
- when the page limit stops the crawl, pages synced before that it did not reach are listed with their
  previous version (kept, not removed); pages it did reach and found gone are removed as usual; describe()
  then says how many links were left, so the run's page shows that the limit cut the crawl short.
An item's version is its ETag, else its Last-Modified, else a checksum of its bytes. The pages a listing
downloaded are kept in the work folder, so fetching the changed ones costs no second request; HTML is
reduced to its main content at fetch (ragcore.connectors.webpages.main_content).

If the site as a whole cannot be read (the start page or sitemap unreachable or erroring, robots.txt
answering 5xx), the listing raises ConnectorError before it lists anything, so nothing is removed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import mimetypes
import ssl
import time
import urllib.robotparser
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx
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
from ragcore.connectors.webpages import main_content, normalise_url, origin, read_page, read_sitemap

log = structlog.get_logger(__name__, component="web")

USER_AGENT = "Lorebot"  # the token robots.txt rules name; the header adds a version
_HEADERS = {"User-Agent": f"{USER_AGENT}/1.0 (documentation sync)", "Accept": "text/html, text/markdown, text/plain, application/pdf;q=0.9, */*;q=0.1"}
# Content types kept, and the file extension the loaders are told (they sniff the bytes as well).
_KEPT_TYPES = {
    "text/html": ".html",
    "application/xhtml+xml": ".html",
    "text/plain": ".txt",
    "text/markdown": ".md",
    "text/x-markdown": ".md",
    "application/pdf": ".pdf",
}
_MAX_REDIRECTS = 10
_MAX_SITEMAPS = 50
_TOO_LARGE = "too-large:"  # the version of a page over the size limit: its fetch fails with the reason
_STATE_FILE = "crawl.json"


@dataclass(frozen=True)
class _Page:
    """One page as a listing found it."""

    key: str
    version: str
    title: str = ""
    media_type: str = ""
    links: tuple[str, ...] = ()
    indexed: bool = True  # False for a page whose robots meta tag says noindex: followed, never listed
    unavailable: str = ""  # the server's transient error this time (SourceItem.unavailable)


class _Gone(Exception):
    """A page that is not (or no longer) a page of this source: 404, skipped redirect, unkept type."""


class _Unavailable(Exception):
    """A page the server could not serve just now: 5xx, timeout, dropped connection."""


class _Refused(_Gone):
    """A page whose redirects leave the site or loop, or that needs a login (401, 403): not followed, and
    reported (a broken link or a permission to fix)."""


class WebConnector:
    """The pages of one web site."""

    kind: ClassVar[str] = "web"
    label: ClassVar[str] = "Web site"
    settings: ClassVar[tuple[Setting, ...]] = (
        Setting("start_url", "Start URL", help="The page the crawl starts from (same-site links are followed)."),
        Setting("sitemap_url", "Sitemap URL", help="A sitemap.xml listing the pages, instead of or beside a start URL."),
        Setting("page_limit", "Page limit", "int", "At most this many pages (default 500)."),
        Setting("delay_seconds", "Delay between requests (s)", "float", "Politeness delay (default 0.5)."),
        Setting("include", "Include", "lines", "Only URLs under these paths, one per line (/docs/)."),
        Setting("exclude", "Exclude", "lines", "URLs under these paths are left out, one per line."),
        Setting("max_page_bytes", "Largest page (bytes)", "int", "Larger pages fail alone (default 10 MB)."),
        Setting("timeout_seconds", "Timeout per request (s)", "float", "Default 20."),
    )

    def __init__(
        self,
        *,
        start_url: str,
        sitemap_url: str,
        page_limit: int,
        delay_seconds: float,
        include: tuple[str, ...],
        exclude: tuple[str, ...],
        max_page_bytes: int,
        timeout_seconds: float,
        work_dir: Path,
    ) -> None:
        self.start_url = start_url
        self.sitemap_url = sitemap_url
        self.site = origin(start_url or sitemap_url)
        self.page_limit = page_limit
        self.delay_seconds = delay_seconds
        self.include = include
        self.exclude = exclude
        self.max_page_bytes = max_page_bytes
        self.timeout_seconds = timeout_seconds
        self.work_dir = work_dir
        self._client: httpx.Client | None = None
        self._robots: urllib.robotparser.RobotFileParser | None = None
        self._last_request = 0.0
        self.requests = 0  # page requests made by the last listing (the page limit counts these)
        self.left_unvisited = 0  # links the page limit kept the last listing from visiting

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, work_dir: Path) -> WebConnector:
        """Validate the settings and build the connector; raises ConnectorConfigError naming the field."""
        start_url = _url_setting(config, "start_url")
        sitemap_url = _url_setting(config, "sitemap_url")
        if not start_url and not sitemap_url:
            raise ConnectorConfigError("start_url", "give a start URL or a sitemap URL")
        if start_url and sitemap_url and origin(start_url) != origin(sitemap_url):
            raise ConnectorConfigError("sitemap_url", f"must be on the same site as the start URL ({origin(start_url)})")
        return cls(
            start_url=start_url,
            sitemap_url=sitemap_url,
            page_limit=int(_number(config, "page_limit", 500, minimum=1)),
            delay_seconds=_number(config, "delay_seconds", 0.5, minimum=0),
            include=_prefixes(config, "include"),
            exclude=_prefixes(config, "exclude"),
            max_page_bytes=int(_number(config, "max_page_bytes", 10 * 1024 * 1024, minimum=1)),
            timeout_seconds=_number(config, "timeout_seconds", 20, minimum=0.1),
            work_dir=work_dir,
        )

    def list_items(self, known: Mapping[str, str]) -> Iterator[SourceItem]:
        """Every page of the site now; a site that cannot be read at all raises before the first item."""
        started = time.monotonic()
        pages = self._crawl(known)
        log.info("web.listed", site=self.site, pages=len(pages), requests=self.requests, seconds=round(time.monotonic() - started, 2))
        for page in pages:
            yield SourceItem(key=page.key, version=page.version, url=page.key, title=page.title,
                             filename=_filename(page.key, page.media_type), unavailable=page.unavailable)

    def fetch(self, item: SourceItem) -> FetchedItem:
        """The page's content (HTML reduced to its main part), from this listing's download or a new request."""
        if item.unavailable and not item.version:  # never synced, and the listing could not read it just now
            raise self._count(ItemFetchError(item.key, item.unavailable, transient=True))
        if item.version.startswith(_TOO_LARGE):
            raise self._count(ItemFetchError(item.key, f"{item.version.removeprefix(_TOO_LARGE)} bytes is over the {self.max_page_bytes}-byte page limit"))
        stored = self._stored_body(item.key)
        if stored is not None:
            data, media_type = stored
        else:
            try:
                with self._session():
                    response = self._get(item.key, {})
                    data, media_type = self._body(response), _media_type(response)
            except _Gone as exc:
                raise self._count(ItemFetchError(item.key, str(exc))) from None
            except _Unavailable as exc:
                raise self._count(ItemFetchError(item.key, str(exc), transient=True)) from None
            except _TooLarge as exc:
                raise self._count(ItemFetchError(item.key, str(exc))) from None
        if media_type in ("text/html", "application/xhtml+xml"):
            data = main_content(data, item.title)
        return FetchedItem(data=data, filename=item.filename or _filename(item.key, media_type), media_type=media_type)

    def describe(self) -> str:
        """ "web https://docs.example.org/ (sitemap, at most 500 pages)"."""
        how = " + ".join(part for part in ("links" if self.start_url else "", "sitemap" if self.sitemap_url else "") if part)
        described = f"web {self.start_url or self.sitemap_url} ({how}, at most {self.page_limit} pages)"
        if self.left_unvisited:
            described += (f"; the page limit stopped the crawl with {self.left_unvisited} "
                          f"link{'s' if self.left_unvisited != 1 else ''} not visited")
        return described

    # --- the crawl ---

    def _crawl(self, known: Mapping[str, str]) -> list[_Page]:
        state = self._load_state()
        bodies = self.work_dir / "pages"
        if bodies.exists():
            for old in bodies.iterdir():
                old.unlink()
        bodies.mkdir(parents=True, exist_ok=True)
        self.requests = 0
        with self._session():
            self._robots = self._read_robots()
            pages = self._walk(self._seeds(), known, state)
        self._save_state({page.key: {"version": page.version, "links": list(page.links), "title": page.title,
                                     "media_type": page.media_type} for page in pages})  # fmt: skip
        return pages

    @contextmanager
    def _session(self) -> Iterator[httpx.Client]:
        """One HTTP client (one connection pool) for a listing or a fetch; never reads proxies from the environment."""
        client = httpx.Client(
            headers=_HEADERS, timeout=self.timeout_seconds, follow_redirects=False, trust_env=False, verify=_tls()
        )
        with client:
            self._client = client
            try:
                yield client
            finally:
                self._client = None

    def _seeds(self) -> list[str]:
        seeds = [self.start_url] if self.start_url else []
        if self.sitemap_url:
            seeds.extend(self._sitemap_pages(self.sitemap_url))
        elif self._robots is not None:
            for sitemap in self._robots.site_maps() or []:  # robots.txt may name the site's sitemaps
                url = normalise_url(sitemap)
                if url and origin(url) == self.site:
                    try:
                        seeds.extend(self._sitemap_pages(url))
                    except ConnectorError:
                        pass  # a broken sitemap robots.txt points at does not stop a crawl from the start URL
        return seeds

    def _walk(self, seeds: list[str], known: Mapping[str, str], state: dict[str, Any]) -> list[_Page]:
        queue = deque(dict.fromkeys(seeds))
        seen = set(queue)
        listed: dict[str, _Page] = {}
        visited: set[str] = set()
        follow = bool(self.start_url)
        while queue and self.requests < self.page_limit:
            url = queue.popleft()
            visited.add(url)
            # The start page is requested for its links even when `include` leaves it out of the listing.
            if not self._robots_allow(url) or not (self._listable(url) or url == self.start_url):
                continue
            try:
                page = self._visit(url, known, state)
            except _Gone as exc:
                if url == self.start_url:
                    raise self._count(ConnectorConfigError("start_url", f"{url}: {exc}")) from None
                if not isinstance(exc, _Refused):
                    log.info("web.page_skipped", url=url, reason=str(exc))
                    continue
                # A redirect off the site or in a loop, or a login wall: reported like an unavailable page
                # (listed, so the sync names it as a failed item), never silently dropped.
                page = self._unavailable(url, known, state, exc)
            except _Unavailable as exc:
                if url == self.start_url:  # the site is down: list nothing rather than half of it
                    raise self._count(ConnectorError(f"start_url {url}: {exc}")) from None
                page = self._unavailable(url, known, state, exc)
                # Listed as it was, so a transient error never removes a document (see the module docstring).
                previous = state.get(url, {})
                page = _Page(url, known.get(url, ""), previous.get("title", ""), previous.get("media_type", ""),
                             tuple(previous.get("links", ())), unavailable=str(exc))  # fmt: skip
            if page.key in listed:
                continue  # a second URL redirecting to a page already listed
            seen.add(page.key)
            if page.indexed and self._listable(page.key):
                listed[page.key] = page
            if follow:
                for link in page.links:
                    if link not in seen and origin(link) == self.site:
                        seen.add(link)
                        queue.append(link)
        self.left_unvisited = len(queue)
        if queue:
            log.warning("web.page_limit_reached", site=self.site, limit=self.page_limit, left=len(queue))
            # The crawl stopped short: a page synced before that it did not reach is listed as it was, not
            # removed, so a limit reached by a different path through the site never churns documents.
            for url, version in known.items():
                if url not in listed and url not in visited and self._listable(url) and self._robots_allow(url):
                    previous = state.get(url, {})
                    listed[url] = _Page(url, version, previous.get("title", ""), previous.get("media_type", ""),
                                        tuple(previous.get("links", ())))  # fmt: skip
        return list(listed.values())

    def _unavailable(self, url: str, known: Mapping[str, str], state: dict[str, Any], exc: Exception) -> _Page:
        """The page listed as it was last time, with why it could not be read now (SourceItem.unavailable)."""
        metrics.PIPELINE_ERRORS.labels("web").inc()
        log.warning("web.page_unavailable", url=url, reason=str(exc))
        # Listed as it was, so a transient error never removes a document (see the module docstring).
        previous = state.get(url, {})
        return _Page(url, known.get(url, ""), previous.get("title", ""), previous.get("media_type", ""),
                     tuple(previous.get("links", ())), unavailable=str(exc))  # fmt: skip

    def _visit(self, url: str, known: Mapping[str, str], state: dict[str, Any]) -> _Page:
        """Requests one page (following redirects within the site) and reads what the listing needs from it."""
        hops: list[str] = []
        current = url
        while True:
            previous = state.get(current, {})
            version = known.get(current, "")
            # Revalidate only when the links of the known version are remembered: a 304 carries none.
            conditional = version if version and previous.get("version") == version else ""
            self.requests += 1
            try:
                response = self._get(current, _validators(conditional))
            except _TooLarge as exc:
                return _Page(current, f"{_TOO_LARGE}{exc.size}", previous.get("title", ""))
            if response.status_code == 304:
                if not conditional:
                    raise _Unavailable("the server answered 304 to a request with no validator")
                return _Page(current, conditional, previous.get("title", ""), previous.get("media_type", ""),
                             tuple(previous.get("links", ())))  # fmt: skip
            if response.is_redirect:
                target = normalise_url(response.headers.get("Location", ""), current)
                hops.append(current)
                if not target or origin(target) != self.site:
                    raise _Refused(f"redirects off the site to {target or response.headers.get('Location')!r} "
                                   f"(only {self.site} is synced; exclude the path to leave it out)")
                if target in hops or len(hops) > _MAX_REDIRECTS:
                    path = " → ".join(urlsplit(hop).path or "/" for hop in [*hops, target])
                    raise _Refused(f"redirect loop ({path})" if target in hops
                                   else f"more than {_MAX_REDIRECTS} redirects ({path})")
                if not self._robots_allow(target):
                    raise _Gone(f"redirects to {target}, which robots.txt forbids")
                current = target
                continue
            media_type = _media_type(response)
            data = self._body(response)
            self._store_body(current, data, media_type)
            links = read_page(data, current) if media_type in ("text/html", "application/xhtml+xml") else None
            new_version = _version(response, data)
            if links is None:
                return _Page(current, new_version, media_type=media_type)
            return _Page(current, new_version, links.title, media_type, links.links if links.follow else (), links.index)

    def _get(self, url: str, headers: dict[str, str]) -> httpx.Response:
        """One GET, streamed: the status and headers are checked before the body is read (and capped)."""
        client = self._client
        assert client is not None, "requests are made inside _session()"
        self._wait()
        try:
            request = client.build_request("GET", url, headers=headers)
            response = client.send(request, stream=True, follow_redirects=False)
        except httpx.TimeoutException:
            raise _Unavailable(f"no answer within {self.timeout_seconds:g} s") from None
        except httpx.HTTPError as exc:
            raise _Unavailable(f"cannot connect ({exc})") from None
        finally:
            self._last_request = time.monotonic()
        status = response.status_code
        if status in (404, 410):
            response.close()
            raise _Gone(f"{status} {'not found' if status == 404 else 'gone'}")
        if status >= 500 or status == 429:
            response.close()
            raise _Unavailable(f"the server answered {status}")
        if status == 304 or response.is_redirect:
            response.close()
            return response
        if status in (401, 403):  # behind a login: reported, and a page synced before is kept, never removed
            response.close()
            raise _Refused(f"the server answered {status}: the page needs a login Lorebot does not have")
        if status != 200:
            response.close()
            raise _Gone(f"the server answered {status}")
        media_type = _media_type(response) or _guess_type(url)
        if media_type not in _KEPT_TYPES:
            response.close()
            raise _Gone(f"{media_type or 'no content type'} is not a page kind Lorebot reads")
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > self.max_page_bytes:
            response.close()
            raise _TooLarge(int(length), self.max_page_bytes)
        return response

    def _body(self, response: httpx.Response) -> bytes:
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > self.max_page_bytes:
                    raise _TooLarge(size, self.max_page_bytes)
                chunks.append(chunk)
        except httpx.HTTPError as exc:
            raise _Unavailable(f"the connection dropped ({exc})") from None
        finally:
            response.close()
        return b"".join(chunks)

    def _wait(self) -> None:
        """Politeness: at least delay_seconds (or robots.txt's Crawl-delay) between two requests."""
        delay = self.delay_seconds
        if self._robots is not None:
            crawl_delay = self._robots.crawl_delay(USER_AGENT)
            if crawl_delay:
                delay = max(delay, float(crawl_delay))
        remaining = self._last_request + delay - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)

    # --- robots.txt, sitemaps, filters ---

    def _read_robots(self) -> urllib.robotparser.RobotFileParser | None:
        url = f"{self.site}/robots.txt"
        try:
            response = self._get(url, {})
            body = self._body(response) if response.status_code == 200 else b""
        except _Unavailable as exc:
            # RFC 9309: a robots.txt the server cannot serve means "crawl nothing for now", not "crawl everything".
            raise self._count(ConnectorError(f"{url}: {exc}; the site is not crawled until it answers")) from None
        except (_Gone, _TooLarge):
            return None  # none (or unreadable): everything is allowed
        robots = urllib.robotparser.RobotFileParser(url)
        robots.parse(body.decode("utf-8", "replace").splitlines())
        return robots

    def _robots_allow(self, url: str) -> bool:
        return self._robots is None or self._robots.can_fetch(USER_AGENT, url)

    def _listable(self, url: str) -> bool:
        path = urlsplit(url).path
        if any(path.startswith(prefix) for prefix in self.exclude):
            return False
        return not self.include or any(path.startswith(prefix) for prefix in self.include)

    def _sitemap_pages(self, url: str) -> list[str]:
        """The page URLs of a sitemap, following a sitemap index (same site, at most _MAX_SITEMAPS files)."""
        todo, done, pages = [url], set[str](), list[str]()
        while todo and len(done) < _MAX_SITEMAPS:
            current = todo.pop(0)
            done.add(current)
            try:
                response = self._get_any(current)
                sitemap = read_sitemap(self._body(response), max_bytes=self.max_page_bytes)
            except (_Gone, _Unavailable, _TooLarge, ValueError) as exc:
                if current == url:
                    error: ConnectorError = ConnectorConfigError("sitemap_url", f"{current}: {exc}")
                elif isinstance(exc, _Gone) and not isinstance(exc, _Refused):
                    log.warning("web.sitemap_skipped", url=current, reason=str(exc))
                    continue  # 404, 410: that part of the index is gone, and its pages with it
                else:
                    # Needs a login, failing, too large or broken: its pages are still there, and listing without them
                    # would delete their documents. The sync fails naming it, and keeps what it has.
                    error = ConnectorError(f"{current} (listed in the sitemap index {url}): {exc}")
                error.transient = isinstance(exc, _Unavailable)
                raise self._count(error) from None
            pages.extend(page for page in sitemap.pages if origin(page) == self.site)
            todo.extend(s for s in sitemap.sitemaps if origin(s) == self.site and s not in done)
        return pages

    def _get_any(self, url: str) -> httpx.Response:
        """A GET of a non-page file (a sitemap): redirects within the site followed, any content type."""
        assert self._client is not None
        for _ in range(_MAX_REDIRECTS):
            self._wait()
            try:
                response = self._client.send(self._client.build_request("GET", url), stream=True)
            except httpx.HTTPError as exc:
                raise _Unavailable(f"cannot connect ({exc})") from None
            finally:
                self._last_request = time.monotonic()
            if response.is_redirect:
                response.close()
                url = normalise_url(response.headers.get("Location", ""), url)
                if not url or origin(url) != self.site:
                    raise _Gone("redirects off the site")
                continue
            if response.status_code in (401, 403):
                response.close()
                raise _Refused(f"the server answered {response.status_code}: it needs a login Lorebot does not have")
            if 400 <= response.status_code < 500:
                response.close()
                raise _Gone(f"{response.status_code}")
            if response.status_code >= 500:
                response.close()
                raise _Unavailable(f"the server answered {response.status_code}")
            return response
        raise _Gone("redirect loop")

    # --- the work folder: the last listing's links, and this listing's downloads ---

    def _load_state(self) -> dict[str, Any]:
        try:
            state = json.loads((self.work_dir / _STATE_FILE).read_text())
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def _save_state(self, state: dict[str, Any]) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        temporary = self.work_dir / f"{_STATE_FILE}.tmp"
        temporary.write_text(json.dumps(state))
        temporary.replace(self.work_dir / _STATE_FILE)  # atomic: a killed sync leaves the old state whole

    def _body_path(self, key: str) -> Path:
        return self.work_dir / "pages" / hashlib.sha256(key.encode()).hexdigest()

    def _store_body(self, key: str, data: bytes, media_type: str) -> None:
        path = self._body_path(key)
        path.write_bytes(data)
        path.with_suffix(".type").write_text(media_type)

    def _stored_body(self, key: str) -> tuple[bytes, str] | None:
        path = self._body_path(key)
        try:
            return path.read_bytes(), path.with_suffix(".type").read_text()
        except OSError:
            return None

    @staticmethod
    def _count(error: ConnectorError) -> ConnectorError:
        metrics.PIPELINE_ERRORS.labels("web").inc()
        return error


class _TooLarge(Exception):
    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        super().__init__(f"{size} bytes is over the {limit}-byte page limit")


@functools.cache
def _tls() -> ssl.SSLContext:
    """The system's CA certificates, loaded once: loading them costs ~0.1–0.3 s, more than a page request."""
    return ssl.create_default_context()


def _validators(version: str) -> dict[str, str]:
    if version.startswith("etag:"):
        return {"If-None-Match": version.removeprefix("etag:")}
    if version.startswith("modified:"):
        return {"If-Modified-Since": version.removeprefix("modified:")}
    return {}


def _version(response: httpx.Response, data: bytes) -> str:
    """ETag, else Last-Modified (when it parses as a date), else a checksum of the bytes."""
    etag = response.headers.get("ETag", "").strip()
    if etag:
        return f"etag:{etag}"
    modified = response.headers.get("Last-Modified", "").strip()
    if modified:
        try:
            parsedate_to_datetime(modified)
            return f"modified:{modified}"
        except (TypeError, ValueError):
            pass
    return f"sha256:{hashlib.sha256(data).hexdigest()[:32]}"


def _media_type(response: httpx.Response) -> str:
    return response.headers.get("Content-Type", "").split(";")[0].strip().lower()


def _guess_type(url: str) -> str:
    guessed = mimetypes.guess_type(urlsplit(url).path)[0] or ""
    return "text/markdown" if urlsplit(url).path.endswith(".md") else guessed


def _filename(url: str, media_type: str) -> str:
    """The name the loaders are told: the URL's last part, with the extension its content type has."""
    name = PurePosixPath(urlsplit(url).path).name or "index"
    extension = _KEPT_TYPES.get(media_type, "")
    if extension and not name.lower().endswith((extension, ".htm" if extension == ".html" else extension)):
        name += extension
    return name


def _url_setting(config: Mapping[str, Any], field: str) -> str:
    value = config.get(field) or ""
    if not isinstance(value, str):
        raise ConnectorConfigError(field, "must be a URL")
    if not value.strip():
        return ""
    url = normalise_url(value)
    if not url:
        raise ConnectorConfigError(field, f"must be an http:// or https:// URL, not {value!r}")
    return url


def _prefixes(config: Mapping[str, Any], field: str) -> tuple[str, ...]:
    value = config.get(field) or []
    if isinstance(value, str):
        value = value.split()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConnectorConfigError(field, "must be a list of URL path prefixes, like /docs/")
    prefixes = tuple(item.strip() for item in value if item.strip())
    for prefix in prefixes:
        if not prefix.startswith("/"):
            raise ConnectorConfigError(field, f"a path prefix starts with /: {prefix!r}")
    return prefixes


def _number(config: Mapping[str, Any], field: str, default: float, *, minimum: float) -> float:
    value = config.get(field, default)
    if value in (None, ""):
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConnectorConfigError(field, f"must be a number, not {value!r}") from None
    if isinstance(value, bool) or number < minimum or number != number:
        raise ConnectorConfigError(field, f"must be at least {minimum:g}, not {value!r}")
    return number
