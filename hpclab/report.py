"""One standalone HTML report of every workflow, for people who do not open Jupyter.

:func:`build_report` runs the default (small, fast) scenario of each workflow headless through
the workflows' public APIs, and :func:`write_report` writes the result as ONE HTML file with the
bokeh plots embedded and bokeh's JavaScript and CSS inline (no CDN, no server): it opens from
disk in any browser with no network.

Each section is titled with the question its workflow answers. A workflow whose module is not
installed is listed as *not available* (never faked); a workflow that raises is listed as
*failed* with its one-line error, and :attr:`Report.ok` is then false.

This module sits at the entry layer (beside :mod:`hpclab.cli`): it calls every layer below and
imports bokeh only to embed figures the views made.

Examples
--------
>>> from hpclab.report import write_report            # doctest: +SKIP
>>> report = write_report("report.html")               # doctest: +SKIP
>>> [(s.key, s.status) for s in report.sections]       # doctest: +SKIP
"""

from __future__ import annotations

import html
import importlib
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hpclab._validate import HpclabError
from hpclab.viz._common import Part

# Never reach a CDN (set before bokeh is imported anywhere below).
os.environ.setdefault("BOKEH_RESOURCES", "inline")

__all__ = ["Part", "Workflow", "Section", "Report", "WORKFLOWS", "build_report", "render_html",
           "write_report"]

STATUSES = ("ok", "not available", "failed")


@dataclass(frozen=True)
class Workflow:
    """A workflow in the report: its key, the question it answers, where it lives, its builder.

    ``modules`` are the workflow's own modules: if one of them cannot be imported because it does
    not exist, the section is *not available*. ``build()`` returns a :class:`Part`.
    """

    key: str
    question: str
    modules: tuple[str, ...]
    notebook: str
    build: Callable[[], Part]


@dataclass
class Section:
    """One workflow's result in a report."""

    key: str
    question: str
    status: str  # one of STATUSES
    notebook: str = ""
    figures: list = field(default_factory=list)
    table: object = None
    text: str = ""
    reason: str = ""  # why not available / the error
    seconds: float = 0.0


