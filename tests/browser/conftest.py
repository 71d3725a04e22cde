"""A real headless browser for the caregiver pages: Debian's chromium (``make`` installs it),
driven by playwright; axe-core (npm, gateway/web) checks every page against the WCAG 2.1 A
and AA rules; a screenshot of every page is kept in ``test-artifacts/browser/<process>/``."""
import re
from pathlib import Path

import pytest

from tests.run_record import ARTIFACTS as ALL_ARTIFACTS, process_tag

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
AXE = ROOT / "gateway" / "web" / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = ALL_ARTIFACTS / "browser"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic",
                 "--disable-default-apps", "--disable-extensions"]
WCAG_21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        pytest.fail("chromium is missing: run `make test` (it installs Debian's chromium)")
    if not AXE.exists():
        pytest.fail("axe-core is missing: run `make web-assets`")
    from playwright.sync_api import sync_playwright

    driver = sync_playwright()
    playwright = driver.start()
    chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()
    # Under eventlet's patched standard library, waiting for playwright's driver process to
    # end never returns: close its pipe, and the driver ends by itself.
    driver._client._transport.request_stop()


@pytest.fixture(scope="module")
def new_session(browser, platform):
    """Opens a browser session (a context of its own: cookies, sign-in) on the gateway with
    JavaScript switched off, ``width`` pixels wide; every one is closed after the module."""
    opened = []

    def open_session(width=1000):
        context = browser.new_context(java_script_enabled=False, base_url=platform.gateway_url(),
                                      viewport={"width": width, "height": 900})
        opened.append(context)
        return context

    yield open_session
    for context in opened:
        context.close()


@pytest.fixture(scope="session")
def artifacts(request):
    """This process's folder of screenshots: the run emptied the folder when it started
    (tests/run_record.py), and each of its processes keeps its own."""
    folder = ARTIFACTS / process_tag(request.config)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class PageChecks:
    """A screenshot and an axe-core run for every page the tests see."""

    def __init__(self, artifacts, browser):
        self.artifacts = artifacts
        self.axe_source = AXE.read_text()
        self.count = 0
        # axe-core needs scripts, which the pages under test may have switched off: it runs
        # in a page of its own that gets the same HTML at the same address, with the same CSS.
        self.checker = browser.new_context(bypass_csp=True).new_page()

    def __call__(self, page, name):
        self.count += 1
        safe = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
        page.screenshot(path=str(self.artifacts / f"{self.count:02d}-{safe}.png"), full_page=True)
        url, html = page.url, page.content()

        def same_document(route):
            route.fulfill(status=200, body=html, content_type="text/html; charset=utf-8")

        self.checker.route(lambda address: address == url, same_document)
        try:
            self.checker.goto(url)
        finally:
            self.checker.unroute_all()
        self.checker.evaluate(self.axe_source)
        result = self.checker.evaluate(
            "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", WCAG_21_AA)
        violations = [f"{v['id']} ({v['impact']}): {v['help']} at "
                      f"{[n['target'] for n in v['nodes']][:3]}" for v in result["violations"]]
        assert violations == [], f"{name}: WCAG 2.1 A/AA violations"
        return result


@pytest.fixture(scope="session")
def checked(artifacts, browser):
    return PageChecks(artifacts, browser)
