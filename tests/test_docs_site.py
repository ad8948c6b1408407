"""The documentation site as a reader gets it: ``mkdocs build --strict`` succeeds, every link
from one page to another (and every ``#anchor``) leads somewhere, every code block of the
Markdown sources names its language (so it is highlighted), no page is wider than the
window at 1280 px (a desktop) or, outside code blocks and tables, which scroll by themselves,
at 390 px (a phone), and no word of a table cell (a name in inline code, most often) is split
over two lines at either width, measured in a real headless Chromium driven by Selenium.

``HEALTHPROBE_DOCS_SHOTS=DIR`` also saves a screenshot of every page at both widths into DIR.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import http.server
import os
import re
import subprocess
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urljoin, urlsplit

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service as ChromeService

from . import doc_pages
from .support import BIN, ROOT, require_binary

#: The widths a page is looked at: a desktop window and a phone (the iPhone 12 to 15's 390 px).
DESKTOP, PHONE = 1280, 390


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built strictly (a warning fails) into a fresh directory."""
    out = tmp_path_factory.mktemp("site")
    build = subprocess.run(
        [str(BIN / "mkdocs"), "build", "--strict", "--quiet", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert build.returncode == 0, build.stderr
    return out


def pages(site: Path) -> list[Path]:
    """The site's pages: every ``index.html`` but the 404 page and the theme's own files."""
    return sorted(p for p in site.rglob("*.html") if p.name == "index.html" and "assets" not in p.parts)


# -- code blocks -------------------------------------------------------------------------------


def test_every_code_block_of_the_docs_names_its_language() -> None:
    sources = sorted(doc_pages.DOCS.rglob("*.md"))
    assert len(sources) > 20
    missing = [
        f"{source.relative_to(ROOT)}: {body.splitlines()[0] if body else ''!r}"
        for source in sources
        for language, body in doc_pages.fences(source.read_text())
        if not language
    ]
    assert missing == []


def test_blocks_inside_tabs_and_admonitions_are_read_without_their_indent() -> None:
    text = (
        '=== "FastAPI"\n\n    ```python\n    # app.py\n    x = 1\n\n    y = 2\n    ```\n\n'
        "!!! note\n\n    ```console\n    $ curl localhost:8000/readyz\n    ok\n    ```\n\n"
        "```text\nat the margin\n```\n"
    )
    assert doc_pages.fences(text) == [
        ("python", "# app.py\nx = 1\n\ny = 2\n"),
        ("console", "$ curl localhost:8000/readyz\nok\n"),
        ("text", "at the margin\n"),
    ]
    assert doc_pages.files(text) == {"app.py": "# app.py\nx = 1\n\ny = 2\n"}
    assert doc_pages.commands(text) == ["curl localhost:8000/readyz"]


# -- links and anchors -------------------------------------------------------------------------


class _Links(HTMLParser):
    """The ``id`` (and ``<a name>``) anchors of a page and the ``href`` of its links."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id"):
            self.ids.add(str(found["id"]))
        if tag == "a" and found.get("name"):
            self.ids.add(str(found["name"]))
        if tag == "a" and found.get("href") is not None:
            self.hrefs.append(str(found["href"]))


def test_the_site_builds_strictly_and_every_internal_link_and_anchor_leads_somewhere(site: Path) -> None:
    parsed: dict[Path, _Links] = {}
    for html in site.rglob("*.html"):
        parser = _Links()
        parser.feed(html.read_text())
        parsed[html] = parser
    assert len(pages(site)) > 40  # the guide pages and the reference pages
    broken = []
    checked = 0
    for html, links in parsed.items():
        base = "/" + html.relative_to(site).as_posix()
        for href in links.hrefs:
            target = urlsplit(urljoin(base, href))
            if target.scheme or target.netloc or href.startswith(("mailto:", "javascript:")):
                continue  # the site links nowhere outside itself today, but a link out is not ours to check
            path = site / unquote(target.path).lstrip("/")
            if path.is_dir():
                path = path / "index.html"
            checked += 1
            if not path.is_file():
                broken.append(f"{base}: {href} (no such page)")
            elif target.fragment and path.suffix == ".html":
                ids = parsed[path].ids if path in parsed else set()
                if unquote(target.fragment) not in ids:
                    broken.append(f"{base}: {href} (no such anchor)")
    assert checked > 1000
    assert broken == []


def test_reference_pages_render_their_docstrings_as_written(site: Path) -> None:
    # Docstrings are Google style read by griffe: a reStructuredText table would show as rows
    # of "=" signs, and an inline literal broken over two lines can leave an angle-bracketed
    # word such as <details> to the browser, which hides what follows behind a toggle.
    shown = []
    for html in sorted((site / "reference").rglob("index.html")):
        text = html.read_text()
        if "=====" in text:
            shown.append(f"{html.parent.name}: a reStructuredText table")
        if re.search(r"<(details|summary)>", text):  # the theme's own carry a class
            shown.append(f"{html.parent.name}: a bare <details> from a docstring")
    assert shown == []


# -- widths in a real browser ------------------------------------------------------------------


class Browser:
    """One headless Chromium driven by Selenium through ``chromedriver``: one window, whose
    width is set per measurement."""

    def __init__(self, driver: webdriver.Chrome) -> None:
        self._driver = driver

    def evaluate(self, expression: str) -> Any:
        """The value of the JavaScript ``expression`` in the page."""
        return self._driver.execute_script(f"return {expression};")

    def resize(self, width: int) -> None:
        """Make the window ``width`` px wide (a phone's, with its viewport rules, below 600)."""
        self._driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 600},
        )

    def open(self, url: str) -> None:
        """Show ``url``; return once it has loaded (its styles and scripts run)."""
        self._driver.get(url)

    def screenshot(self, into: Path) -> None:
        into.write_bytes(self._driver.get_screenshot_as_png())


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """The system's Chromium (Debian's ``chromium``) through its ``chromedriver`` (Debian's
    ``chromium-driver``), named explicitly so that Selenium Manager never looks for, or
    downloads, a browser or a driver."""
    options = webdriver.ChromeOptions()
    options.binary_location = require_binary("chromium", "chromium")
    for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars"):
        options.add_argument(argument)  # --no-sandbox: as root, as in CI containers
    service = ChromeService(executable_path=require_binary("chromedriver", "chromium-driver"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.set_page_load_timeout(30)
        yield Browser(driver)
    finally:
        driver.quit()  # the browser, its helper processes and the profile chromedriver made for it


@contextlib.contextmanager
def serving(directory: Path) -> Iterator[str]:
    """``directory`` over HTTP on an ephemeral loopback port (Material's search and instant
    loading need http, not file:); its base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


#: How wide the page is against its window, and the elements that stick out of the window
#: that are not inside a block that scrolls by itself (code, a table, a scrolling wrapper):
#: for each, the outermost one only (its parent ends inside the window).
MEASURE = """(() => {
  // The layout viewport: a phone zooms out to show a page wider than itself, and its
  // innerWidth then grows with the page.
  const width = document.documentElement.clientWidth;
  const out = [];
  for (const el of document.querySelectorAll('body *')) {
    const box = el.getBoundingClientRect();
    if (box.width === 0 || box.right <= width + 1) continue;
    if (el.closest('pre, table, .md-typeset__scrollwrap, .highlight, .md-sidebar, .md-search')) continue;
    const parent = el.parentElement && el.parentElement.getBoundingClientRect();
    if (parent && parent.right > width + 1) continue;
    out.push(el.tagName.toLowerCase() + (el.className ? '.' + String(el.className).split(' ')[0] : '')
             + ' ' + JSON.stringify((el.textContent || '').trim().slice(0, 60)));
  }
  return {scrollWidth: document.documentElement.scrollWidth, width: width, out: out.slice(0, 5)};
})()"""


#: A page with a paragraph 1000 px wide and a code block wider than any window, which scrolls.
WIDE = (
    '<meta name="viewport" content="width=device-width"><body style="margin:0">'
    '<pre style="overflow-x:auto"><code style="display:block;width:3000px">wide code</code></pre>'
    '<p style="width:1000px">a paragraph 1000 px wide</p>'
)


#: The text of each table cell's text node with a word split over two lines: a run of letters
#: and digits, with the dashes of an option (``--workers``) before it, that spans two line
#: boxes. A cell may wrap at a space, after a hyphen or other punctuation (as between the
#: parts of ``healthprobe.check.duration``), never inside a word: a name cut in two
#: (``FAILURE_ST`` / ``ATUS``, ``--`` / ``workers``) reads as two.
BROKEN_WORDS = """(() => {
  const found = [];
  const range = document.createRange();
  for (const cell of document.querySelectorAll('td, th')) {
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      range.selectNodeContents(node);
      if (range.getClientRects().length < 2) continue;  // on one line: nothing to look for
      for (const word of node.data.matchAll(/(?:(?<=^|\\s)-+)?[\\p{L}\\p{N}]+/gu)) {
        if (word[0].length < 2) continue;
        range.setStart(node, word.index);
        range.setEnd(node, word.index + word[0].length);
        if (range.getClientRects().length > 1) {
          found.push(node.data.trim());
          break;
        }
      }
    }
  }
  return found;
})()"""


#: A table too narrow for its cells: a name in inline code that may break anywhere (as the
#: theme lets inline code), one that may not, one that may between its parts (``<wbr>``),
#: one with hyphens, a command whose option may wrap after its dashes and one whose option
#: may not, and prose that wraps at its spaces.
NARROW_TABLE = (
    '<meta name="viewport" content="width=device-width"><body style="margin:0">'
    '<table style="width:200px"><tr>'
    '<td><code style="word-break:break-word">healthprobe_check_last_success_timestamp_seconds</code></td>'
    "<td><code>healthprobe.check.duration</code></td>"
    "<td><code>healthprobe.<wbr>check.<wbr>last_success_time</code></td>"
    "<td><code>uvicorn-lifespan-off</code></td>"
    "<td><code>uvicorn app:app --lifespan off</code></td>"
    '<td><code>uvicorn app:app <span style="white-space:nowrap">--lifespan</span> off</code></td>'
    "<td>a few short words that wrap at the spaces between them</td>"
    "</tr></table>"
)


@dataclasses.dataclass
class Looked:
    """What the pages showed in the browser: one line per finding, naming the page and the
    width, and what each measure gave on the pages made to check it."""

    pages: int = 0
    #: Pages wider than the window at 1280 px, or with text that sticks out of it at either width.
    too_wide: list[str] = dataclasses.field(default_factory=list)
    #: Pages wider than a phone's window only by a code block or a table, which scroll.
    wide_on_a_phone: list[str] = dataclasses.field(default_factory=list)
    #: Words of a table cell split over two lines.
    broken_words: list[str] = dataclasses.field(default_factory=list)
    #: MEASURE on WIDE at 1280 px and at 390 px.
    wide_measured: tuple[Any, Any] = (None, None)
    #: BROKEN_WORDS on NARROW_TABLE.
    narrow_measured: Any = None


@pytest.fixture(scope="module")
def looked(site: Path) -> Looked:
    """Every page of the site opened in Chromium, laid out at 1280 px and at 390 px, and
    measured at each width (``HEALTHPROBE_DOCS_SHOTS=DIR``: a screenshot of each into DIR)."""
    shots = os.environ.get("HEALTHPROBE_DOCS_SHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
    found = Looked()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SE_OFFLINE", "true")  # should Selenium Manager ever run: no downloads
        with serving(site) as base, chromium() as browser:
            browser.resize(DESKTOP)
            browser.open(f"data:text/html,{quote(WIDE)}")
            at_desktop = browser.evaluate(MEASURE)
            browser.resize(PHONE)
            found.wide_measured = (at_desktop, browser.evaluate(MEASURE))
            browser.open(f"data:text/html,{quote(NARROW_TABLE)}")
            found.narrow_measured = browser.evaluate(BROKEN_WORDS)
            for html in pages(site):
                found.pages += 1
                relative = html.parent.relative_to(site).as_posix()
                browser.resize(DESKTOP)
                browser.open(f"{base}/{relative}/" if relative != "." else f"{base}/")
                for width in (DESKTOP, PHONE):
                    browser.resize(width)  # the page is laid out again, as when a window is resized
                    measured = browser.evaluate(MEASURE)
                    wide = measured["scrollWidth"] > measured["width"]
                    what = f"{relative} at {width} px"
                    sticking_out = f"{what}: {measured['scrollWidth']} px wide; sticking out: {measured['out']}"
                    if width == DESKTOP and (wide or measured["out"]):
                        found.too_wide.append(sticking_out)
                    elif width == PHONE and measured["out"]:
                        found.too_wide.append(sticking_out)  # text overflows: the theme scrolls code and tables only
                    elif width == PHONE and wide:
                        found.wide_on_a_phone.append(sticking_out)
                    found.broken_words.extend(f"{what}: {word}" for word in browser.evaluate(BROKEN_WORDS))
                    if shots:
                        name = "index" if relative == "." else relative.replace("/", "_")
                        browser.screenshot(Path(shots) / f"{name}-{width}.png")
    return found


def test_no_page_is_wider_than_the_window(looked: Looked, capsys: pytest.CaptureFixture[str]) -> None:
    # The measure sees what it is for, after a resize as after a load: a paragraph 1000 px
    # wide fits at 1280 px and sticks out at 390 px; a wide code block that scrolls never does.
    at_desktop, at_phone = looked.wide_measured
    assert at_desktop == {"scrollWidth": DESKTOP, "width": DESKTOP, "out": []}
    assert at_phone["out"] == ['p "a paragraph 1000 px wide"']
    assert looked.pages > 40
    with capsys.disabled():
        for note in looked.wide_on_a_phone:
            print(f"\nnote: {note}")
    assert looked.too_wide == []


def test_no_word_in_a_table_is_split_over_two_lines(looked: Looked) -> None:
    # The measure sees a name broken anywhere and an option cut from its dashes, and not a
    # name that widens its column, one that wraps between its parts or after a hyphen, an
    # option held together, or prose that wraps at its spaces.
    assert looked.narrow_measured == [
        "healthprobe_check_last_success_timestamp_seconds",
        "uvicorn app:app --lifespan off",
    ]
    assert looked.pages > 40
    # docs/stylesheets/ keep inline code (and links) in a table cell from breaking inside a
    # word, which the theme allows anywhere, hold options together, and let a long name wrap
    # between its parts.
    assert looked.broken_words == []
