"""A team's first hour, in a real browser against daphne: members and staff land where they may go,
a member opens a citation at its highlighted passage, staff remove Lorebot's guide in one action."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daphne_server import DEPLOY, PYTHON, ROOT, Daphne, Site, base_env, start_daphne

pytestmark = [pytest.mark.slow]

GUIDE = ROOT / "data" / "docs"
GUIDE_FILES = ("getting-started.md", "overview.md")  # enough of the guide to be cited, few chunks

_USERS = """
from django.contrib.auth import get_user_model
User = get_user_model()
User.objects.create_user("ann", password="ann-pw-1", is_staff=True)
User.objects.create_user("bob", password="bob-pw-1")
"""


def manage(site: Site, *args: str) -> str:
    done = subprocess.run([PYTHON, str(ROOT / "manage.py"), *args], env=site.env, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    """What `make run` makes of a fresh clone (migrate, the guide), plus the team's own folder and two accounts."""
    data = tmp_path_factory.mktemp("first-hour") / "data"
    data.mkdir(parents=True)
    guide, team = data.parent / "guide", data.parent / "team"
    guide.mkdir()
    team.mkdir()
    for name in GUIDE_FILES:
        (guide / name).write_bytes((GUIDE / name).read_bytes())
    (team / "deploy.md").write_text(DEPLOY)
    site = Site(data, base_env(data, CHAT_RATE_LIMIT_USER="0", CHAT_RATE_LIMIT_CONVERSATION="0"))
    manage(site, "migrate", "--noinput", "-v", "0")
    manage(site, "ingest", "--guide", str(guide))
    manage(site, "ingest", str(team))
    manage(site, "shell", "-c", _USERS)
    return site


@pytest.fixture(scope="module")
def server(site: Site) -> Iterator[Daphne]:
    daphne = start_daphne(site)
    yield daphne
    daphne.stop()


def new_page(console_browser: Any, **context: Any) -> Any:
    ctx = console_browser.new_context(**{"viewport": {"width": 1280, "height": 860}, **context})
    ctx.set_default_timeout(30_000)
    page = ctx.new_page()
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    return page


def log_in(page: Any, server: Daphne, path: str, username: str, password: str) -> None:
    page.goto(server.http_url + path)
    assert "/accounts/login/" in page.url
    assert "Staff also reach the console" in page.inner_text(".login-card")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def ask(page: Any, text: str, count: int) -> None:
    page.wait_for_selector('#status[data-state="online"]')
    page.fill("#question", text)
    page.press("#question", "Enter")
    page.wait_for_function("n => document.querySelectorAll('.msg.assistant:not(.streaming)').length >= n", arg=count,
                           timeout=60_000)


def test_a_member_lands_on_the_chat_and_opens_a_citation_at_its_passage(console_browser: Any, server: Daphne) -> None:
    page = new_page(console_browser)
    log_in(page, server, "/console/", "bob", "bob-pw-1")  # a member sent to the console…
    page.wait_for_url(f"{server.http_url}/chat/")  # …lands on the chat instead of a 403
    header = page.locator("nav.account")
    assert "bob" in header.inner_text() and header.locator("text=Log out").is_visible()
    assert header.locator("a", has_text="Console").count() == 0

    ask(page, "How do I roll back a release?", 1)
    source = page.locator(".msg.assistant .citations a.source", has_text="Deployment").first
    with page.context.expect_page() as opened:
        source.click()
    viewer = opened.value
    viewer.wait_for_load_state()
    assert re.search(r"/sources/\d+/\?passage=\d+#passage$", viewer.url), viewer.url
    passage = viewer.locator("#passage")
    assert "cited" in (passage.get_attribute("class") or "")
    assert "run the rollback pipeline with the previous tag" in passage.inner_text()
    box, height = passage.bounding_box(), viewer.viewport_size["height"]
    assert box is not None and 0 <= box["y"] < height  # scrolled to it
    colour = passage.evaluate("el => getComputedStyle(el).backgroundColor")
    assert colour not in ("rgba(0, 0, 0, 0)", "transparent")  # highlighted
    with viewer.expect_download() as download:
        viewer.click("text=Download the original")
    assert download.value.suggested_filename == "deploy.md"
    assert Path(download.value.path()).read_text() == DEPLOY

    page.click("nav.account >> text=Log out")
    page.wait_for_url(re.compile(r"/accounts/login/$"))
    assert page.errors == []


def test_staff_land_where_next_says_with_times_in_their_zone_and_a_nav_that_fits_a_phone(
        console_browser: Any, server: Daphne) -> None:
    page = new_page(console_browser, viewport={"width": 375, "height": 740}, timezone_id="Asia/Tokyo", locale="en-US")
    log_in(page, server, "/console/documents/", "ann", "ann-pw-1")
    page.wait_for_url(f"{server.http_url}/console/documents/")
    # Every link of the console's navigation is on the screen of a phone, none scrolled out of sight.
    links = page.locator("nav.nav a")
    assert links.count() >= 6
    for i in range(links.count()):
        box = links.nth(i).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375, links.nth(i).inner_text()
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    # Times are the reader's (Tokyo, UTC+9), not the server's UTC.
    first = page.locator("time[data-localized]").first
    assert "GMT+9" in (first.get_attribute("title") or "")
    iso = first.get_attribute("datetime") or ""
    hour_utc = int(iso[11:13])
    assert f"{(hour_utc + 9) % 24:02d}:" in first.inner_text() or f"{(hour_utc + 9) % 12 or 12}:" in first.inner_text()
    # The chat's header leads back to the console.
    page.goto(server.http_url + "/chat/")
    assert page.locator("nav.account a", has_text="Console").is_visible()
    assert page.errors == []


def test_staff_remove_the_guide_in_one_action_and_it_leaves_the_answers(
        console_browser: Any, server: Daphne, site: Site) -> None:
    page = new_page(console_browser)
    log_in(page, server, "/accounts/login/", "ann", "ann-pw-1")  # no next: staff start at the console
    page.wait_for_url(f"{server.http_url}/console/")
    page.click("nav >> text=Documents")
    banner = page.locator("[data-guide]")
    assert f"({len(GUIDE_FILES)} documents" in banner.inner_text()
    assert page.locator("tr", has=page.locator(".badge-guide")).count() == len(GUIDE_FILES)
    page.on("dialog", lambda dialog: dialog.accept())
    banner.locator("button", has_text="Remove Lorebot's guide").click()
    page.wait_for_url(re.compile(r"/console/jobs/\d+/$"))
    manage(site, "db_worker", "--batch", "--no-startup-delay")  # the worker `make run` starts beside the server
    page.locator('[data-job-live] [data-field="state"]', has_text="succeeded").wait_for(timeout=30_000)

    page.goto(server.http_url + "/console/documents/")
    assert page.locator("[data-guide]").count() == 0
    assert page.locator("tbody tr", has_text="deploy.md").count() == 1
    assert page.locator(".badge-guide").count() == 0
    # `make run` again: the guide stays out.
    assert manage(site, "ingest", "--guide", str(GUIDE)).startswith("skipped: Lorebot's guide was removed")

    page.goto(server.http_url + "/chat/")
    ask(page, "What is Lorebot and how do I get started?", 1)
    cited = page.locator(".msg.assistant .citations .source").all_inner_texts()
    assert all("Deployment" in name for name in cited), cited  # nothing from the guide any more
    assert page.errors == []
