"""What the web kind reads out of what a site serves: normalised URLs, a page's links and title, sitemaps, main content.

URLs are compared and stored in one normal form, so one page is one document:
- the fragment is dropped (`/guide#install` is `/guide`);
- scheme and host are lower-cased and a default port is dropped (`HTTP://Docs.Example:80/` is `http://docs.example/`);
- an empty path is `/`;
- a trailing slash is kept as the site wrote it: `/docs` and `/docs/` are different URLs to a server, and a site
  that treats them as one redirects one to the other (the redirect's target is the key);
- the query is kept (`?page=2` is another page), without `utm_*` tracking parameters, in the site's order.
"""

from __future__ import annotations

import html
import logging
import re
import zlib
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import lxml.etree
import lxml.html
import structlog

_DEFAULT_PORTS = {"http": 80, "https": 443}
_SITEMAP_NS = re.compile(r"^\{[^}]*\}")
# The main content: readability-lxml (Mozilla Readability's scoring) picks the block of the page that holds
# the text and drops navigation, sidebars, headers and footers; its output is HTML, so our HTML loader still
# keeps headings, code blocks (with their language) and tables. Its log is chatty at INFO about its retries.
logging.getLogger("readability.readability").setLevel(logging.WARNING)
log = structlog.get_logger(__name__, component="web")


def normalise_url(url: str, base: str = "") -> str:
    """The URL in the form keys are stored in (see the module docstring); "" for what is not an http(s) URL."""
    try:
        parts = urlsplit(urljoin(base, url.strip()) if base else url.strip())
        port = parts.port
    except ValueError:  # a malformed port or IPv6 literal in a link is the page's typo, not ours
        return ""
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return ""
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    query = parts.query
    if "utm_" in query:
        query = urlencode([(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if not k.startswith("utm_")])
    return urlunsplit((scheme, netloc, parts.path or "/", query, ""))


def origin(url: str) -> str:
    """scheme://host[:port] of a normalised URL: what "the same site" means."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True)
class PageLinks:
    """What a listing needs from an HTML page: its title, its links, and whether it may be indexed or followed."""

    title: str
    links: tuple[str, ...]
    index: bool = True
    follow: bool = True


def read_page(body: bytes, url: str) -> PageLinks:
    """The title and the (normalised, absolute) links of an HTML page, and what its robots meta tag allows."""
    try:
        root = lxml.html.document_fromstring(body)
    except (lxml.etree.ParserError, ValueError):
        return PageLinks("", ())
    base = url
    for href in root.xpath("//base/@href")[:1]:
        base = urljoin(url, str(href))
    title = " ".join(" ".join(str(t) for t in root.xpath("//title//text()")[:50]).split())
    robots = " ".join(str(c) for c in root.xpath("//meta[translate(@name,'ROBTS','robts')='robots']/@content")).lower()
    links: dict[str, None] = {}
    for anchor in root.xpath("//a[@href] | //area[@href]"):
        if "nofollow" in str(anchor.get("rel") or "").lower():
            continue
        link = normalise_url(str(anchor.get("href")), base)
        if link:
            links[link] = None
    return PageLinks(title, tuple(links), index="noindex" not in robots, follow="nofollow" not in robots)


@dataclass(frozen=True)
class Sitemap:
    """A sitemap's page URLs, or (for a sitemap index) the URLs of further sitemaps."""

    pages: tuple[str, ...]
    sitemaps: tuple[str, ...]


def read_sitemap(body: bytes, *, max_bytes: int) -> Sitemap:
    """The <loc> URLs of a sitemap or sitemap index (gzip-compressed or not); ValueError when it is neither."""
    if body[:2] == b"\x1f\x8b":
        body = _gunzip(body, max_bytes)
    # No entities, no DTDs, no network: a sitemap is data, and XML's expansions are a way to make it huge.
    parser = lxml.etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        root = lxml.etree.fromstring(body, parser)
    except lxml.etree.XMLSyntaxError as exc:
        raise ValueError(f"not XML ({exc})") from None
    kind = _SITEMAP_NS.sub("", str(root.tag))
    if kind not in ("urlset", "sitemapindex"):
        raise ValueError(f"a <{kind}> document, not a <urlset> or <sitemapindex>")
    locs = tuple(
        url
        for element in root.iter()
        if isinstance(element.tag, str) and _SITEMAP_NS.sub("", element.tag) == "loc"
        if (url := normalise_url(element.text or ""))
    )
    return Sitemap(pages=locs, sitemaps=()) if kind == "urlset" else Sitemap(pages=(), sitemaps=locs)


def main_content(body: bytes, title: str) -> bytes:
    """The page reduced to its main content, as HTML for the loaders, with the page's <title> kept."""
    from readability import Document  # imported here: only a sync of a web source needs it

    try:
        summary = Document(body.decode("utf-8", "replace") if _is_utf8(body) else body).summary(html_partial=True)
    except Exception as error:  # readability gives up on some markup (an empty or odd page): keep the whole page then
        log.info("web.main_content_failed", title=title, error=f"{type(error).__name__}: {error}")
        return body
    if not lxml.html.fromstring(summary).text_content().strip():
        return body
    return f"<html><head><title>{html.escape(title)}</title></head><body>{summary}</body></html>".encode()


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False  # readability (lxml) then reads the page's own <meta charset>
    return True


def _gunzip(body: bytes, max_bytes: int) -> bytes:
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = decompressor.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise ValueError(f"not valid gzip ({exc})") from None
    if len(data) > max_bytes:
        raise ValueError(f"over {max_bytes} bytes once decompressed")
    return data


__all__ = ["PageLinks", "Sitemap", "main_content", "normalise_url", "origin", "read_page", "read_sitemap"]
