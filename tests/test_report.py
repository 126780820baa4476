"""hpclab.report and ``hpclab report``: one standalone HTML file, plots inline, nothing faked."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest
from bokeh.layouts import row
from bokeh.plotting import figure

from hpclab import HpclabError
from hpclab.cli import main
from hpclab.report import WORKFLOWS, Part, Workflow, build_report, render_html, write_report

pytestmark = pytest.mark.timeout(300)


def _load_helper():
    """tests/_jupyter.py, loaded once per session (it caches the default report for both
    this file and tests/test_browser.py)."""
    name = "_hpclab_test_jupyter"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("_jupyter.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _external_refs(text: str) -> list[str]:
    """<script src=...> or <link href=...> that point outside the file."""
    return re.findall(r"<(?:script|link)\b[^>]*\b(?:src|href)\s*=\s*[\"']?(?:https?:)?//[^>]*>", text, re.I)


def _two_figures() -> Part:
    line = figure(width=300, height=200, title="line")
    line.line([1, 2, 3], [3, 1, 2])
    dots = figure(width=300, height=200, title="dots")
    dots.scatter([1, 2], [1, 2])
    return Part([line, row(dots)], None, "two plots")


def _boom() -> Part:
    raise ValueError("the model diverged\nsecond line that must not show")


def _missing_dependency() -> Part:
    import hpclab_not_a_real_package_xyz  # noqa: F401  (a bug in a builder, not a missing workflow)

    return Part()


def test_sections_keep_order_status_and_plots(tmp_path):
    workflows = [Workflow("a", "Does a work?", ("hpclab.network",), "a.ipynb", _two_figures),
                 Workflow("b", "Is b here?", ("hpclab.no_such_module",), "b.ipynb", _two_figures),
                 Workflow("c", "Does c fail loudly?", (), "", _boom),
                 Workflow("d", "Is a broken import a failure?", ("hpclab.network",), "", _missing_dependency)]
    report = build_report(workflows=workflows)
    assert [s.key for s in report.sections] == ["a", "b", "c", "d"]
    a, b, c, d = report.sections
    assert (a.status, len(a.figures), a.text) == ("ok", 2, "two plots")
    assert b.status == "not available" and "hpclab.no_such_module" in b.reason and not b.figures
    assert c.status == "failed" and c.reason == "ValueError: the model diverged"
    assert d.status == "failed" and "hpclab_not_a_real_package_xyz" in d.reason
    assert not report.ok
    html = render_html(report)
    # every figure travels as bokeh JSON inside the one file, and every question is a heading
    for fig in a.figures:
        assert f'"id":"{fig.id}"' in html
    for s in report.sections:
        assert s.question in html
    assert html.count('class="hpclab-plot"') == 2
    assert 'data-status="not available"' in html and "ValueError: the model diverged" in html
    assert not _external_refs(html)
    assert "Bokeh" in html and "application/json" in html  # bokeh's JS is inline


def test_external_reference_detector_can_fail():
    assert _external_refs('<script src="https://cdn.bokeh.org/bokeh/release/bokeh-3.9.2.min.js"></script>')
    assert _external_refs("<link rel=stylesheet href=//example.org/x.css>")
    assert not _external_refs('<script type="text/javascript">var u = "https://bokeh.org";</script>')


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(HpclabError, match="only must name workflows among collectives"):
        build_report(only=["nope"])
    with pytest.raises(HpclabError, match="out must be a file path"):
        write_report(tmp_path)
    assert main(["report", "--out", str(tmp_path / "missing" / "r.html"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"hpclab: error: out must be in an existing folder; {tmp_path / 'missing'} does not exist"]


def _available(workflow: Workflow) -> bool:
    try:
        return all(importlib.util.find_spec(m) is not None for m in workflow.modules)
    except ModuleNotFoundError:
        return False


@pytest.fixture(scope="module")
def default_report(tmp_path_factory):
    report, out = _load_helper().default_report(tmp_path_factory.getbasetemp() / "shared-report")
    return report, out.read_text(encoding="utf-8")


def test_default_report_runs_every_available_workflow(default_report):
    report, html = default_report
    assert [s.key for s in report.sections] == [w.key for w in WORKFLOWS]
    for workflow, section in zip(WORKFLOWS, report.sections):
        if _available(workflow):
            assert section.status == "ok", f"{section.key}: {section.reason}"
            assert section.figures, f"{section.key} produced no plot"
        else:
            assert section.status == "not available", section
        assert workflow.question in html
    assert report.ok, report.status_text()


def test_default_report_is_one_standalone_file(default_report):
    report, html = default_report
    assert html.startswith("<!DOCTYPE html>")
    assert not _external_refs(html)
    for fig in report.figures:
        assert f'"id":"{fig.id}"' in html
    assert html.count('class="hpclab-plot"') == len(report.figures)


def test_cli_writes_the_report(tmp_path, capsys):
    out = tmp_path / "r.html"
    code = main(["report", "--out", str(out), "--only", "collectives", "--no-progress"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert out.exists() and f"wrote {out}" in text
    assert "collectives" in text and "pools" not in text


def test_cli_exit_codes_say_what_failed(tmp_path, capsys, monkeypatch):
    import hpclab.report as rep

    monkeypatch.setattr(rep, "WORKFLOWS", (Workflow("good", "Fine?", (), "", _two_figures),
                                           Workflow("bad", "Broken?", (), "", _boom)))
    out = tmp_path / "r.html"
    assert main(["report", "--out", str(out), "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert captured.err.strip() == "hpclab: error: workflows failed: bad (see the report)"
    assert "bad          failed" in captured.out and out.exists()
    assert "ValueError: the model diverged" in out.read_text(encoding="utf-8")
    assert main(["report", "--out", str(out), "--only", "nope", "--no-progress"]) == 2
    assert capsys.readouterr().err.strip() == "hpclab: error: only must name workflows among good, bad; got 'nope'"
