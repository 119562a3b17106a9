"""Write the figures (RUN/report/*.png) and the self-contained RUN/report.html of a trained run.

  genrefusion report runs/demo

`train` writes the report itself; use this after changing the report code or if it was interrupted."""
from __future__ import annotations


def add_arguments(p):
    p.add_argument("run_dir", metavar="RUN", help="a trained run folder (holds metrics.json)")


def run(args) -> int:
    from ..report import write_report

    print(f"report: {write_report(args.run_dir, progress=False)}")
    return 0
