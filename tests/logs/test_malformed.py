"""The committed corpus of malformed logs (tests/logs/malformed, made by make_corpus.py): each file gives
a Report with a sensible verdict, or a LogFormatError naming the file, the line and what was expected.
Never any other exception, never a traceback from the command line."""
import json
from pathlib import Path

import pytest

from lossdoctor._diagnose import diagnose_path
from lossdoctor.errors import LogFormatError

pytestmark = pytest.mark.slim

CORPUS = Path(__file__).parent / "malformed"
EXPECTED = json.loads((CORPUS / "EXPECTED.json").read_text())


def test_the_corpus_is_large_and_every_file_has_an_expectation():
    files = {p.relative_to(CORPUS).as_posix() for p in CORPUS.rglob("*") if p.is_file()}
    assert files - {"EXPECTED.json", "make_corpus.py"} == set(EXPECTED)
    assert len(EXPECTED) >= 40


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_malformed_file_gives_a_report_or_a_clear_error(name):
    path = CORPUS / name
    expected = EXPECTED[name]
    try:
        reports, failures = diagnose_path(path)
    except LogFormatError as exc:
        assert "error" in expected, f"{name}: unexpected error {exc}"
        assert exc.path == str(path)
        assert expected["error"] in str(exc) and exc.expected
        if "line" in expected:
            assert exc.line == expected["line"], str(exc)
        return
    assert "error" not in expected, f"{name}: read, but {expected['error']!r} was expected"
    (report,) = reports
    assert failures == []
    if expected.get("verdict"):
        assert report.verdict == expected["verdict"], name
    if "note" in expected:
        assert any(expected["note"] in n for n in report.metadata.get("notes", [])), report.metadata.get("notes")


def test_the_whole_corpus_as_one_directory_never_gives_a_traceback(cli_subprocess):
    code, out, err = cli_subprocess("diagnose", CORPUS, "--json")
    assert code in (0, 1, 2) and "Traceback" not in err
    skipped = [line for line in err.splitlines() if line.startswith("lossdoctor: skipped")]
    assert skipped and all(str(CORPUS) in line for line in skipped)