@dataclass
class Report:
    """The sections of a report, in order, and how long building them took."""

    sections: list[Section]
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no workflow failed (missing ones are not failures)."""
        return all(s.status != "failed" for s in self.sections)

    @property
    def figures(self) -> list:
        return [f for s in self.sections for f in s.figures]

    def summary(self) -> str:
        """Deprecated: :meth:`status_text` (``summary`` is a run's summary Dataset)."""
        from hpclab._deprecated import warn

        warn("hpclab.report.Report.summary()", "Report.status_text()")
        return self.status_text()

    def status_text(self) -> str:
        """One line per section: key, status, seconds, reason."""
        lines = []
        for s in self.sections:
            extra = f" ({s.reason})" if s.reason else f" ({len(s.figures)} plot(s))"
            lines.append(f"{s.key:<12} {s.status:<14} {s.seconds:6.1f} s{extra}")
        return "\n".join(lines)


# --- the workflows' default scenarios --------------------------------------------------------------
# A workflow's view module may offer ``report_part()`` (its own choice of plots for the report);
# otherwise the builder below runs the default scenario through the workflow's public API.


def _from_view(view):
    part = getattr(view, "report_part", None)
    return part() if callable(part) else None


def _collectives() -> Part:
    from hpclab.viz import collectives as view

    return view.report_part()


def _pools() -> Part:
    from hpclab.elastic import run_burst
    from hpclab.viz import pools as view

    own = _from_view(view)
    if own is not None:
        return own
    run = run_burst(300, policy="spot-first", spot_share=0.5, preemptions=2, seed=0)
    if not run.correct:
        raise RuntimeError("the burst on the elastic pool returned wrong results")
    table = run.bill_table().set_index("itype")
    text = (f"A real burst of {run.n_tasks} short tasks on an ElasticPool (real Dask workers "
            f"emulating {run.instances} cloud instances with catalog boot delays, spot-first "
            f"policy) that grows from zero, survives {run.preemptions} spot reclaims with every "
            f"result correct, and shrinks back to zero: "
            f"{run.wall_seconds:.1f} s of wall time, {run.pool_seconds:,.0f} pool seconds, "
            f"{run.total_cost:.4f} USD on per-second billing.")
    return Part(figures=[view.timeline_figure(run.events), view.cost_figure(run.events)],
                table=table, text=text)


def _virtual_clock() -> Part:
    import pandas as pd

    from hpclab.elastic.simulate import campaign
    from hpclab.result import compare
    from hpclab.viz import simulate as view

    own = _from_view(view)
    if own is not None:
        return own
    labels = ["one zone, one type, on-demand", "all zones and generations, spot first"]
    results = [campaign(100_000, 1_000_000, policy=p, seed=0, progress=False)
               for p in ("single-zone", "global-spot")]
    m = compare(results, labels).to_dataframe()
    table = pd.DataFrame({"makespan [h]": m["makespan_s"] / 3600.0, "cost [USD]": m["cost_usd"],
                          "core-hours": m["core_hours"], "utilisation": m["utilisation"],
                          "peak cores": m["peak_cores"], "capacity refusals": m["refusals"],
                          "spot reclaims": m["reclaims"],
                          "work redone [core-h]": m["work_redone"] / 3600.0}).rename_axis(None)
    return Part(figures=[view.cores_figure(results, labels), view.cost_figure(results, labels)],
                table=table,
                text="A campaign of 1,000,000 lognormal tasks (mean 30 core-minutes) arriving over 4 h "
                     "on a quota of 100,000 cores, replayed on the virtual clock with the same policy "
                     "objects that drive the real pool: the single-zone on-demand baseline against "
                     "global placement across zones and CPU generations on spot (E-HPC Instant). "
                     "Zone capacities, prices and spot reclaim rates come from the catalog.")


def _screening() -> Part:
    from hpclab.viz import screening as view

    return view.report_part()


def _cae() -> Part:
    from hpclab.viz import cae as view

    return view.report_part()


def _llm() -> Part:
    from hpclab.viz import llm as view

    return view.report_part()


def _platform() -> Part:
    from hpclab.viz import platform as view

    return view.report_part()


WORKFLOWS: tuple[Workflow, ...] = (
    Workflow("collectives", "How long does a collective take on TCP, eRDMA and HPN-class RDMA, "
             "and why does tightly coupled work need the fast fabric?",
             ("hpclab.network.collectives", "hpclab.viz.collectives"), "02_collectives_erdma.ipynb",
             _collectives),
    Workflow("pools", "What does a burst of real work cost on an elastic pool that grows from zero, "
             "survives spot preemptions and shrinks back?",
             ("hpclab.elastic.pool", "hpclab.viz.pools"), "01_elastic_pools.ipynb", _pools),
    Workflow("simulate", "What do the same policies do at 100,000 cores on a virtual clock?",
             ("hpclab.elastic.simulate", "hpclab.viz.simulate"), "01b_virtual_clock.ipynb",
             _virtual_clock),
    Workflow("screening", "How fast and at what cost does a virtual drug screen run on elastic "
             "capacity, and what would a campaign of millions cost?",
             ("hpclab.workloads.screening", "hpclab.viz.screening"), "03_drug_screening.ipynb",
             _screening),
    Workflow("cae", "When does adding cores stop speeding up a tightly coupled CAE solve, on each "
             "fabric?", ("hpclab.workloads.cae", "hpclab.viz.cae"), "04_cae_simulation.ipynb", _cae),
    Workflow("llm", "How long is a training step on thousands of GPUs, and what share of wall time "
             "is useful training?", ("hpclab.workloads.llm", "hpclab.viz.llm"),
             "05_llm_pretraining.ipynb", _llm),
    Workflow("platform", "What does sharing one elastic capacity between HPC and AI jobs do to "
             "waiting time, utilisation and cost?", ("hpclab.platform", "hpclab.viz.platform"),
             "06_unified_platform.ipynb", _platform),
)


def _missing_module(exc: ModuleNotFoundError, modules: Iterable[str]) -> str | None:
    """The workflow module that does not exist, if that is what ``exc`` says (else None)."""
    missing = exc.name or ""
    for module in modules:
        if missing and (module == missing or module.startswith(missing + ".")):
            return module
    return None


def _run(workflow: Workflow) -> Section:
    section = Section(workflow.key, workflow.question, "ok", notebook=workflow.notebook)
    t0 = time.perf_counter()
    try:
        for module in workflow.modules:
            importlib.import_module(module)
        part = workflow.build()
        if not hasattr(part, "figures"):  # a Part, or any object with figures/table/text
            raise TypeError(f"report builder for {workflow.key} returned {type(part).__name__}, "
                            "not an hpclab.report.Part")
        section.figures = list(part.figures)
        section.table, section.text = getattr(part, "table", None), getattr(part, "text", "")
    except ModuleNotFoundError as exc:
        module = _missing_module(exc, workflow.modules)
        if module is None:
            section.status, section.reason = "failed", f"{type(exc).__name__}: {exc}"
        else:
            section.status, section.reason = "not available", f"{module} is not installed"
    except Exception as exc:  # a workflow's failure is reported, not hidden, and fails the report
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        section.status, section.reason = "failed", f"{type(exc).__name__}: {first}"
    section.seconds = time.perf_counter() - t0
    return section


def build_report(only: Sequence[str] | None = None, workflows: Sequence[Workflow] | None = None,
                 progress: bool = False) -> Report:
    """Run each workflow's default scenario and collect its plots.

    Parameters
    ----------
    only : sequence of str, optional
        Keys of the workflows to include (default: all of :data:`WORKFLOWS`).
    workflows : sequence of Workflow, optional
        Use these instead of :data:`WORKFLOWS` (for your own sections).
    progress : bool
        Show a tqdm progress bar on stderr.

    Returns
    -------
    Report
    """
    workflows = tuple(WORKFLOWS if workflows is None else workflows)
    if only is not None:
        known = [w.key for w in workflows]
        for key in only:
            if key not in known:
                raise HpclabError(f"only must name workflows among {', '.join(known)}; got {key!r}")
        workflows = tuple(w for w in workflows if w.key in only)
    t0 = time.perf_counter()
    items = workflows
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(workflows, desc="report", unit="workflow")
    sections = []
    for w in items:
        if progress:
            items.set_postfix_str(w.key)
        sections.append(_run(w))
    return Report(sections, seconds=time.perf_counter() - t0)


# --- HTML ----------------------------------------------------------------------------------------

_CSS = """
<style>
  body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto;
         max-width: 1100px; padding: 1.5em 2em 4em; color: #222; height: auto; }
  h1 { margin-bottom: 0.2em; }
  .hpclab-lede { color: #555; margin-top: 0; }
  nav.hpclab-toc ol { columns: 2; }
  section.hpclab-section { border-top: 1px solid #ddd; margin-top: 2em; padding-top: 0.5em; }
  section.hpclab-section h2 { font-size: 1.25em; }
  .hpclab-status { display: inline-block; font-size: 0.8em; padding: 0.1em 0.6em;
                   border-radius: 0.8em; margin-left: 0.5em; vertical-align: middle; }
  .hpclab-ok { background: #e3f4e3; color: #225522; }
  .hpclab-not-available { background: #eee; color: #555; }
  .hpclab-failed { background: #fbe3e3; color: #8a1f1f; }
  .hpclab-plot { margin: 1em 0; }
  table.hpclab-table { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0; }
  table.hpclab-table th, table.hpclab-table td { border: 1px solid #ccc; padding: 0.2em 0.6em;
                                                 text-align: right; }
  .hpclab-meta { color: #777; font-size: 0.85em; }
</style>
"""

_TEMPLATE = """
{% block postamble %}""" + _CSS + """{% endblock %}
{% block contents %}
<h1>{{ heading | e }}</h1>
<p class="hpclab-lede">{{ lede | e }}</p>
<nav class="hpclab-toc"><ol>
{% for s in sections %}<li><a href="#{{ s.key }}">{{ s.key }}</a> &mdash; {{ s.status }}</li>
{% endfor %}</ol></nav>
{% for s in sections %}
<section class="hpclab-section" id="{{ s.key }}" data-status="{{ s.status }}"
         data-plots="{{ s.roots | length }}">
  <h2>{{ s.question | e }}<span class="hpclab-status hpclab-{{ s.status | replace(' ', '-') }}">{{ s.status }}</span></h2>
  {% if s.text %}<p>{{ s.text | e }}</p>{% endif %}
  {% if s.reason %}<p class="hpclab-reason">{{ s.reason | e }}</p>{% endif %}
  {% for i in s.roots %}<div class="hpclab-plot">{{ embed(roots[i]) }}</div>
  {% endfor %}
  {{ s.table_html }}
  <p class="hpclab-meta">{{ s.meta | e }}</p>
</section>
{% endfor %}
{% endblock %}
"""


def _table_html(table) -> str:
    if table is None:
        return ""
    import pandas as pd

    if isinstance(table, pd.Series):
        table = table.to_frame()
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"a report table must be a pandas DataFrame, got {type(table).__name__}")
    from hpclab.viz._common import readable

    # the notebooks' table style: thousands separators, 3 significant figures, $ for money, yes/no
    styler = readable(table, index=not isinstance(table.index, pd.RangeIndex))
    return styler.set_table_attributes('class="hpclab-table"').to_html()


