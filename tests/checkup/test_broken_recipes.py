"""Every broken recipe gives a Report or one clear InputError, never another exception.

Each file of broken_recipes/ is a recipe with one mistake users make (labels out of range far down
the set, a forward that fails after some calls or in train mode only, a loss that is a float or
unreduced, ragged Dataset items, sys.exit() at import, ...) or a valid recipe that used to crash
the probes (LBFGS, custom optimizers, float64 arrays). Its EXPECT says what must come out: an
InputError whose message matches, or a Report (with the code it must contain, if any).
"""
import ast
from pathlib import Path

import pytest

from lossdoctor._checkup import checkup_from_file
from lossdoctor.errors import InputError
from lossdoctor.findings import Report

FOLDER = Path(__file__).resolve().parent / "broken_recipes"
RECIPES = sorted(p for p in FOLDER.glob("*.py") if not p.name.startswith("_"))
# The shortest runs: the point is that every probe meets the broken piece, not the diagnosis.
QUICK = dict(steps=40, budget_s=120.0, cross_validate=False, progress=False)


def expect_of(path: Path) -> str:
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "EXPECT" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{path.name}: no EXPECT")


def test_the_set_covers_the_reported_failures():
    assert len(RECIPES) >= 20


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_a_broken_recipe_gives_a_report_or_a_clear_input_error(path):
    expect = expect_of(path)
    if expect.startswith("InputError: "):
        with pytest.raises(InputError, match=expect.removeprefix("InputError: ")) as raised:
            checkup_from_file(f"{path}:build", **QUICK)
        assert "\n" not in str(raised.value)  # one line, as the CLI prints it
        return
    report = checkup_from_file(f"{path}:build", **QUICK)
    assert isinstance(report, Report) and report.verdict is not None
    code = expect.removeprefix("Report").removeprefix(": ")
    if code:
        assert report.has(code), report.codes
