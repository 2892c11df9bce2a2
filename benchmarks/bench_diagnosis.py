"""Score lossdoctor's diagnosis on the fault suite of benchmarks/faults/, per entry point.

Each recipe file has ``build()`` (the checkup recipe dict: model, train, loss, optimizer, ...) and
names its expected cause in ``EXPECTED`` (a TAXONOMY.md code, or "healthy"). A fault counts as found
at top-1 when the report's first finding has that code, at top-3 when it is among the first three
distinct codes. A healthy control is a false alarm when any finding is a warning or an error.

Entry points: how a user would get a report for that recipe. Each is a function
``(path, settings) -> Report`` registered with ``@entry_point(name)``:

- ``checkup``: ``lossdoctor checkup FILE:build`` (the experiments on copies).
- ``watch``: the recipe's own training loop, run once with ``lossdoctor.watch(model, optimizer,
  loss_fn=criterion, data=train)`` (the recipe's loss, as the README shows, none when the model
  computes its loss; and the recipe's training data, whose checks run at report time), and
  ``doctor.report()`` at the end.

A framework callback (Lightning, HF Trainer, Keras) is added the same way: a function that builds
the recipe (``load_recipe(path)``), trains it through the framework with ``LossDoctorCallback()``
for ``training_steps(recipe, settings)`` steps and returns the callback's report, decorated with
``@entry_point("lightning")``. A recipe the entry point cannot train (say, a recipe with a
``forward_fn`` for Keras) raises ``NotApplicable`` and is left out of that entry point's scores.

- ``lightning``: the recipe's model in a ``LightningModule`` whose ``training_step`` is the recipe's
  loss, its optimizer (and scheduler) from ``configure_optimizers``, its clip as
  ``gradient_clip_val``, a GradScaler through Lightning's mixed-precision plugin; ``lightning.pytorch.
  Trainer(callbacks=[LossDoctorCallback()])``.
- ``huggingface``: the recipe's model in a tiny HF-style module whose ``forward(**batch)`` returns
  ``{"loss", "logits"}``, trained by ``transformers.Trainer`` with the recipe's optimizer (and
  scheduler; a constant rate otherwise), clip (``max_grad_norm``, 0 when the recipe has none) and
  precision, and ``LossDoctorCallback()``. Without CUDA a recipe with a GradScaler is not applicable
  (accelerate makes no scaler on the CPU: fp16 there is another run than the recipe's).
  The Lightning and Hugging Face callbacks check the training data they read from the Trainer's
  training dataloader at the end of training (the data room's checks), with no argument.
- ``keras``: Keras cannot train a torch recipe, so it has its own recipes, in ``faults_keras/``
  (``FRAMEWORK_RECIPES``): ``build()`` returns a compiled Keras model and its data, trained by
  ``model.fit(callbacks=[LossDoctorCallback()])`` on the torch backend. An entry point scores only
  the recipes of its framework (``ENTRY_FRAMEWORK``; torch when not listed).

Usage: python benchmarks/bench_diagnosis.py [--entry checkup,watch] [--steps N] [--budget S]
       [--only SUBSTRING] [--verbose]
Probe lengths come from the recipes (and ``--steps``), never from the clock: the scores are the
same on any machine; the budget only decides how many optional probes run.
"""
from __future__ import annotations

import argparse
import ast
import logging
import statistics
import sys
import time
import warnings
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
FAULTS = HERE / "faults"
# Recipes written for one framework, beside the torch recipes of FAULTS; ENTRY_FRAMEWORK says which
# recipes each entry point scores (torch when it is not listed).
FRAMEWORK_RECIPES = {"keras": HERE / "faults_keras"}
ENTRY_FRAMEWORK = {"keras": "keras"}


@dataclass
class Settings:
    steps: int | None = None  # optimizer steps per run (None: from the recipe, as checkup decides)
    budget: float | None = None  # checkup budget in seconds (None: checkup's default)


class NotApplicable(Exception):
    """The entry point cannot run this recipe (the framework cannot express it)."""


EntryPoint = Callable[[Path, Settings], "object"]
ENTRY_POINTS: dict[str, EntryPoint] = {}


def entry_point(name: str) -> Callable[[EntryPoint], EntryPoint]:
    def register(fn: EntryPoint) -> EntryPoint:
        ENTRY_POINTS[name] = fn
        return fn

    return register


