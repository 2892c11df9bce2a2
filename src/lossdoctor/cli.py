"""The command line: ``lossdoctor diagnose | checkup | demo``.

Exit codes: 0 when every run is ``converging`` (or a checkup finds nothing above info),
1 for any other verdict or a warning, 2 for bad input (one line on stderr naming the file, the
line and what was expected).
"""
from __future__ import annotations

import argparse
import json
import sys

from .errors import LossDoctorError


def _emit(reports, args) -> int:
    """Print reports (one, or a list) as JSON or for the terminal, write HTML; return the exit code."""
    many = isinstance(reports, list)
    items = reports if many else [reports]
    if args.json:
        data = [r.to_dict() for r in items] if many else items[0].to_dict()
        print(json.dumps(data, indent=2, allow_nan=False))
    else:
        from .report.console import print_report

        print_report(items)
    if getattr(args, "html", None):
        from .report.html import render_html

        with open(args.html, "w", encoding="utf-8") as fh:
            fh.write(render_html(reports))
        if not args.json:
            print(f"HTML report written to {args.html}", file=sys.stderr)
    return max(r.exit_code for r in items)


def _cmd_diagnose(args) -> int:
    from ._diagnose import diagnose

    return _emit(diagnose(args.path, step=args.step, train=args.train, val=args.val), args)


def _cmd_checkup(args) -> int:
    from ._checkup import checkup_from_file

    report = checkup_from_file(args.target, budget_s=args.budget, progress=not args.json, steps=args.steps)
    return _emit(report, args)


def _cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(html=args.html, budget_s=args.budget)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lossdoctor", description="Why won't my loss converge, and what do I change?"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("diagnose", help="read a training log (file or directory) and diagnose the curves")
    p.add_argument("path", help="CSV/JSONL, TensorBoard event file or run dir, trainer_state.json, "
                   "Lightning metrics.csv, Keras CSVLogger, MLflow mlruns dir")
    p.add_argument("--json", action="store_true", help="print the report(s) as JSON")
    p.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report")
    p.add_argument("--step", metavar="COL", help="column/tag holding the step")
    p.add_argument("--train", metavar="COL", help="column/tag holding the training loss")
    p.add_argument("--val", metavar="COL", help="column/tag holding the validation loss")
    p.set_defaults(func=_cmd_diagnose)

    p = sub.add_parser("checkup", help="run short experiments on a recipe: path/to/file.py:build")
    p.add_argument("target", help="FILE.py:FUNCTION, where FUNCTION() returns the recipe dict")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report")
    p.add_argument("--budget", type=float, default=None,
                   help="time budget in seconds: how many of the optional probes run, never how long (default 300)")
    p.add_argument("--steps", type=int, default=None,
                   help="optimizer steps per probe run (default: the recipe's epochs, at most 300); never from the clock")
    p.set_defaults(func=_cmd_checkup)

    p = sub.add_parser("demo", help="diagnose and fix a broken network on scikit-learn's digits")
    p.add_argument("--html", metavar="FILE", default="report.html", help="where to write the report")
    p.add_argument("--budget", type=float, default=30.0, help="checkup budget in seconds")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except LossDoctorError as exc:
        print(f"lossdoctor: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `lossdoctor diagnose --json | head`: the reader left, nothing to report
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