def render_html(report: Report, title: str = "hpclab report") -> str:
    """The report as one standalone HTML page (bokeh JS/CSS inline, all plots embedded)."""
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    from hpclab import __version__

    models, rows = [], []
    for s in report.sections:
        roots = []
        for fig in s.figures:
            roots.append(len(models))
            models.append(fig)
        meta = f"{s.seconds:.1f} s"
        if s.notebook:
            meta += f" · explore it in notebooks/{s.notebook}"
        rows.append(dict(key=s.key, question=s.question, status=s.status, text=s.text,
                         reason=s.reason, roots=roots, table_html=_table_html(s.table), meta=meta))
    available = sum(s.status == "ok" for s in report.sections)
    lede = (f"hpclab {__version__}: the default scenario of each workflow, run headless in "
            f"{report.seconds:.1f} s ({available} of {len(report.sections)} workflows available). "
            "Real runs are small and on this machine; modelled runs are large. Plots are "
            "interactive (pan, zoom, hover) and need no network.")
    variables = dict(sections=rows, heading=title, lede=lede)
    if not models:  # bokeh needs at least one model; a page with no plots still renders
        from bokeh.models import Div

        models = [Div(text="", visible=False)]
    return file_html(models, resources=INLINE, title=title, template=_TEMPLATE,
                     template_variables=variables, suppress_callback_warning=True)


def write_report(out: str | os.PathLike = "report.html", only: Sequence[str] | None = None,
                 progress: bool = False, title: str = "hpclab report") -> Report:
    """Build the report and write it to ``out`` as one standalone HTML file.

    Returns the :class:`Report` (check ``report.ok``; sections that failed are in the file too).
    """
    out = Path(out)
    if out.is_dir():
        raise HpclabError(f"out must be a file path, got the folder {out}")
    if not out.parent.exists():
        raise HpclabError(f"out must be in an existing folder; {out.parent} does not exist")
    report = build_report(only=only, progress=progress)
    out.write_text(render_html(report, title=title), encoding="utf-8")
    return report
