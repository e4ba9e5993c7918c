"""The real-browser harness (tests/browser.py) on small pages: it passes a good page and, as much
to the point, it fails a bad one: a console error, an uncaught exception, a network dependency,
a chart that did not draw."""

from __future__ import annotations

import time
from pathlib import Path

import browser
import matplotlib.image
import plotly.graph_objects as go
import plotly.io as pio
import pytest
from browser import Chromium, PageReport, require_chromium

CDN = "https://cdn.plot.ly/plotly-latest.min.js"


@pytest.fixture(scope="module")
def chromium():
    require_chromium()
    with Chromium() as session:
        yield session


@pytest.fixture(scope="module")
def good_html() -> str:
    """A bar chart (with plotly.js inline) and a line chart, in one offline page."""
    bars = go.Figure(go.Bar(x=["build", "lease", "hybrid"], y=[3, 1, 2]))
    bars.update_layout(title_text="Sites online by strategy")
    lines = go.Figure(go.Scatter(x=[2026, 2027, 2028], y=[0.2, 1.1, 2.5], mode="lines"))
    lines.update_layout(title_text="GW online")
    html = pio.to_html(bars, include_plotlyjs=True, full_html=True, div_id="bars")
    return with_body(
        html, pio.to_html(lines, include_plotlyjs=False, full_html=False, div_id="lines")
    )


def with_body(html: str, extra: str) -> str:
    """``html`` with ``extra`` added at the end of its body."""
    head, tail = html.rsplit("</body>", 1)
    return f"{head}{extra}</body>{tail}"


def open_page(chromium: Chromium, tmp_path: Path, html: str) -> PageReport:
    path = tmp_path / "page.html"
    path.write_text(html, encoding="utf-8")
    return chromium.render(path, tmp_path / "page.png")


def test_both_charts_render_without_errors_and_a_screenshot_is_saved(chromium, tmp_path, good_html):
    page = open_page(chromium, tmp_path, good_html)

    assert page.ok, page.problems
    assert page.settled
    assert (page.console_errors, page.page_errors) == ([], [])
    assert (page.blocked_requests, page.failed_requests) == ([], [])
    assert [(chart.id, chart.title) for chart in page.charts] == [
        ("bars", "Sites online by strategy"),
        ("lines", "GW online"),
    ]
    assert all(chart.rendered and chart.svg for chart in page.charts)
    assert page.charts[0].marks >= 3  # three bars
    assert page.charts[1].marks >= 1  # one line

    assert page.screenshot == tmp_path / "page.png"
    data = page.screenshot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 10_000
    pixels = matplotlib.image.imread(page.screenshot)
    height, width = pixels.shape[:2]
    assert width == 1400  # the viewport
    assert height >= 900  # full page: two charts are taller than the viewport
    assert pixels.std() > 0.01  # not a blank page


def test_a_console_error_is_reported(chromium, tmp_path, good_html):
    html = with_body(good_html, "<script>console.error('boom from the page')</script>")
    page = open_page(chromium, tmp_path, html)

    assert not page.ok
    assert any("boom from the page" in text for text in page.console_errors)
    assert any(problem.startswith("console error: boom") for problem in page.problems)
    assert all(chart.rendered for chart in page.charts)  # the charts are fine, the page is not


def test_an_uncaught_exception_is_reported(chromium, tmp_path, good_html):
    html = with_body(good_html, "<script>throw new TypeError('kaboom')</script>")
    page = open_page(chromium, tmp_path, html)

    assert not page.ok
    assert any("kaboom" in text for text in page.page_errors)


def test_a_chart_that_needs_the_network_is_blocked_and_reported(chromium, tmp_path):
    html = f"""<!DOCTYPE html><html><head><script src="{CDN}"></script></head><body>
    <div id="cdn" class="plotly-graph-div" style="height:400px"></div>
    <script>Plotly.newPlot("cdn", [{{type: "bar", y: [1, 2, 3]}}])</script>
    </body></html>"""
    started = time.monotonic()
    page = open_page(chromium, tmp_path, html)

    assert time.monotonic() - started < 10  # blocked at once, no waiting on a network
    assert page.blocked_requests == [CDN]
    assert any("Plotly is not defined" in text for text in page.page_errors)
    assert [chart.rendered for chart in page.charts] == [False]
    assert f"blocked request: {CDN}" in page.problems


def test_every_kind_of_network_request_is_blocked(chromium, tmp_path):
    html = """<!DOCTYPE html><html><head>
    <link rel="stylesheet" href="http://example.com/style.css"></head><body>
    <img src="https://example.com/logo.png">
    <script src="missing-local.js"></script>
    <script>
      fetch("https://example.com/data.json").catch(() => {});
      new WebSocket("wss://example.com/socket");
    </script></body></html>"""
    page = open_page(chromium, tmp_path, html)

    assert set(page.blocked_requests) >= {
        "http://example.com/style.css",
        "https://example.com/logo.png",
        "https://example.com/data.json",
    }
    assert any("socket" in url for url in page.blocked_requests)
    # A missing local file is a failed request, not a blocked one.
    assert [text for text in page.failed_requests if "missing-local.js" in text]
    assert not page.ok


def test_charts_drawn_in_svg_or_webgl_pass_and_empty_containers_are_reported(
    chromium, tmp_path, good_html
):
    webgl = go.Figure(go.Scattergl(x=[1, 2, 3], y=[3, 1, 2], mode="markers", marker_size=20))
    empty_div = '<div id="empty" class="plotly-graph-div" style="height:300px"></div>'
    no_data = go.Figure(layout_title_text="Axes but no data")
    extra = [
        pio.to_html(webgl, include_plotlyjs=False, full_html=False, div_id="webgl"),
        empty_div,
        pio.to_html(no_data, include_plotlyjs=False, full_html=False, div_id="nodata"),
    ]
    page = open_page(chromium, tmp_path, with_body(good_html, "".join(extra)))

    rendered = {chart.id: chart.rendered for chart in page.charts}
    assert rendered == {"bars": True, "lines": True, "webgl": True, "empty": False, "nodata": False}
    webgl_chart = page.charts[2]
    assert (webgl_chart.marks, webgl_chart.canvases > 0) == (0, True)  # drawn on a canvas
    assert webgl_chart.title == ""  # untitled, not plotly's 'Click to enter Plot title'
    assert [chart.id for chart in page.unrendered] == ["empty", "nodata"]
    assert not page.ok
    assert page.console_errors == []  # nothing but the charts gives it away
    assert sum("NOT rendered" in problem for problem in page.problems) == 2


@pytest.mark.parametrize(
    ("ci", "outcome"), [("1", pytest.fail.Exception), ("", pytest.skip.Exception)]
)
def test_a_missing_browser_skips_locally_and_fails_in_ci(monkeypatch, tmp_path, ci, outcome):
    monkeypatch.setattr(browser, "CHROMIUM", str(tmp_path / "no-chromium"))
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="no Chromium at"):
        require_chromium()