def expected_of(path: Path) -> str:
    """The EXPECTED constant of a recipe file, read without importing it."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "EXPECTED" for t in node.targets):
            return ast.literal_eval(node.value)
    raise SystemExit(f"{path}: no EXPECTED = '...' constant")


def recipes(only: str | None = None) -> list[Path]:
    folders = [FAULTS, *FRAMEWORK_RECIPES.values()]
    return [p for folder in folders for p in sorted(folder.glob("*.py"))
            if not p.name.startswith("_") and (not only or only in p.name)]


def framework_of(path: Path) -> str:
    return next((name for name, folder in FRAMEWORK_RECIPES.items() if path.parent == folder), "torch")


def load_recipe(path: Path) -> dict:
    """A fresh recipe dict from the file's build() (new model and optimizer on every call)."""
    from lossdoctor._checkup import _load_build

    build, _ = _load_build(f"{path}:build")
    return build()


def training_steps(spec: dict, settings: Settings) -> int:
    """How long an entry point that trains the recipe trains it: as long as checkup's baseline run
    (the recipe's epochs, at most checkup's default run length or ``--steps``)."""
    from lossdoctor._checkup import run_length
    from lossdoctor.probes.recipe import normalize_recipe

    return run_length(normalize_recipe(**spec), settings.steps)


@entry_point("checkup")
def run_checkup(path: Path, settings: Settings):
    from lossdoctor._checkup import checkup_from_file

    return checkup_from_file(f"{path}:build", budget_s=settings.budget, progress=False, steps=settings.steps)


@entry_point("watch")
def run_watch(path: Path, settings: Settings):
    """The recipe's own loop (its batches, loss, optimizer, clipping, schedule, precision) on the
    recipe's own model and optimizer, watched by lossdoctor.watch; the watch's report."""
    import lossdoctor
    from lossdoctor._checkup import run_length
    from lossdoctor.probes.loop import train_run
    from lossdoctor.probes.recipe import normalize_recipe, set_schedule_horizon

    spec = load_recipe(path)
    recipe = normalize_recipe(**spec)
    steps = run_length(recipe, settings.steps)
    set_schedule_horizon(recipe, steps)
    holder = {}

    def start(model, optimizer):
        holder["doctor"] = lossdoctor.watch(model, optimizer, max_norm=recipe.grad_clip, loss_fn=recipe.loss_fn,
                                              data=spec["train"])
        return holder["doctor"]

    train_run(recipe, label="watched", steps=steps, model=recipe.model, optimizer=recipe.user_optimizer,
              setup=start, on_step=lambda loss: holder["doctor"].step(loss), stop_on_non_finite=False)
    return holder["doctor"].report()


# -- the framework callbacks ------------------------------------------------------------------------
# Each trains the recipe's own model, optimizer, data, loss, clip, schedule and precision through the
# framework for training_steps() steps (the checkup baseline's length), with the framework's
# LossDoctorCallback, and returns the callback's report. Recipes come from load_recipe (a fresh model
# and optimizer per call); runs are seeded.

def _torch_recipe(path: Path, settings: Settings):
    from lossdoctor.probes.recipe import normalize_recipe

    spec = load_recipe(path)
    steps = training_steps(spec, settings)
    recipe = normalize_recipe(**spec)
    if spec.get("forward_fn") is not None:
        raise NotApplicable("a forward_fn recipe has no framework form")
    return spec, recipe, steps


def _index_loader(recipe, val: bool, shuffle: bool, batch_size: int):
    """Batches of the recipe's own rows, as its loop would receive them (its collate, its dtypes)."""
    from torch.utils.data import DataLoader

    n = recipe.val.n if val else recipe.n_train
    return DataLoader(range(n), batch_size=batch_size, shuffle=shuffle, generator=torch.Generator().manual_seed(0),
                      collate_fn=lambda rows: recipe.batch(torch.tensor(rows), val=val))


