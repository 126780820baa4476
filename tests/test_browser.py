"""The lab as a person meets it: JupyterLab 4 in headless Chromium, with no network.

Starts JupyterLab on 127.0.0.1 with a token (see ``tests/_jupyter.py``) on a temporary copy of
``notebooks/``, opens notebooks in Debian's Chromium driven by Playwright, runs all cells, checks
that bokeh plots and ipywidgets render, moves a slider and checks that a bokeh plot changes, and
opens the standalone HTML report. Every request that leaves 127.0.0.1 is blocked and recorded:
bokeh must load from inline resources. Screenshots go to ``test-output/browser/``.

Run with ``pytest -m browser tests/test_browser.py``; skipped when Chromium is missing.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SHOTS = ROOT / "test-output" / "browser"


def _load_helper():
    """tests/_jupyter.py, loaded once per session under a private name (tests/ is no package)."""
    name = "_hpclab_test_jupyter"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("_jupyter.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


jl = _load_helper()

_reason = jl.chromium_missing_reason()
pytestmark = [pytest.mark.browser, pytest.mark.timeout(300),
              pytest.mark.skipif(_reason is not None, reason=_reason or "")]

# A notebook written by the test itself: proves the harness (inline bokeh, a slider driving a
# BokehModel in place) independently of the workflow notebooks.
PROBE_CELLS = [
    ("markdown", "# Probe\nA slider drives a bokeh line through its ColumnDataSource."),
    ("code", "from hpclab.viz import as_widget, setup_notebook\n"
             "import ipywidgets as widgets\n"
             "from bokeh.models import ColumnDataSource\n"
             "from bokeh.plotting import figure\n"
             "setup_notebook()"),
    ("code", "xs = list(range(20))\n"
             "source = ColumnDataSource(dict(x=xs, y=[1 * x for x in xs]))\n"
             "fig = figure(height=260, width=420, y_range=(0, 200), title='y = slope * x')\n"
             "fig.line('x', 'y', source=source, line_width=3)\n"
             "slope = widgets.IntSlider(value=1, min=1, max=10, description='slope')\n"
             "readout = widgets.Label(value='slope = 1')\n"
             "def on_slope(change):\n"
             "    source.data = dict(x=xs, y=[change['new'] * x for x in xs])\n"
             "    readout.value = f\"slope = {change['new']}\"\n"
             "slope.observe(on_slope, names='value')\n"
             "widgets.VBox([slope, as_widget(fig), readout])"),
]


def _write_probe(path: Path) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(src) if kind == "markdown" else nbformat.v4.new_code_cell(src)
                for kind, src in PROBE_CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = jl.copy_notebooks(NOTEBOOKS, tmp_path_factory.mktemp("notebooks"))
    _write_probe(root / "probe.ipynb")
    with jl.JupyterLab(root, tmp_path_factory.mktemp("jupyter")) as server:
        yield server


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = jl.launch_browser(p)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A fresh page that blocks (and records) every request leaving 127.0.0.1."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.external_requests = []

    def guard(route):
        url = route.request.url
        host = urlparse(url).hostname
        if url.startswith(("file:", "data:", "blob:")) or host in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            context.external_requests.append(url)
            route.abort()

    context.route("**/*", guard)
    pg = context.new_page()
    pg.console_errors = []
    pg.on("console", lambda m: m.type == "error" and pg.console_errors.append(m.text))
    pg.set_default_timeout(60_000)
    yield pg
    context.close()


def _bokeh_plots(scope):
    """Bokeh plot canvases in ``scope`` (Playwright's CSS pierces bokeh's shadow roots)."""
    return scope.locator(".bk-Canvas")


def _move_slider_and_check_plot(page, panel, name: str) -> dict:
    """Find a cell output holding a slider and a bokeh plot; press keys on the slider handle and
    wait until a plot in that output looks different. Returns what it did."""
    outputs = panel.locator(".jp-Notebook .jp-Cell-outputArea")
    chosen = None
    for i in range(outputs.count()):
        out = outputs.nth(i)
        if out.locator(".widget-slider .noUi-handle").count() and _bokeh_plots(out).count():
            chosen = out
            break
    assert chosen is not None, f"{name}: no cell output with both a slider and a bokeh plot"
    chosen.scroll_into_view_if_needed()
    plots = _bokeh_plots(chosen)
    n_plots = plots.count()
    # mark the plots' DOM nodes: updated in place, they keep the mark; redrawn, they would not
    for k in range(n_plots):
        plots.nth(k).evaluate("(e, k) => e.setAttribute('data-hpclab-mark', String(k))", k)
    before = [plots.nth(k).screenshot() for k in range(n_plots)]
    page.screenshot(path=str(SHOTS / f"{name}-before-slider.png"))
    handle = chosen.locator(".widget-slider .noUi-handle").first
    label = chosen.locator(".widget-slider").first.get_attribute("class")
    readout = chosen.locator(".widget-slider .widget-readout").first
    old_value = readout.inner_text() if readout.count() else None
    handle.focus()
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    deadline = time.monotonic() + 20
    changed = []
    while time.monotonic() < deadline:
        jl.wait_kernel_idle(page, 30_000)
        after = [plots.nth(k).screenshot() for k in range(plots.count())]
        changed = [k for k, (a, b) in enumerate(zip(before, after)) if a != b]
        if changed:
            break
        time.sleep(0.5)
    page.screenshot(path=str(SHOTS / f"{name}-after-slider.png"))
    new_value = readout.inner_text() if readout.count() else None
    assert new_value != old_value, f"{name}: the slider did not move ({old_value!r})"
    assert changed, f"{name}: no bokeh plot changed after the slider moved {old_value} -> {new_value}"
    marks = [plots.nth(k).get_attribute("data-hpclab-mark") for k in range(plots.count())]
    assert marks == [str(k) for k in range(n_plots)], (
        f"{name}: the plots were redrawn, not updated in place (marks {marks})")
    return {"slider": label, "from": old_value, "to": new_value, "plots_changed": changed}


def _run_notebook(page, lab, name: str):
    """Open ``name``, run all cells, check they ran without errors and that bokeh plots and
    ipywidgets rendered; return (the notebook's panel locator, facts)."""
    panel = jl.open_notebook(page, lab, name)
    seconds = jl.run_all_cells(page, timeout_ms=150_000)
    stem = Path(name).stem
    errors = jl.cell_errors(page)
    page.screenshot(path=str(SHOTS / f"{stem}-ran.png"), full_page=True)
    assert not errors, f"{name}: cells raised:\n" + "\n---\n".join(errors)
    counts = jl.execution_counts(page)
    assert counts and all(c.strip("[]: ").isdigit() for c in counts), f"{name}: not all cells ran: {counts}"
    notebook = panel.locator(".jp-Notebook")
    assert _bokeh_plots(notebook).count() >= 1, f"{name}: no bokeh plot rendered"
    assert notebook.locator(".jupyter-widgets").count() >= 1, f"{name}: no ipywidget rendered"
    return panel, {"seconds": seconds, "cells": len(counts)}


def _assert_offline(page, name):
    assert not page.context.external_requests, (
        f"{name}: the page tried to reach the network: {page.context.external_requests[:5]}")


def test_probe_slider_updates_bokeh_in_place(page, lab):
    panel, info = _run_notebook(page, lab, "probe.ipynb")
    moved = _move_slider_and_check_plot(page, panel, "probe")
    jl.shutdown_kernel(page)
    readout = panel.locator(".jp-Notebook .widget-label").filter(has_text="slope =").first
    assert readout.inner_text() == "slope = 4", moved
    _assert_offline(page, "probe")
    assert info["cells"] == 2


@pytest.mark.parametrize("name", ["00_tour.ipynb", "02_collectives_erdma.ipynb"])
def test_workflow_notebook_in_lab(page, lab, name):
    if not (NOTEBOOKS / name).exists():
        pytest.skip(f"notebooks/{name} does not exist yet")
    panel, _ = _run_notebook(page, lab, name)
    _move_slider_and_check_plot(page, panel, Path(name).stem)
    jl.shutdown_kernel(page)
    _assert_offline(page, name)


def _rendered_plots(section) -> int:
    """Plots in a report section that bokeh has drawn: an embed with height and a canvas
    (Playwright's locators pierce bokeh's shadow roots; document.querySelector does not)."""
    plots = section.locator(".hpclab-plot")
    n = 0
    for k in range(plots.count()):
        plot = plots.nth(k)
        box = plot.bounding_box()
        if box and box["height"] > 50 and plot.locator(".bk-Canvas").count() >= 1:
            n += 1
    return n


def test_report_renders_every_plot_offline(page, tmp_path_factory):
    report, out = jl.default_report(tmp_path_factory.getbasetemp() / "shared-report")
    assert report.ok, report.status_text()
    page.goto(out.as_uri(), wait_until="load")
    page.wait_for_function("() => window.Bokeh && Bokeh.documents.length === 1", timeout=60_000)
    sections = page.locator("section.hpclab-section")
    assert sections.count() == len(report.sections)
    deadline = time.monotonic() + 60
    while True:
        rows = []
        for k, s in enumerate(report.sections):
            sec = sections.nth(k)
            rows.append((sec.get_attribute("id"), sec.get_attribute("data-status"),
                         int(sec.get_attribute("data-plots")), _rendered_plots(sec)))
        if all(r[2] == r[3] for r in rows) or time.monotonic() > deadline:
            break
        time.sleep(1)
    page.screenshot(path=str(SHOTS / "report.png"), full_page=True)
    assert [r[0] for r in rows] == [s.key for s in report.sections]
    for (key, status, plots, rendered), section in zip(rows, report.sections):
        assert plots == len(section.figures), key
        assert rendered == plots, f"{key}: {rendered} of {plots} plots rendered"
        assert (status == "ok") == (plots > 0), f"{key}: status {status} with {plots} plots"
    assert sum(r[3] for r in rows) == len(report.figures)
    assert page.console_errors == [], page.console_errors
    _assert_offline(page, "report")
