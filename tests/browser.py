"""Open an HTML file in a real headless Chromium and report what a reader would see.

Issue 5 asks that ``capsim report`` be tested in a real browser: the page loads offline with no
console errors, and every chart renders. :func:`render` opens a file in Debian's ``chromium``
through Playwright (never a browser Playwright downloads), blocks every request that is not for a
local file, waits for the page to load and for plotly to stop drawing, and returns a
:class:`PageReport`::

    page = render(Path("report.html"), tmp_path / "report.png")
    assert page.ok, page.problems

A test calls :func:`require_chromium` first: it skips when the browser (or Playwright) is missing
on a developer's machine, and fails when it is missing in CI (``CI`` set), where ``.ci/run``
installs it. :class:`Chromium` keeps one browser open for several pages.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType

import pytest

#: Debian's browser; ``CAPSIM_CHROMIUM`` overrides it.
CHROMIUM = os.environ.get("CAPSIM_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"

ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    # Belt and braces: a request that escapes the routing below fails at once instead of waiting
    # on DNS.
    "--host-resolver-rules=MAP * ~NOTFOUND",
]

LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")

#: Graphical elements that draw data: inside trace groups (bar, scatter, box, pie, indicator, ...),
#: heatmap and contour groups, table cells. Axes, grid lines, legends, layout shapes and titles do
#: not count: a chart with axes and no data is not rendered.
MARKS = (
    ":is(g.trace, g.hm, g.contour, .table .column-cell)"
    " :is(path, rect, circle, ellipse, line, polyline, polygon, image, text, use)"
)

#: Resolves once the page is loaded, the fonts are in, plotly has no drawing promise pending and
#: the drawn charts have not changed for ``quiet`` ms; false after ``timeout`` ms.
SETTLE = """async ({quiet, timeout}) => {
  const frame = () => new Promise(r => requestAnimationFrame(() => setTimeout(r, 25)));
  const charts = () => [...document.querySelectorAll('.plotly-graph-div')];
  const signature = () => JSON.stringify(
    charts().map(gd => [!!gd._fullLayout, gd.querySelectorAll('*').length]));
  const busy = () => document.readyState !== 'complete'
    || charts().some(gd => (gd._promises || []).length > 0);
  const start = performance.now();
  await document.fonts.ready;
  let last = null, since = performance.now();
  while (performance.now() - start < timeout) {
    await frame();
    const now = signature();
    if (now !== last || busy()) { last = now; since = performance.now(); }
    else if (performance.now() - since >= quiet) return true;
  }
  return false;
}"""

#: One entry per ``.plotly-graph-div``, in document order.
CHARTS = """(marks) => [...document.querySelectorAll('.plotly-graph-div')].map((gd, index) => {
  const visible = e => { const b = e.getBBox(); return b.width > 0 || b.height > 0; };
  const svgs = [...gd.querySelectorAll('svg.main-svg')];
  const sized = e => { const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
  const svg = svgs.some(sized);
  const drawn = svgs.flatMap(s => [...s.querySelectorAll(marks)]).filter(visible).length;
  const painted = c => {
    if (!c.width || !c.height) return false;
    const copy = document.createElement('canvas');
    copy.width = c.width; copy.height = c.height;
    const ctx = copy.getContext('2d');
    ctx.drawImage(c, 0, 0);
    const px = ctx.getImageData(0, 0, c.width, c.height).data;
    for (let i = 3; i < px.length; i += 4) if (px[i]) return true;
    return false;
  };
  const canvases = [...gd.querySelectorAll('canvas')].filter(painted).length;
  // The layout as given: plotly's full layout holds a 'Click to enter Plot title' placeholder.
  const given = gd.layout && gd.layout.title;
  const title = typeof given === 'string' ? given : (given && given.text) || '';
  const box = gd.getBoundingClientRect();
  return {index, id: gd.id || '', title,
          svg, marks: drawn, canvases, width: box.width, height: box.height};
})"""


@dataclass(frozen=True)
class ChartReport:
    """One chart container (``.plotly-graph-div``) as drawn."""

    index: int
    id: str
    title: str
    marks: int  # visible SVG elements drawing data (bars, lines, points, slices, cells, ...)
    canvases: int  # canvases with at least one painted pixel (WebGL traces)
    svg: bool  # a ``svg.main-svg`` with a non-zero size
    width: float
    height: float

    @property
    def rendered(self) -> bool:
        return (self.svg and self.marks > 0) or self.canvases > 0

    def __str__(self) -> str:
        state = "rendered" if self.rendered else "NOT rendered"
        drawn = f"{self.marks} marks, {self.canvases} painted canvases"
        return f"chart {self.index} {self.id!r} {self.title!r}: {state} ({drawn})"


@dataclass(frozen=True)
class PageReport:
    """What :func:`render` saw."""

    url: str
    title: str
    console_errors: list[str] = field(default_factory=list)
    console_warnings: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)  # uncaught exceptions
    blocked_requests: list[str] = field(default_factory=list)  # non-local requests, aborted
    failed_requests: list[str] = field(default_factory=list)  # other failures, e.g. missing file
    charts: list[ChartReport] = field(default_factory=list)
    settled: bool = True  # false if plotly was still drawing when the wait timed out
    screenshot: Path | None = None

    @property
    def unrendered(self) -> list[ChartReport]:
        return [chart for chart in self.charts if not chart.rendered]

    @property
    def problems(self) -> list[str]:
        """Everything wrong with the page, one line each; empty when it is fine."""
        return [
            *(f"console error: {text}" for text in self.console_errors),
            *(f"page error: {text}" for text in self.page_errors),
            *(f"blocked request: {url}" for url in self.blocked_requests),
            *(f"failed request: {text}" for text in self.failed_requests),
            *(str(chart) for chart in self.unrendered),
            *([] if self.settled else ["the charts were still changing when the wait timed out"]),
        ]

    @property
    def ok(self) -> bool:
        return not self.problems


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_chromium() -> None:
    """Skip the calling test when Chromium or Playwright is missing, fail instead in CI."""
    missing = []
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        missing.append(
            f"no Chromium at {CHROMIUM} (apt-get install chromium, or set CAPSIM_CHROMIUM)"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package is not installed (pip install -e '.[test]')")
    if missing:
        reason = "; ".join(missing)
        if in_ci():
            pytest.fail(f"browser tests must run in CI: {reason}", pytrace=False)
        pytest.skip(reason)


class Chromium:
    """A headless Chromium kept open for several :meth:`render` calls; a context manager."""

    def __init__(self, executable: str = CHROMIUM, *, timeout_ms: float = 30_000) -> None:
        self.executable = executable
        self.timeout_ms = timeout_ms
        self._playwright = None
        self._browser = None

    def __enter__(self) -> Chromium:
        from playwright.sync_api import sync_playwright

        self._playwright = sync_playwright().start()
        try:
            self._browser = self._playwright.chromium.launch(
                executable_path=self.executable, headless=True, args=ARGS
            )
        except BaseException:
            self._playwright.stop()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        try:
            if self._browser is not None:
                self._browser.close()
        finally:
            if self._playwright is not None:
                self._playwright.stop()
            self._browser = self._playwright = None

    def render(
        self,
        html_path: Path,
        screenshot: Path,
        *,
        viewport: tuple[int, int] = (1400, 900),
        quiet_ms: int = 300,
    ) -> PageReport:
        """Open ``html_path``, wait for its charts, save a full-page PNG to ``screenshot``."""
        if self._browser is None:
            raise RuntimeError("use Chromium() as a context manager")
        url = Path(html_path).resolve().as_uri()
        errors, warnings, page_errors, blocked, failed = [], [], [], [], []

        def route(route) -> None:
            request_url = route.request.url
            if request_url.startswith(LOCAL_SCHEMES):
                route.continue_()
            else:
                blocked.append(request_url)
                route.abort("blockedbyclient")

        def console(message) -> None:
            where = message.location or {}
            text = message.text
            if where.get("url"):
                text += f" ({where['url']}:{where.get('lineNumber', '?')})"
            if message.type == "error":
                errors.append(text)
            elif message.type == "warning":
                warnings.append(text)

        def web_socket(socket) -> None:
            blocked.append(socket.url)
            socket.close()

        def request_failed(request) -> None:
            if request.url not in blocked:
                failed.append(f"{request.url}: {request.failure}")

        context = self._browser.new_context(
            viewport={"width": viewport[0], "height": viewport[1]},
            service_workers="block",
            accept_downloads=False,
        )
        try:
            context.set_default_timeout(self.timeout_ms)
            context.route("**/*", route)
            if hasattr(context, "route_web_socket"):  # Playwright >= 1.48
                context.route_web_socket("**/*", web_socket)
            page = context.new_page()
            page.on("console", console)
            page.on("pageerror", lambda error: page_errors.append(str(error)))
            page.on("requestfailed", request_failed)
            page.goto(url, wait_until="load")
            settled = page.evaluate(SETTLE, {"quiet": quiet_ms, "timeout": self.timeout_ms})
            # Freeze the messages before looking at the charts: reading WebGL pixels back makes
            # Chromium log "GPU stall due to ReadPixels" warnings of its own.
            report = PageReport(
                url=url,
                title=page.title(),
                console_errors=list(errors),
                console_warnings=list(warnings),
                page_errors=list(page_errors),
                blocked_requests=list(blocked),
                failed_requests=list(failed),
                settled=settled,
            )
            charts = [ChartReport(**chart) for chart in page.evaluate(CHARTS, MARKS)]
            screenshot = Path(screenshot)
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            context.close()
        return replace(report, charts=charts, screenshot=screenshot)


def render(html_path: Path, screenshot: Path, **options) -> PageReport:
    """Open ``html_path`` in a fresh headless Chromium; see :meth:`Chromium.render`."""
    with Chromium() as browser:
        return browser.render(html_path, screenshot, **options)
