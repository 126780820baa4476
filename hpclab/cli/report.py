"""``hpclab report``: run each workflow's default scenario and write one standalone HTML report."""

from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser("report", help="run every workflow's default scenario headless and write "
                                      "one standalone HTML report (no server, no network)")
    p.add_argument("--out", default="report.html", metavar="FILE",
                   help="the HTML file to write (default: report.html)")
    p.add_argument("--only", action="append", default=None, metavar="WORKFLOW",
                   help="include only this workflow (repeatable): collectives, pools, simulate, "
                        "screening, cae, llm, platform")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from hpclab.cli._args import check_writable_file
    from hpclab.report import write_report

    out = Path(args.out)
    if not out.is_dir() and out.parent.is_dir():  # (write_report refuses a folder, a missing folder)
        check_writable_file("--out", out)  # /dev/full, a read-only folder: before building the report

    report = write_report(args.out, only=args.only, progress=not args.no_progress)
    print(report.status_text())
    print(f"wrote {args.out} ({len(report.figures)} plots, {report.seconds:.1f} s)")
    if not report.ok:
        failed = ", ".join(s.key for s in report.sections if s.status == "failed")
        print(f"hpclab: error: workflows failed: {failed} (see the report)", file=sys.stderr)
        return 1
    return 0
