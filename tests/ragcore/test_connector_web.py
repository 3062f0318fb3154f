"""The web site kind, against a real local site: sitemap, robots.txt, a redirect, a 404, a 500, ETags, off-site links."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ragcore.connectors import ConnectorConfigError, ConnectorError, ItemFetchError, SourceItem, connector_class
from ragcore.connectors.web import WebConnector
from ragcore.connectors.webpages import normalise_url
from ragcore.loaders import load_bytes
from tests.fakes.web_site import FakeSite

NAV = "<nav><a href='/'>Home</a> <a href='/guide/install'>Install</a> Site navigation menu</nav>"
FOOTER = "<footer>Copyright Example Corp, all rights reserved</footer>"
INSTALL = (
    "<main><h1>Install</h1><p>Lorebot installs with one command on any Linux machine with Python.</p>"
    "<pre><code class='language-sh'>make install</code></pre>"
    "<p>Then start it with make run, and open the console in a browser to add documents.</p></main>"
)
MODIFIED = "Wed, 02 Dec 2026 10:00:00 GMT"


@pytest.fixture
def offsite() -> Iterator[FakeSite]:
    with FakeSite() as other:
        other.html("/", "<p>Another site</p>", title="Other")
        yield other


@pytest.fixture
def site(offsite: FakeSite) -> Iterator[FakeSite]:
    with FakeSite() as fake:
        fake.set("/robots.txt", b"User-agent: *\nDisallow: /private/\n", content_type="text/plain")
        links = [
            "/guide/install#linux", "/guide/old", "/missing", "/broken", "/private/secret", "/faq.md", "/logo.png",
            "/away", offsite.url("/"), "mailto:team@example.com",
        ]  # fmt: skip
        fake.html("/", NAV + "".join(f"<a href='{link}'>{link}</a>" for link in links) + FOOTER, title="Home", etag='"home1"')
        fake.html("/guide/install", NAV + INSTALL + FOOTER, title="Install Lorebot", etag='"v1"')
        fake.redirect("/guide/old", "/guide/new")
        fake.html("/guide/new", "<p>The new guide says hello.</p>", title="New guide", last_modified=MODIFIED)
        fake.html("/broken", "<p>Oops</p>", status=500)
        fake.html("/private/secret", "<p>Secret</p>", title="Secret")
        fake.set("/faq.md", b"# FAQ\n\nAsk the bot anything.\n", content_type="text/markdown")
        fake.set("/logo.png", b"\x89PNG\r\n\x1a\n", content_type="image/png")
        fake.redirect("/away", offsite.url("/"), status=302)
        yield fake


def connect(tmp_path: Path, **config: object) -> WebConnector:
    connector = connector_class("web").from_config({"delay_seconds": 0, **config}, work_dir=tmp_path / "cache")
    assert isinstance(connector, WebConnector)
    return connector


def listing(connector: WebConnector, known: dict[str, str] | None = None) -> dict[str, SourceItem]:
    return {item.key: item for item in connector.list_items(known or {})}


def test_a_crawl_lists_the_sites_own_pages(tmp_path: Path, site: FakeSite, offsite: FakeSite) -> None:
    items = listing(connect(tmp_path, start_url=site.url("/")))
    assert set(items) == {site.url(p) for p in ("/", "/guide/install", "/guide/new", "/broken", "/faq.md", "/away")}
    away = items.pop(site.url("/away"))  # listed only to be reported: its redirect leaves the site
    assert away.version == "" and away.unavailable.startswith(f"redirects off the site to '{offsite.url('/')}'")
    install = items[site.url("/guide/install")]
    assert install.version == 'etag:"v1"' and install.url == install.key and install.title == "Install Lorebot"
    assert items[site.url("/guide/new")].version == f"modified:{MODIFIED}"  # the redirect's target is the key
    assert items[site.url("/faq.md")].version.startswith("sha256:")
    assert items[site.url("/broken")].version == ""  # a 500 on a page never synced: its fetch reports it
    assert site.requests_for("/private/secret") == []  # robots.txt forbids it
    assert offsite.requests == []  # neither the off-site link nor the off-site redirect was followed
    assert len(site.requests_for("/guide/install")) == 1  # the fragment is not another page


def test_fetched_pages_are_their_main_content_and_load_cleanly(tmp_path: Path, site: FakeSite) -> None:
    connector = connect(tmp_path, start_url=site.url("/"))
    items = listing(connector)
    requests = len(site.requests)
    fetched = connector.fetch(items[site.url("/guide/install")])
    assert len(site.requests) == requests  # the listing's download is reused
    parsed = load_bytes(fetched.data, fetched.filename)
    text = "\n".join(section.text for section in parsed.sections)
    assert parsed.title == "Install Lorebot"
    assert "installs with one command" in text and "```sh\nmake install\n```" in text
    assert "Copyright" not in text and "navigation menu" not in text
    faq = connector.fetch(items[site.url("/faq.md")])
    assert load_bytes(faq.data, faq.filename).title == "FAQ"
    with pytest.raises(ItemFetchError) as caught:
        connector.fetch(items[site.url("/broken")])
    assert caught.value.transient and caught.value.key == site.url("/broken") and "500" in str(caught.value)


def test_a_second_listing_revalidates_and_gets_304s(tmp_path: Path, site: FakeSite) -> None:
    first = {key: item.version for key, item in listing(connect(tmp_path, start_url=site.url("/"))).items()}
    site.requests.clear()
    second = listing(connect(tmp_path, start_url=site.url("/")), first)
    assert {key: item.version for key, item in second.items()} == first
    install = site.requests_for("/guide/install")[-1]
    assert install.headers["If-None-Match"] == '"v1"' and install.status == 304
    new = site.requests_for("/guide/new")[-1]
    assert new.headers["If-Modified-Since"] == MODIFIED and new.status == 304
    assert site.requests_for("/")[-1].status == 304  # and its links still followed, from the work folder
    assert second[site.url("/guide/install")].title == "Install Lorebot"


def test_a_change_changes_only_that_pages_version(tmp_path: Path, site: FakeSite) -> None:
    first = {key: item.version for key, item in listing(connect(tmp_path, start_url=site.url("/"))).items()}
    site.html("/guide/install", INSTALL.replace("one command", "two commands"), title="Install Lorebot", etag='"v2"')
    connector = connect(tmp_path, start_url=site.url("/"))
    second = listing(connector, first)
    changed = {key for key, item in second.items() if item.version != first[key]}
    assert changed == {site.url("/guide/install")}
    assert b"two commands" in connector.fetch(second[site.url("/guide/install")]).data


def test_a_page_that_errors_keeps_its_previous_version(tmp_path: Path, site: FakeSite) -> None:
    first = {key: item.version for key, item in listing(connect(tmp_path, start_url=site.url("/"))).items()}
    site.html("/guide/install", "<p>Internal error</p>", status=503)
    second = listing(connect(tmp_path, start_url=site.url("/")), first)
    assert second[site.url("/guide/install")].version == 'etag:"v1"'  # listed as it was: not removed


def test_a_page_that_is_gone_is_not_listed(tmp_path: Path, site: FakeSite) -> None:
    listing(connect(tmp_path, start_url=site.url("/")))
    site.html("/guide/install", "<p>Gone</p>", status=410)
    assert site.url("/guide/install") not in listing(connect(tmp_path, start_url=site.url("/")))


def test_a_sitemap_index_lists_its_pages_only(tmp_path: Path, site: FakeSite) -> None:
    index = f"<sitemapindex xmlns='http://www.sitemaps.org/schemas/sitemap/0.9'><sitemap><loc>{site.url('/pages.xml')}</loc></sitemap></sitemapindex>"
    urls = "".join(f"<url><loc>{site.url(p)}</loc></url>" for p in ("/guide/install", "/faq.md", "/private/secret"))
    site.set("/sitemap.xml", index.encode(), content_type="application/xml")
    site.set("/pages.xml", f"<urlset xmlns='http://www.sitemaps.org/schemas/sitemap/0.9'>{urls}</urlset>".encode(), content_type="application/xml")
    items = listing(connect(tmp_path, sitemap_url=site.url("/sitemap.xml")))
    assert set(items) == {site.url("/guide/install"), site.url("/faq.md")}


SITEMAPS = "http://www.sitemaps.org/schemas/sitemap/0.9"


def _index_of_two(site: FakeSite) -> None:
    """/sitemap.xml indexes /a.xml (the install guide) and /b.xml (the FAQ)."""
    locs = "".join(f"<sitemap><loc>{site.url(p)}</loc></sitemap>" for p in ("/a.xml", "/b.xml"))
    site.set("/sitemap.xml", f"<sitemapindex xmlns='{SITEMAPS}'>{locs}</sitemapindex>".encode(), content_type="application/xml")
    for path, page in (("/a.xml", "/guide/install"), ("/b.xml", "/faq.md")):
        site.set(path, f"<urlset xmlns='{SITEMAPS}'><url><loc>{site.url(page)}</loc></url></urlset>".encode(),
                 content_type="application/xml")


@pytest.mark.parametrize(("status", "transient"), [(403, False), (401, False), (503, True)])
def test_a_sitemap_of_the_index_that_cannot_be_read_fails_the_listing_naming_it(
        tmp_path: Path, site: FakeSite, status: int, transient: bool) -> None:
    _index_of_two(site)
    assert set(listing(connect(tmp_path, sitemap_url=site.url("/sitemap.xml")))) == {
        site.url("/guide/install"), site.url("/faq.md")}
    site.set("/b.xml", b"no", status=status, content_type="application/xml")
    # Listing without its pages would delete the FAQ's document; a sync that fails keeps it.
    with pytest.raises(ConnectorError, match=f"/b.xml .*answered {status}") as caught:
        listing(connect(tmp_path, sitemap_url=site.url("/sitemap.xml")))
    assert caught.value.transient is transient


def test_a_sitemap_of_the_index_that_is_gone_takes_only_its_pages_away(tmp_path: Path, site: FakeSite) -> None:
    _index_of_two(site)
    site.set("/b.xml", b"gone", status=404, content_type="application/xml")
    assert set(listing(connect(tmp_path, sitemap_url=site.url("/sitemap.xml")))) == {site.url("/guide/install")}


def test_include_and_exclude_prefixes_choose_the_pages(tmp_path: Path, site: FakeSite) -> None:
    items = listing(connect(tmp_path, start_url=site.url("/"), include=["/guide/"], exclude=["/guide/old"]))
    assert set(items) == {site.url("/guide/install")}
    assert site.requests_for("/guide/old") == []


def test_the_page_limit_ends_a_site_that_loops(tmp_path: Path, site: FakeSite) -> None:
    for n in range(30):
        site.html(f"/loop/{n}", f"<a href='/loop/{n + 1}'>next</a><p>Page {n}</p>")
    connector = connect(tmp_path, start_url=site.url("/loop/0"), page_limit=10)
    items = listing(connector)
    assert len(items) == 10 and connector.requests == 10


def test_a_page_over_the_size_limit_fails_alone(tmp_path: Path, site: FakeSite) -> None:
    site.html("/guide/install", "<p>" + "big " * 3000 + "</p>", etag='"big"')
    connector = connect(tmp_path, start_url=site.url("/"), max_page_bytes=4000)
    items = listing(connector)
    assert site.url("/faq.md") in items
    with pytest.raises(ItemFetchError, match="over the 4000-byte page limit"):
        connector.fetch(items[site.url("/guide/install")])


def test_a_site_that_cannot_be_read_lists_nothing(tmp_path: Path, site: FakeSite) -> None:
    site.set("/robots.txt", b"down", status=503, content_type="text/plain")
    with pytest.raises(ConnectorError, match="robots.txt"):
        listing(connect(tmp_path, start_url=site.url("/")))
    with pytest.raises(ConnectorError, match="127.0.0.1:9"):
        listing(connect(tmp_path, start_url="http://127.0.0.1:9/"))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTP://Docs.Example:80/guide#install", "http://docs.example/guide"),
        ("https://docs.example:443", "https://docs.example/"),
        ("https://docs.example/docs/", "https://docs.example/docs/"),
        ("https://docs.example/list?page=2&utm_source=x", "https://docs.example/list?page=2"),
        ("mailto:a@b.c", ""),
        ("javascript:alert(1)", ""),
    ],
)
def test_urls_are_normalised(url: str, expected: str) -> None:
    assert normalise_url(url) == expected


@pytest.mark.parametrize(
    ("config", "field"),
    [({}, "start_url"), ({"start_url": "ftp://x/"}, "start_url"), ({"start_url": "http://a/", "page_limit": 0}, "page_limit"),
     ({"start_url": "http://a/", "include": ["docs"]}, "include"), ({"start_url": "http://a/", "delay_seconds": -1}, "delay_seconds")],
)  # fmt: skip
def test_bad_settings_name_their_field(tmp_path: Path, config: dict[str, object], field: str) -> None:
    with pytest.raises(ConnectorConfigError) as caught:
        connector_class("web").from_config(config, work_dir=tmp_path)
    assert caught.value.field == field


def test_pages_the_page_limit_kept_the_crawl_from_reaching_are_kept_not_removed(tmp_path: Path, site: FakeSite) -> None:
    for n in range(30):
        site.html(f"/loop/{n}", f"<a href='/loop/{n + 1}'>next</a> <a href='/old/{n}'>old</a><p>Page {n}</p>",
                  etag=f'"p{n}"')
        site.html(f"/old/{n}", f"<p>Old page {n}</p>", etag=f'"o{n}"')
    before = listing(connect(tmp_path, start_url=site.url("/loop/0"), page_limit=100))
    assert len(before) == 60
    site.html("/old/1", "gone", status=404)  # reached by the shorter crawl too: removed
    after = listing(connect(tmp_path, start_url=site.url("/loop/0"), page_limit=10),
                    {key: item.version for key, item in before.items()})
    assert set(after) == set(before) - {site.url("/old/1")}
    assert after[site.url("/loop/20")].version == before[site.url("/loop/20")].version


def test_a_redirect_loop_or_off_site_redirect_is_reported_naming_the_page(
    tmp_path: Path, site: FakeSite, offsite: FakeSite
) -> None:
    site.html("/", "<a href='/loop/a'>a</a> <a href='/away'>away</a> <a href='/faq.md'>faq</a>", title="Home")
    site.redirect("/loop/a", "/loop/b")
    site.redirect("/loop/b", "/loop/a")
    connector = connect(tmp_path, start_url=site.url("/"))
    items = listing(connector)
    assert items[site.url("/loop/a")].unavailable == "redirect loop (/loop/a → /loop/b → /loop/a)"
    assert "redirects off the site" in items[site.url("/away")].unavailable
    assert items[site.url("/faq.md")].unavailable == ""  # the other pages are listed as usual
    assert len(site.requests_for("/loop/a")) == 1 and offsite.requests == []
    with pytest.raises(ItemFetchError) as caught:  # never synced: its fetch names it, without another request
        connector.fetch(items[site.url("/loop/a")])
    assert caught.value.key == site.url("/loop/a") and "redirect loop" in caught.value.reason
    assert len(site.requests_for("/loop/a")) == 1


def test_a_page_behind_a_login_is_reported_naming_it_and_kept_if_it_was_synced(tmp_path: Path, site: FakeSite) -> None:
    site.html("/", "<a href='/members'>members</a> <a href='/staff'>staff</a> <a href='/faq.md'>faq</a>", title="Home")
    site.html("/members", "<p>Members only</p>", status=401)
    site.html("/staff", "<p>Staff only</p>", status=403)
    connector = connect(tmp_path, start_url=site.url("/"))
    items = listing(connector, {site.url("/staff"): '"s1"'})
    assert items[site.url("/members")].unavailable.startswith("the server answered 401: the page needs a login")
    assert items[site.url("/members")].version == ""
    assert "403" in items[site.url("/staff")].unavailable
    assert items[site.url("/staff")].version == '"s1"'  # synced before: kept as it was, not removed
    assert items[site.url("/faq.md")].unavailable == ""
    with pytest.raises(ItemFetchError) as caught:
        connector.fetch(items[site.url("/members")])
    assert caught.value.key == site.url("/members") and "needs a login" in caught.value.reason
    site.html("/", "<p>Sign in</p>", status=401)
    with pytest.raises(ConnectorConfigError) as refused:
        listing(connect(tmp_path, start_url=site.url("/")))
    assert refused.value.field == "start_url" and "401" in str(refused.value)


def test_a_start_url_that_redirects_off_the_site_fails_the_listing_naming_it(
    tmp_path: Path, site: FakeSite, offsite: FakeSite
) -> None:
    with pytest.raises(ConnectorConfigError) as caught:
        listing(connect(tmp_path, start_url=site.url("/away")))
    assert caught.value.field == "start_url" and "redirects off the site" in str(caught.value)


def test_a_crawl_cut_short_by_the_page_limit_says_so(tmp_path: Path, site: FakeSite) -> None:
    for n in range(30):
        site.html(f"/loop/{n}", f"<a href='/loop/{n + 1}'>next</a><p>Page {n}</p>")
    connector = connect(tmp_path, start_url=site.url("/loop/0"), page_limit=10)
    listing(connector)
    assert connector.describe().endswith("the page limit stopped the crawl with 1 link not visited")
    whole = connect(tmp_path, start_url=site.url("/loop/0"), page_limit=100)
    listing(whole)
    assert "page limit" not in whole.describe().split(")", 1)[1]


def test_requests_are_spaced_by_the_politeness_delay_and_robots_crawl_delay_wins(tmp_path: Path, site: FakeSite) -> None:
    site.html("/", "<a href='/faq.md'>faq</a> <a href='/guide/install'>install</a>", title="Home")
    listing(connect(tmp_path, start_url=site.url("/"), delay_seconds=0.3))
    times = [request.at for request in site.requests]
    assert len(times) == 4  # robots.txt, the home page and its two links
    assert min(b - a for a, b in zip(times, times[1:], strict=False)) >= 0.3

    site.requests.clear()
    site.set("/robots.txt", b"User-agent: *\nCrawl-delay: 1\n", content_type="text/plain")
    listing(connect(tmp_path, start_url=site.url("/"), delay_seconds=0.1))
    times = [request.at for request in site.requests]
    assert len(times) == 4 and min(b - a for a, b in zip(times, times[1:], strict=False)) >= 1.0


def test_robots_txt_names_the_sitemap_and_meta_robots_and_rel_nofollow_are_honoured(tmp_path: Path, site: FakeSite) -> None:
    site.set("/robots.txt", f"User-agent: *\nDisallow: /private/\nSitemap: {site.url('/map.xml')}\n".encode(),
             content_type="text/plain")
    site.set("/map.xml", f"<urlset xmlns='http://www.sitemaps.org/schemas/sitemap/0.9'><url><loc>{site.url('/mapped')}"
             "</loc></url></urlset>".encode(), content_type="application/xml")
    site.html("/mapped", "<p>Only the sitemap links here.</p>", title="Mapped")
    site.html("/", "<a href='/hub'>hub</a> <a href='/ads' rel='nofollow sponsored'>ads</a>", title="Home")
    # Followed for its links, never listed; and a page whose links are not followed.
    site.html("/hub", "<meta name='robots' content='noindex'><a href='/leaf'>leaf</a>", title="Hub")
    site.html("/leaf", "<meta name='ROBOTS' content='nofollow'><p>A leaf.</p><a href='/beyond'>beyond</a>", title="Leaf")
    site.html("/ads", "<p>Ads</p>")
    site.html("/beyond", "<p>Beyond</p>")
    items = listing(connect(tmp_path, start_url=site.url("/")))
    assert set(items) == {site.url(p) for p in ("/", "/mapped", "/leaf")}
    assert site.requests_for("/ads") == [] and site.requests_for("/beyond") == []
    assert len(site.requests_for("/hub")) == 1
