"""`dvc plots show` on the repro'd smoke project, its page opened in headless Chromium (issue 11).

The page is the project's template (.dvc/config: plots.html_template), which loads vega,
vega-lite and vega-embed from node_modules/ (`make plots-deps`). The browser may load nothing
but files: every http(s) request is aborted, as on an air-gapped cluster, so the check holds on
a machine that does reach a CDN too. Checked: no console error, no page error, no failed
request, and every plot DVC declared drawn (a vega-embed canvas or svg per vega plot, a decoded
image per image plot). DVC's own CDN page, the way it failed before, must fail the same check.

Chromium, Playwright and the libraries are required, not optional: .ci/run installs chromium
and node, `make test` runs `make plots-deps`. Screenshots of a failing page are kept under
test-artifacts/dvc-plots/. The project is the pipeline tests' (helpers/smoke_project.py).
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from helpers.paths import REPO_ROOT
from helpers.smoke_project import run

pytestmark = pytest.mark.slow  # needs the smoke project's `dvc repro` (shared, minutes)

LIBRARIES = REPO_ROOT / "node_modules"
LIBRARY_FILES = (
    "vega/build/vega.min.js",
    "vega-lite/build/vega-lite.min.js",
    "vega-embed/build/vega-embed.min.js",
)
SCREENSHOTS = REPO_ROOT / "test-artifacts" / "dvc-plots"
DRAW_TIMEOUT_MS = 30_000
NOTHING_DRAWS_MS = 3_000  # pages whose libraries cannot load: no drawing to wait for
# DVC's renderer writes one `vegaEmbed('#<div id>', spec)` call per vega plot.
VEGA_CALL = re.compile(r"vegaEmbed\('#([^']+)'")
# Per vega plot: its div holds vega's drawing surface (class "marks"), with an area.
DRAWN_JS = """ids => ids.filter(id => {
    const marks = document.querySelector(`[id="${id}"] .marks`);
    if (!marks) return false;
    const box = marks.getBoundingClientRect();
    return box.width > 0 && box.height > 0;
})"""
IMAGES_JS = "() => [...document.images].map(i => i.complete && i.naturalWidth > 0)"
# The template's line for a page whose libraries did not load (dvc_plots_template.html).
NOTICE_JS = "() => document.getElementById('plots-libraries-missing')?.innerText ?? null"


@dataclass
class PageReport:
    """What a browser met opening one plots page."""

    vega_plots: list[str]  # the div ids of the page's vega plots
    drawn: list[str] = field(default_factory=list)
    images: list[bool] = field(default_factory=list)  # per <img>: loaded and decoded
    notice: str | None = None  # the template's "not installed" line, when shown
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.console_errors or self.page_errors or self.failed_requests)

    def __str__(self) -> str:
        return json.dumps(self.__dict__, indent=1)


@pytest.fixture(scope="module")
def project(smoke_project) -> Iterator[dict[str, Any]]:
    """The repro'd smoke project with the libraries where a clone has them after
    `make plots-deps` (a link to this checkout's node_modules/, git-ignored there too)."""
    missing = [name for name in LIBRARY_FILES if not (LIBRARIES / name).is_file()]
    assert not missing, f"{LIBRARIES} lacks {missing}: run `make plots-deps`"
    link = smoke_project["repo"] / "node_modules"
    if not link.is_symlink():
        link.symlink_to(LIBRARIES, target_is_directory=True)
    yield smoke_project


@pytest.fixture
def open_page(browser, request):
    """open_page(html) -> PageReport, with no network; a screenshot is kept when the test
    fails."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    # Only local files load: any http(s) request is aborted, and so reported as failed.
    context.route(re.compile(r"^https?://"), lambda route: route.abort("internetdisconnected"))
    page = context.new_page()
    failed_before = request.session.testsfailed

    def open_(html: Path, draw_timeout_ms: int = DRAW_TIMEOUT_MS) -> PageReport:
        report = PageReport(vega_plots=VEGA_CALL.findall(html.read_text(encoding="utf-8")))
        page.on("console", lambda m: m.type == "error" and report.console_errors.append(m.text))
        page.on("pageerror", lambda error: report.page_errors.append(str(error)))
        page.on("requestfailed", lambda r: report.failed_requests.append(f"{r.url}: {r.failure}"))
        page.goto(html.as_uri(), wait_until="load")
        with contextlib.suppress(PlaywrightTimeout):  # not drawn in time: the report says
            page.wait_for_function(  # vega-embed draws asynchronously after the load event
                f"ids => ({DRAWN_JS})(ids).length === ids.length",
                arg=report.vega_plots,
                timeout=draw_timeout_ms,
            )
        report.drawn = page.evaluate(DRAWN_JS, report.vega_plots)
        report.images = page.evaluate(IMAGES_JS)
        report.notice = page.evaluate(NOTICE_JS)
        return report

    yield open_
    if request.session.testsfailed > failed_before:  # the call phase was reported failed
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shot = SCREENSHOTS / f"{request.node.name}.png"
        page.screenshot(path=str(shot), full_page=True)
        print(f"screenshot of the failing page: {shot}")
    context.close()


@pytest.fixture(scope="module")
def declared(project) -> dict[str, int]:
    """How many plots of each renderer type (vega, image) DVC declares for the workspace."""
    out = project["scratch"] / "plots-json"
    shown = json.loads(
        run(["dvc", "plots", "show", "--json", "-o", str(out)], project["repo"], project["env"])
    )
    counts: dict[str, int] = {}
    for name, entries in shown["data"].items():
        assert len(entries) == 1, name  # the workspace alone: one entry per plot
        counts[entries[0]["type"]] = counts.get(entries[0]["type"], 0) + 1
    assert counts.get("vega") and counts.get("image"), counts  # the smoke run has both kinds
    return counts


def assert_drawn_offline(report: PageReport, declared: dict[str, int]) -> None:
    """The page met no error and drew each plot DVC declared."""
    assert report.clean, str(report)
    assert len(report.vega_plots) == declared["vega"], str(report)
    assert report.drawn == report.vega_plots, str(report)
    assert report.images == [True] * declared["image"], str(report)
    assert report.notice is None, str(report)


def test_plots_show_draws_every_plot_offline(project, declared, open_page):
    """A user's plain `dvc plots show` in the project: dvc_plots/index.html, all drawn."""
    repo = project["repo"]
    printed = run(["dvc", "plots", "show"], repo, project["env"]).strip().splitlines()[-1]
    html = (repo / "dvc_plots" / "index.html").resolve()
    assert printed == html.as_uri()
    assert_drawn_offline(open_page(html), declared)
    assert "cdn.jsdelivr.net" not in html.read_text(encoding="utf-8")


def test_the_cdn_page_fails_the_same_check(project, declared, open_page):
    """The page DVC writes without the project's template (vega from cdn.jsdelivr.net), as it
    did before: offline it draws nothing, and the check above fails on it."""
    from dvc_render.html import PAGE_HTML  # DVC's default page, the one with the CDN tags

    template = project["scratch"] / "cdn-template.html"
    template.write_text(PAGE_HTML, encoding="utf-8")
    out = project["repo"] / "dvc_plots_cdn"  # where the libraries would be found: ../
    run(["dvc", "plots", "show", "-o", str(out), "--html-template", str(template)],
        project["repo"], project["env"])  # fmt: skip
    try:
        report = open_page(out / "index.html", draw_timeout_ms=NOTHING_DRAWS_MS)
    finally:
        shutil.rmtree(out)  # not git-ignored: the pipeline tests commit the project
    with pytest.raises(AssertionError):
        assert_drawn_offline(report, declared)
    assert report.drawn == [], str(report)
    assert any("cdn.jsdelivr.net" in f for f in report.failed_requests), str(report)
    assert any("vegaEmbed is not defined" in e for e in report.page_errors), str(report)


def test_without_the_libraries_the_page_says_how_to_install_them(project, open_page):
    """Written where ../node_modules is absent: one visible line names `make plots-deps`, and
    the plots' own calls throw nothing."""
    out = project["scratch"] / "no-libraries"  # outside the project: no ../node_modules
    run(["dvc", "plots", "show", "-o", str(out)], project["repo"], project["env"])
    report = open_page(out / "index.html", draw_timeout_ms=NOTHING_DRAWS_MS)
    assert report.page_errors == [], str(report)
    assert report.failed_requests, str(report)
    assert all("node_modules" in f for f in report.failed_requests), str(report)
    assert report.drawn == [], str(report)
    assert report.notice is not None and "`make plots-deps`" in report.notice, str(report)
