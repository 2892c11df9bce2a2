"""Exit codes that mean one thing (0 converging, 1 a diagnosed problem, 2 bad input or usage, 3 lossdoctor's
own bug), one line per error, the diagnosis printed before an HTML file can fail, and paths printed
safely whatever characters they hold."""
import json
import os
import stat
import sys
import types

import pytest

import lossdoctor
from lossdoctor import diagnose

pytestmark = pytest.mark.slim


def _log(path, values):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("step,loss\n" + "".join(f"{i},{v}\n" for i, v in enumerate(values)))
    return path


def _converging(n=120):
    return [2.3 * 0.97 ** i + 0.05 for i in range(n)]


def _non_finite(n=120):
    return [2.3 * 0.97 ** i if i < n // 2 else "nan" for i in range(n)]


def test_version(cli_subprocess):
    code, out, err = cli_subprocess("--version")
    assert code == 0 and out.strip() == f"lossdoctor {lossdoctor.__version__}"


def test_argparse_usage_errors_exit_2(cli_subprocess):
    code, out, err = cli_subprocess("diagnose", "--no-such-flag")
    assert code == 2 and "usage:" in err and "Traceback" not in err
    code, out, err = cli_subprocess("frobnicate")
    assert code == 2 and "invalid choice" in err


def test_0_converging_1_problem_2_bad_input_in_real_processes(tmp_path, cli_subprocess):
    good, bad = _log(tmp_path / "good.csv", _converging()), _log(tmp_path / "nan.csv", _non_finite())
    broken = tmp_path / "broken.csv"
    broken.write_bytes(b"\x00\x01\x02" * 100)
    assert cli_subprocess("diagnose", good)[0] == 0
    assert cli_subprocess("diagnose", bad)[0] == 1
    code, out, err = cli_subprocess("diagnose", broken)
    assert code == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err


def _break_the_curve_analysis(monkeypatch):
    import lossdoctor.curves

    def bug(curves):
        raise ZeroDivisionError("division by zero\nsecond line")

    monkeypatch.setattr(lossdoctor.curves, "diagnose_curves", bug)


def test_an_internal_error_is_exit_3_in_one_line(tmp_path, cli, monkeypatch):
    good = _log(tmp_path / "good.csv", _converging())
    _break_the_curve_analysis(monkeypatch)
    code, out, err = cli("diagnose", good)
    assert code == 3 and out == ""
    assert err == ("lossdoctor: internal error: ZeroDivisionError: division by zero "
                   "(run with --debug for the traceback; please report)\n")


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback_of_an_internal_error(tmp_path, cli, monkeypatch, where):
    good = _log(tmp_path / "good.csv", _converging())
    _break_the_curve_analysis(monkeypatch)
    args = ("--debug", "diagnose", good) if where == "before" else ("diagnose", good, "--debug")
    code, out, err = cli(*args)
    assert code == 3 and "Traceback (most recent call last)" in err and "ZeroDivisionError" in err
    assert err.rstrip().splitlines()[-1].startswith("lossdoctor: internal error: ZeroDivisionError")


def _replace_checkup(monkeypatch, checkup_from_file):
    """Stand in for lossdoctor._checkup (which needs torch): only the command line is under test."""
    stub = types.ModuleType("lossdoctor._checkup")
    stub.checkup_from_file = checkup_from_file
    monkeypatch.setitem(sys.modules, "lossdoctor._checkup", stub)


def test_a_missing_torch_is_a_clear_message_not_an_internal_error(cli, monkeypatch):
    def no_torch(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'torch'", name="torch")

    _replace_checkup(monkeypatch, no_torch)
    code, out, err = cli("checkup", "recipe.py:build")
    assert code == 2 and "pip install 'lossdoctor[torch]'" in err and err.count("\n") == 1


def _html_targets(tmp_path):
    targets = {"missing folder": (tmp_path / "no" / "such" / "report.html", "no such file or directory"),
               "a directory": (tmp_path, "a directory, not a file")}
    if os.path.exists("/dev/full") and stat.S_ISCHR(os.stat("/dev/full").st_mode):
        targets["a full device"] = ("/dev/full", "No space left on device")
    return targets


@pytest.mark.parametrize("target", ["missing folder", "a directory", "a full device"])
def test_html_that_cannot_be_written_comes_after_the_json_and_exits_2(tmp_path, cli, target):
    targets = _html_targets(tmp_path)
    if target not in targets:
        pytest.skip("no /dev/full here")
    html, why = targets[target]
    log = _log(tmp_path / "nan.csv", _non_finite())
    code, out, err = cli("diagnose", log, "--json", "--html", html)
    assert json.loads(out)["verdict"] == "non_finite"  # the diagnosis is not lost
    assert code == 2 and err.count("\n") == 1 and why in err and "cannot write the HTML report" in err
    if target == "a full device":
        assert stat.S_ISCHR(os.stat("/dev/full").st_mode)  # the device is still there, untouched


def test_html_that_cannot_be_written_after_the_terminal_report(tmp_path, cli):
    log = _log(tmp_path / "good.csv", _converging())
    code, out, err = cli("diagnose", log, "--html", tmp_path / "missing" / "r.html")
    assert "converging" in out and code == 2 and "no such file or directory" in err


def test_checkup_html_that_cannot_be_written_exits_2_after_the_report(tmp_path, cli, monkeypatch):
    report = diagnose(_log(tmp_path / "good.csv", _converging()))  # a real Report stands in for a checkup's
    _replace_checkup(monkeypatch, lambda *a, **k: report)
    code, out, err = cli("checkup", "recipe.py:build", "--json", "--html", tmp_path / "missing" / "r.html")
    assert json.loads(out)["verdict"] == "converging" and code == 2 and "cannot write the HTML report" in err


def test_html_written_says_where(tmp_path, cli):
    log = _log(tmp_path / "good.csv", _converging())
    target = tmp_path / "out" / "report.html"
    target.parent.mkdir()
    code, out, err = cli("diagnose", log, "--html", target)
    assert code == 0 and target.read_text().lstrip().lower().startswith("<!doctype html")
    assert err == f"HTML report written to {target}\n"


def test_paths_are_printed_as_they_are_and_control_characters_escaped(tmp_path, cli):
    folder = tmp_path / "exp[lr=0.1]" / "a[/]b"
    bad = folder / "\x1b[31mred\x07.csv"
    bad.parent.mkdir(parents=True)
    bad.write_text("step,loss\n1,2\n2,oops\n")
    code, out, err = cli("diagnose", bad)
    assert code == 2 and err.count("\n") == 1
    assert "exp[lr=0.1]/a[/]b/" in err  # Rich markup is not interpreted
    assert "\x1b" not in err and "\x07" not in err and "\\x1b[31mred\\x07.csv" in err
    good = _log(folder / "good.csv", _converging())
    target = folder / "rep\x1b[2Jort.html"
    code, out, err = cli("diagnose", good, "--json", "--html", target)
    assert code == 0 and target.exists()
    code, out, err = cli("diagnose", good, "--html", target)
    assert "\x1b" not in err and "rep\\x1b[2Jort.html" in err
