"""The README's checkup example stays true: the broken recipe is diagnosed, its fixed twin is clean."""
from pathlib import Path

from lossdoctor._checkup import checkup_from_file

RECIPE = Path(__file__).resolve().parents[2] / "examples" / "checkup_recipe.py"
PINNED = dict(budget_s=60.0, steps=200, cross_validate=False, progress=False)


def test_example_recipe_names_clipping_or_dropout_and_its_fixed_twin_is_clean():
    broken = checkup_from_file(f"{RECIPE}:build", **PINNED)
    assert broken.top is not None and broken.top.severity != "info"
    assert broken.top.code in ("optim.clipping_masks_lr", "model.regularization_too_strong"), broken.codes
    fixed = checkup_from_file(f"{RECIPE}:build_fixed", **PINNED)
    assert fixed.verdict == "converging" and fixed.warnings() == [], fixed.codes
