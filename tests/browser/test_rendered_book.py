"""The rendered book as a reader's browser shows it: every page of ``_build/html`` opened in
headless Chromium with the network blocked (``make browser-test``, after ``make book``).

Each page: no request leaves the machine, no JavaScript error, no unresolved glue or error
output, every image loads, every formula is typeset by the bundled MathJax. The head explorer
runs and redraws when a control changes. A screenshot of each page goes to ``_build/screenshots``.
"""

import os
import re
from pathlib import Path

import pytest

from mtlheads.bookrun import ROOT

pytestmark = pytest.mark.browser

HTML = Path(os.environ.get("MTLHEADS_HTML", ROOT / "_build" / "html"))  # the rendered book (make book writes it)
SHOTS = HTML.parent / "screenshots"
CHROMIUM = os.environ.get("MTLHEADS_CHROMIUM", "/usr/bin/chromium")
# Chromium started as the machine's probe starts it: no background connections, and every host
# name resolves to nothing, so that a page needing the network fails here as it would offline.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--host-resolver-rules=MAP * ~NOTFOUND"]


def book_pages() -> list[Path]:
    if not (HTML / "index.html").is_file():
        raise FileNotFoundError(f"no rendered book in {HTML}: run `make book` before `make browser-test`")
    return sorted(p for p in HTML.rglob("*.html") if not any(part.startswith("_") for part in p.relative_to(HTML).parts))


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).is_file():
        raise FileNotFoundError(f"no Chromium at {CHROMIUM}: `make browser` installs Debian's (or set MTLHEADS_CHROMIUM)")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield chromium
        chromium.close()


REFRESH = re.compile(r'<meta\s+http-equiv="Refresh"\s+content="\d+;\s*url=([^"]+)"', re.IGNORECASE)


def redirect_target(path: Path) -> Path | None:
    """The page a meta-refresh page sends the reader to (Jupyter Book writes one as index.html), else None."""
    found = REFRESH.search(path.read_text(encoding="utf-8", errors="replace"))
    return (path.parent / found.group(1)).resolve() if found else None


class Visit:
    """A page opened offline, with what it tried to fetch from the network and its errors."""

    def __init__(self, browser, path: Path):
        self.context = browser.new_context(viewport={"width": 1280, "height": 1000})
        self.blocked, self.errors = [], []
        self.context.route(re.compile(r"^(?!file:|data:|blob:|about:).*"), self._block)
        self.page = self.context.new_page()
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text}"))
        self.page.goto(path.as_uri(), wait_until="load")
        target = redirect_target(path)
        if target is not None:  # Jupyter Book's index.html: wait until the refresh has landed, not race it
            if not target.is_file():
                raise AssertionError(f"{path.name} redirects to {target}, which is not in the rendered book")
            self.page.wait_for_url(target.as_uri(), wait_until="load", timeout=20000)

    def _block(self, route):
        self.blocked.append(route.request.url)
        route.abort()

    def close(self):
        self.context.close()


def page_ids():
    try:
        return [str(p.relative_to(HTML)) for p in book_pages()]
    except FileNotFoundError:
        return ["no rendered book"]


@pytest.mark.parametrize("name", page_ids())
def test_every_page_renders_offline(browser, name):
    path = HTML / name
    visit = Visit(browser, path)
    page = visit.page
    try:
        maths = page.locator(".math").count()
        if maths:
            page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=20000)
            page.evaluate("() => MathJax.startup.promise")
            typeset = page.locator(".math mjx-container, mjx-container.MathJax").count()
            raw = page.evaluate(r"""() => Array.from(document.querySelectorAll('.math'))
                                       .filter(e => !e.querySelector('mjx-container') && /\\\(|\\\[|\$/.test(e.textContent)).length""")
            assert typeset >= maths and raw == 0, f"{name}: {maths} formulas, {typeset} typeset, {raw} left raw"
        page.evaluate("() => Promise.all(Array.from(document.images).map(i => { i.loading = 'eager';"
                      " return i.complete ? null : new Promise(r => { i.onload = i.onerror = r; }); }))")
        broken = page.evaluate("() => Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0)"
                               ".map(i => i.getAttribute('src'))")
        assert not broken, f"{name}: images that do not load: {broken}"
        no_alt = page.evaluate("() => Array.from(document.querySelectorAll('article img'))"
                               ".filter(i => !(i.getAttribute('alt') || '').trim()).map(i => i.getAttribute('src'))")
        assert not no_alt, f"{name}: figures without alt text: {no_alt}"
        text = page.locator("article, main").first.inner_text()
        assert "{glue" not in text and "Traceback (most recent call last)" not in text, f"{name}: unresolved glue or a traceback"
        errors = page.locator(".output.error, .output.traceback, .output.stderr").count()
        assert errors == 0, f"{name}: {errors} error outputs"
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / (name.replace("/", "__").removesuffix(".html") + ".png")))
        assert not visit.blocked, f"{name} asked the network for {visit.blocked}"
        assert not visit.errors, f"{name}: {visit.errors}"
    finally:
        visit.close()


def test_every_chapter_and_page_of_the_toc_is_rendered():
    from mtlheads.bookrun import toc_files

    missing = [f for f in toc_files() if not (HTML / f"{f}.html").is_file()]
    assert not missing, f"pages of _toc.yml not in {HTML}: {missing}"


def test_the_head_explorer_runs_and_redraws_when_a_control_changes(browser):
    visit = Visit(browser, HTML / "book" / "explorer.html")
    page = visit.page
    try:
        root = page.locator("#head-explorer")
        assert root.locator("select").count() == 6 and root.locator(".mh-grid td").count() == 72
        view = lambda: root.locator(".mh-view").inner_html()
        info = lambda: root.locator(".mh-info").inner_text()
        first_view, first_info = view(), info()
        assert first_view.count("<rect") > 10 and "probe" in first_info
        page.select_option('#head-explorer select[name="head"]', label="6")
        assert view() != first_view and "head 6" in info()
        page.select_option('#head-explorer select[name="model"]', index=1)
        assert "STL" in info()
        page.select_option('#head-explorer select[name="view"]', label="arcs")
        assert "<path" in view() and "<rect" not in view()
        before = root.get_attribute("data-state")
        root.locator('.mh-grid td[data-layer="0"][data-head="0"]').click()
        assert root.get_attribute("data-state") != before and "layer 1, head 1" in info()
        page.select_option('#head-explorer select[name="model"]', index=root.locator('select[name="model"] option').count() - 1)
        assert "Not probed" in info()
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "book__explorer_in_use.png"), full_page=True)
        assert not visit.blocked and not visit.errors, (visit.blocked, visit.errors)
    finally:
        visit.close()


def test_the_results_page_links_each_claim_to_its_chapter(browser):
    visit = Visit(browser, HTML / "book" / "results.html")
    try:
        links = visit.page.eval_on_selector_all("table.mh-results tr td:first-child a", "as => as.map(a => a.href)")
        assert len(links) >= 10
        for link in links:
            assert link.startswith("file://") and Path(link.removeprefix("file://").split("#")[0]).is_file(), link
    finally:
        visit.close()