@entry_point("lightning")
def run_lightning(path: Path, settings: Settings):
    import lightning.pytorch as pl
    from lightning.pytorch.plugins.precision import MixedPrecision

    from lossdoctor.integrations.lightning import LossDoctorCallback

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)  # no "GPU available: False" per recipe
    spec, recipe, steps = _torch_recipe(path, settings)

    class RecipeModule(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = recipe.model

        def forward(self, *inputs):  # as LightningModules usually define it
            return self.net(*inputs)

        def training_step(self, batch, batch_idx):
            return recipe.forward(self.net, batch)[0]

        def validation_step(self, batch, batch_idx):
            self.log("val_loss", recipe.forward(self.net, batch)[0])

        def configure_optimizers(self):
            optimizer, factory = recipe.user_optimizer, spec.get("scheduler")
            if factory is None:
                return optimizer
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": factory(optimizer),
                                                             "interval": spec.get("scheduler_interval", "step")}}

    precision = {}
    if recipe.scaler is not None:
        precision["plugins"] = [MixedPrecision("16-mixed", "cpu", scaler=recipe.new_scaler())]
    elif recipe.autocast == torch.bfloat16:
        precision["precision"] = "bf16-mixed"
    val = _index_loader(recipe, True, False, 256) if recipe.val is not None else None
    every = max(1, min(recipe.steps_per_epoch, steps // 8))
    pl.seed_everything(0, verbose=False)
    doctor = LossDoctorCallback(print_report=False, log_report=False, wandb=False)
    trainer = pl.Trainer(max_steps=steps, max_epochs=-1, accelerator="cpu", devices=1, callbacks=[doctor],
                         gradient_clip_val=recipe.grad_clip, accumulate_grad_batches=recipe.accumulation,
                         val_check_interval=every if val is not None else None, check_val_every_n_epoch=None,
                         num_sanity_val_steps=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, **precision)
    with doctor:
        trainer.fit(RecipeModule(), _index_loader(recipe, False, True, recipe.batch_size), val)
    return doctor.report


def _as_kwargs(batch) -> dict:
    """A recipe batch as the keyword arguments a Trainer passes to its model: a dict batch as it is,
    a tuple batch (inputs..., target) as input_0.. and labels."""
    if isinstance(batch, dict):
        return dict(batch)
    *inputs, target = batch
    return {**{f"input_{i}": x for i, x in enumerate(inputs)}, "labels": target}


@entry_point("huggingface")
def run_huggingface(path: Path, settings: Settings):
    import tempfile

    from torch import nn
    from transformers import PrinterCallback, Trainer, TrainingArguments

    from lossdoctor.integrations.huggingface import LossDoctorCallback
    from lossdoctor.probes.batches import logits_of

    spec, recipe, steps = _torch_recipe(path, settings)
    if recipe.scaler is not None and not torch.cuda.is_available():
        # accelerate creates a GradScaler only on an accelerator: on the CPU, fp16=True is autocast with no
        # scaler, a different run from the recipe's (its overflow writes NaN into the weights instead of
        # being skipped; tests/integrations cover that run)
        raise NotApplicable("the HF Trainer runs float16 without a GradScaler on the CPU")

    class ReturnsLoss(nn.Module):
        """A tiny HF-style model: forward(**batch) returns the loss and the logits."""

        def __init__(self):
            super().__init__()
            self.model = recipe.model

        def forward(self, **batch):
            if "input_0" in batch:  # a tuple batch (the Trainer may add keywords of its own)
                inputs = sum(key.startswith("input_") for key in batch)
                batch = (*(batch[f"input_{i}"] for i in range(inputs)), batch["labels"])
            else:
                batch = {k: v for k, v in batch.items() if k != "num_items_in_batch"}
            loss, out = recipe.forward(self.model, batch)
            return {"loss": loss, "logits": logits_of(out) if out is not None else None}

    def collate(items):
        split = items[0][0]
        return _as_kwargs(recipe.batch(torch.tensor([i for _, i in items]), val=split == "val"))

    optimizer = recipe.user_optimizer
    factory = spec.get("scheduler")
    schedule = factory(optimizer) if factory is not None else torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    train = [("train", i) for i in range(recipe.n_train)]
    val = [("val", i) for i in range(recipe.val.n)] if recipe.val is not None else None
    doctor = LossDoctorCallback(print_report=False, log_report=False, wandb=False)
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out, max_steps=steps, per_device_train_batch_size=recipe.batch_size,
            per_device_eval_batch_size=256, gradient_accumulation_steps=recipe.accumulation,
            max_grad_norm=recipe.grad_clip or 0.0, logging_steps=max(1, steps // 50),
            eval_strategy="steps" if val else "no", eval_steps=max(1, min(recipe.steps_per_epoch, steps // 8)),
            save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True, seed=0, data_seed=0,
            remove_unused_columns=False, label_names=["labels"], dataloader_num_workers=0, log_level="error",
            fp16=recipe.scaler is not None, bf16=recipe.autocast == torch.bfloat16 and recipe.scaler is None)
        trainer = Trainer(model=ReturnsLoss(), args=args, train_dataset=train, eval_dataset=val, data_collator=collate,
                          optimizers=(optimizer, schedule), callbacks=[doctor])
        trainer.remove_callback(PrinterCallback)  # the logs printed as they come (disable_tqdm=True)
        with doctor:
            trainer.train()
    return doctor.report


@entry_point("keras")
def run_keras(path: Path, settings: Settings):
    import math
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")
    from lossdoctor.integrations.keras import LossDoctorCallback

    spec = load_recipe(path)
    (x, y), batch_size = spec["train"], spec.get("batch_size", 32)
    epochs = spec["epochs"] if settings.steps is None else max(1, math.ceil(settings.steps * batch_size / len(x)))
    doctor = LossDoctorCallback(print_report=False, log_report=False, wandb=False)
    with doctor:
        spec["model"].fit(x, y, validation_data=spec.get("val"), epochs=epochs, batch_size=batch_size, verbose=0,
                          callbacks=[doctor])
    return doctor.report


def score(report, expected: str) -> tuple[bool, bool, list[str], list[str]]:
    codes = list(dict.fromkeys(f.code for f in report.findings))  # distinct causes, ranked
    serious = [f.code for f in report.warnings()]
    if expected == "healthy":
        return not serious, not serious, codes, serious
    return bool(codes) and codes[0] == expected, expected in codes[:3], codes, serious


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entry", default=",".join(ENTRY_POINTS), help="entry points to score, comma-separated")
    parser.add_argument("--budget", type=float, help="checkup budget per recipe, seconds (default: checkup's)")
    parser.add_argument("--steps", type=int, help="optimizer steps per run (default: from each recipe)")
    parser.add_argument("--only", help="run only recipes whose file name contains this")
    parser.add_argument("--verbose", action="store_true", help="print the top findings of every recipe")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    settings = Settings(steps=args.steps, budget=args.budget)
    entries = [e for e in args.entry.split(",") if e]
    unknown = [e for e in entries if e not in ENTRY_POINTS]
    if unknown:
        raise SystemExit(f"unknown entry point(s) {unknown}; known: {sorted(ENTRY_POINTS)}")
    rows: dict[str, list] = defaultdict(list)
    seconds: dict[str, list[float]] = defaultdict(list)
    for path in recipes(args.only):
        expected = expected_of(path)
        for entry in entries:
            if framework_of(path) != ENTRY_FRAMEWORK.get(entry, "torch"):
                continue
            t0 = time.monotonic()
            try:
                report = ENTRY_POINTS[entry](path, settings)
            except NotApplicable as exc:
                print(f"--  {entry:<8} {path.stem:<44} not applicable: {exc}", flush=True)
                continue
            seconds[entry].append(time.monotonic() - t0)
            top1, top3, codes, serious = score(report, expected)
            rows[entry].append((path.stem, expected, top1, top3, codes[:3], serious))
            mark = "ok " if top1 else ("~3 " if top3 else "MISS")
            print(f"{mark} {entry:<8} {path.stem:<44} expected {expected:<30} got {', '.join(codes[:3]) or '-'}"
                  f"  ({seconds[entry][-1]:.1f} s, verdict {report.verdict})", flush=True)
            if args.verbose:
                for f in report.findings[:4]:
                    print(f"      {f.severity:<7} {f.confidence:.2f} {f.code:<32} {f.source}")
    print_tables(rows, seconds)
    return 0


def print_tables(rows: dict[str, list], seconds: dict[str, list[float]]) -> None:
    for entry, entry_rows in rows.items():
        by_cause = defaultdict(list)
        for _, expected, top1, top3, _, _ in entry_rows:
            by_cause[expected].append((top1, top3))
        print(f"\n[{entry}] per cause                  n  top-1  top-3")
        for cause in sorted(by_cause):
            r = by_cause[cause]
            print(f"{cause:<34} {len(r):>3}  {sum(a for a, _ in r) / len(r):5.0%}  {sum(b for _, b in r) / len(r):5.0%}")
    print("\nentry     faults  top-1  top-3  healthy  false alarms  median s  max s")
    for entry, entry_rows in rows.items():
        faults = [r for r in entry_rows if r[1] != "healthy"]
        healthy = [r for r in entry_rows if r[1] == "healthy"]
        alarms = [r for r in healthy if r[5]]
        top1 = sum(r[2] for r in faults) / len(faults) if faults else float("nan")
        top3 = sum(r[3] for r in faults) / len(faults) if faults else float("nan")
        s = seconds[entry]
        print(f"{entry:<9} {len(faults):>6}  {top1:5.0%}  {top3:5.0%}  {len(healthy):>7}  {len(alarms):>12}"
              f"  {statistics.median(s):8.1f}  {max(s):5.1f}"
              + (f"   ({', '.join(r[0] + ': ' + '/'.join(r[5]) for r in alarms)})" if alarms else ""))


if __name__ == "__main__":
    sys.exit(main())
