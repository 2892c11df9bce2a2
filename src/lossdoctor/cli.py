"""The command line: ``lossdoctor diagnose | checkup | demo``.

Exit codes, each meaning one thing:

* 0: every run is ``converging`` (or a checkup finds nothing above info);
* 1: a diagnosed problem (any other verdict, a checkup warning, ``--follow`` stopping at a problem);
* 2: bad input or a usage error (one line on stderr naming the file, the line and what was expected);
* 3: lossdoctor's own bug (one line naming it; the traceback with ``--debug``);
* 130: interrupted (Ctrl-C).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .errors import LossDoctorError, NoRunReadable, printable

EXIT_OK, EXIT_PROBLEM, EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
TORCH_HINT = "pip install 'lossdoctor[torch]'"


def _error(message: str) -> None:
    print(f"lossdoctor: error: {printable(message)}", file=sys.stderr)


def _write_html(path: str, reports) -> bool:
    """Write the HTML report; on failure say why in one line (the text/JSON result is already out)."""
    from .logs.files import is_regular_file, os_problem
    from .report.html import render_html

    html = render_html(reports)
    try:
        fh = open(path, "w", encoding="utf-8")
    except OSError as exc:  # a missing folder, a directory, no permission: nothing was touched
        _error(f"cannot write the HTML report to {path}: {os_problem(exc)}")
        return False
    try:
        with fh:
            fh.write(html)
    except OSError as exc:  # a full disk: a report cut short is worse than none
        if is_regular_file(Path(path)):  # never a device such as /dev/full
            try:
                os.remove(path)
            except OSError:
                pass
        _error(f"cannot write the HTML report to {path}: {os_problem(exc)}")
        return False
    return True


def _emit(reports, args, failures=()) -> int:
    """Print reports (one, or a list) as JSON or for the terminal, write HTML; return the exit code."""
    many = isinstance(reports, list)
    items = reports if many else [reports]
    for failure in failures:
        print(f"lossdoctor: skipped: {printable(failure)}", file=sys.stderr)
    if args.json:
        data = [r.to_dict() for r in items] if many else items[0].to_dict()
        print(json.dumps(data, indent=2, allow_nan=False))
    else:
        from .report.console import print_report

        print_report(items)
    code = max(r.exit_code for r in items)
    if getattr(args, "html", None):
        sys.stdout.flush()  # the diagnosis is out before anything can go wrong with the file
        if not _write_html(args.html, reports):
            return EXIT_BAD_INPUT
        if not args.json:
            print(f"HTML report written to {printable(args.html)}", file=sys.stderr)
    return code


def _cmd_diagnose(args) -> int:
    from ._diagnose import diagnose_mlflow, diagnose_path, follow

    if (args.path is None) == (args.mlflow is None):
        raise _Usage("give a log PATH or --mlflow URI (one of them)")
    if args.mlflow is None and (args.experiment or args.run):
        raise _Usage("--experiment and --run go with --mlflow")
    if args.follow:
        if args.mlflow or args.json or args.html:
            raise _Usage("--follow prints one line per change: not with --mlflow, --json or --html")
        if not args.interval > 0:
            raise _Usage("--interval must be a positive number of seconds")
        return follow(args.path, interval=args.interval, step=args.step, train=args.train, val=args.val,
                      out=lambda line: print(line, flush=True))
    if args.mlflow is not None:
        reports, failures = diagnose_mlflow(args.mlflow, experiment=args.experiment, run=args.run, step=args.step,
                                            train=args.train, val=args.val)
    else:
        reports, failures = diagnose_path(args.path, step=args.step, train=args.train, val=args.val)
    return _emit(reports[0] if len(reports) == 1 else reports, args, failures)


def _cmd_checkup(args) -> int:
    from ._checkup import checkup_from_file

    report = checkup_from_file(args.target, budget_s=args.budget, progress=not args.json, steps=args.steps)
    return _emit(report, args)  # exit 1 for a warning too: Report.exit_code counts diagnosed problems


def _cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(html=args.html, budget_s=args.budget)
    return 0


class _Usage(Exception):
    """A combination of arguments that argparse cannot check by itself."""


def _version() -> str:
    from . import __version__

    return f"lossdoctor {__version__}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lossdoctor", description="Why won't my loss converge, and what do I change?",
        epilog="exit codes: 0 converging, 1 a diagnosed problem, 2 bad input or usage, 3 lossdoctor's own bug",
    )
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument("--debug", action="store_true", help="show the traceback of an internal error")
    debug = argparse.ArgumentParser(add_help=False)  # --debug also after the command
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("diagnose", parents=[debug],
                       help="read a training log (file or directory) and diagnose the curves")
    p.add_argument("path", nargs="?", help="CSV/JSONL, TensorBoard event file or run dir, trainer_state.json, "
                   "Lightning metrics.csv, Keras CSVLogger, W&B or TensorBoard CSV export, MLflow mlruns dir")
    p.add_argument("--json", action="store_true", help="print the report(s) as JSON")
    p.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report")
    p.add_argument("--step", metavar="COL", help="column/tag holding the step")
    p.add_argument("--train", metavar="COL", help="column/tag holding the training loss")
    p.add_argument("--val", metavar="COL", help="column/tag holding the validation loss")
    p.add_argument("--mlflow", metavar="URI", help="read the runs of an MLflow store or server "
                   "(a mlruns path, file:///..., sqlite:///mlflow.db, http://host:5000)")
    p.add_argument("--experiment", metavar="NAME", help="with --mlflow: only this experiment")
    p.add_argument("--run", metavar="ID", help="with --mlflow: only this run")
    p.add_argument("--follow", action="store_true", help="re-read a growing log, print each change of verdict, "
                   "exit 1 at the first certain problem (NaN, divergence, stuck at chance level)")
    p.add_argument("--interval", type=float, default=10.0, metavar="S", help="seconds between reads with --follow "
                   "(default 10)")
    p.set_defaults(func=_cmd_diagnose)

    p = sub.add_parser("checkup", parents=[debug], help="run short experiments on a recipe: path/to/file.py:build")
    p.add_argument("target", help="FILE.py:FUNCTION, where FUNCTION() returns the recipe dict")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report")
    p.add_argument("--budget", type=float, default=None,
                   help="time budget in seconds: how many of the optional probes run, never how long (default 300)")
    p.add_argument("--steps", type=int, default=None,
                   help="optimizer steps per probe run (default: the recipe's epochs, at most 300); never from the clock")
    p.set_defaults(func=_cmd_checkup)

    p = sub.add_parser("demo", parents=[debug], help="diagnose and fix a broken network on scikit-learn's digits")
    p.add_argument("--html", metavar="FILE", default="report.html", help="where to write the report")
    p.add_argument("--budget", type=float, default=30.0, help="checkup budget in seconds")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # a usage error exits 2 here, as argparse does
    try:
        return args.func(args)
    except _Usage as exc:
        parser.print_usage(sys.stderr)
        _error(str(exc))
        return EXIT_BAD_INPUT
    except NoRunReadable as exc:
        for failure in exc.failures:  # each unreadable log in one line, then what it adds up to
            _error(str(failure))
        _error(str(exc))
        return EXIT_BAD_INPUT
    except LossDoctorError as exc:
        _error(str(exc))
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `lossdoctor diagnose --json | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PROBLEM
    except ModuleNotFoundError as exc:
        if exc.name == "torch":
            _error(f"`lossdoctor {args.command}` needs torch: {TORCH_HINT}")
            return EXIT_BAD_INPUT
        return _internal_error(exc, args)
    except Exception as exc:  # noqa: BLE001 - lossdoctor's own bug: one line, never a bare traceback
        return _internal_error(exc, args)


def _internal_error(exc: BaseException, args) -> int:
    if getattr(args, "debug", False):
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    message = printable(str(exc).strip().splitlines()[0] if str(exc).strip() else "")
    print(f"lossdoctor: internal error: {type(exc).__name__}: {message} "
          "(run with --debug for the traceback; please report)", file=sys.stderr)
    return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
