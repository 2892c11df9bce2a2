"""``checkup``: find the cause by experiment.

Short, seeded training runs on deep copies of the user's recipe — the initial loss against its
expected value, overfitting one batch, a small subset against the full data, a learning-rate range
test with clipping off, and ablations of the user's setting (suggested rate, regularization off,
clipping off, re-initialization, the other optimizer family, batch norm out for the gradient
check) — plus the model and data checks and the live monitor on the baseline run. The probes'
plain results go through the ``@check("probes")`` decisions; the Report ranks every finding and
says what was ruled out and by which experiment. The user's model, optimizer, data and RNG state
are left bit-identical.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import random
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .assemble import build_report
from .curves import CHANCE_LEVEL_META, judge
from .errors import InputError
from .evidence import Curves, RunFacts
from .findings import Report
from .internal import report_internal_error
from .probes.ablations import run_ablation
from .probes.batches import input_matrix, split_batch
from .probes.batchnorm import run_batchnorm_gradient_check
from .probes.checks import (
    SAFE_LR_VARIANTS,
    ProbeEvidence,
    confounded,
    inconclusive,
    rule_out,
    safe_lr_name,
)
from .probes.gradients import run_gradients_at_init
from .probes.initial_loss import run_initial_loss
from .probes.loop import train_run
from .probes.lr_range import run_lr_range
from .probes.overfit_batch import run_overfit_batch
from .probes.recipe import (
    Recipe,
    batchnorm_layers,
    dropout_layers,
    normalize_recipe,
    recipe_from_dict,
    recurrent_dropouts,
    set_schedule_horizon,
)
from .probes.result import ProbeResult
from .probes.subset import run_subset
from .probes.usercode import RecipeError, user_code
from .registry import Evidence

# Steps per training run when neither ``steps`` nor the recipe's epochs say otherwise: enough for
# the digits-sized recipes of the tests and the fault suite to separate a fault from its fix (the
# loss curves have settled or clearly not), few enough that the whole plan stays within the default
# budget on a loaded 2-core machine.
DEFAULT_STEPS = 300
# At least this many steps per run: fewer gives a loss curve too short to judge.
MIN_STEPS = 40
# Range-test steps: enough points to span LR_START..LR_END (7 decades) at ~15 points per decade.
LR_RANGE_STEPS = 120
# The one-batch overfit runs this share of the run length (a single batch converges faster).
OVERFIT_SHARE = 0.5
# The budget the default plan is sized for: the whole plan (about 11 runs of DEFAULT_STEPS plus the
# data checks' cross-validated baseline) of a digits MLP or a tiny BERT takes 20-90 s on this
# 2-core machine under load; 300 s leaves room for a machine several times slower, so that the
# default plan runs whole and the same recipe gives the same report anywhere.
DEFAULT_BUDGET_S = 300.0
# The data checks' cross-validated baseline (permutation test and cleanlab's out-of-fold
# probabilities: dozens of model fits) takes 5-40 s on digits on this 2-core machine; below this
# budget it would eat the probes' time, so it is skipped with a note.
DATA_BASELINE_MIN_BUDGET = 20.0
# The monitor reads its statistics this often during the baseline run.
MONITOR_EVERY = 20
# The monitored run gets at most this many steps: enough read-outs (MONITOR_EVERY apart) to see
# dead units, gradient trends and the first NaN.
MONITOR_MAX_STEPS = 200
# A monitored step costs about this many plain steps (the instrumented steps' hooks and read-outs),
# for the budget's estimate.
MONITOR_COST = 2.0
# The batch-norm gradient check's cost in steps (a few forward/backward passes, twice).
BATCHNORM_CHECK_COST = 10


class Budget:
    """The wall-clock budget: it decides only whether the next optional probe starts (each runs whole)."""

    def __init__(self, seconds: float):
        self.seconds = float(seconds)
        self.start = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def fits(self, cost_s: float) -> bool:
        return self.elapsed + cost_s <= self.seconds


@contextlib.contextmanager
def preserved_rng():
    """Restore torch (CPU and CUDA), numpy and Python RNG states on exit."""
    torch_state = torch.random.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    np_state = np.random.get_state()
    py_state = random.getstate()
    try:
        yield
    finally:
        torch.random.set_rng_state(torch_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)
        np.random.set_state(np_state)
        random.setstate(py_state)


class _Progress:
    """A rich progress bar on stderr (or nothing when progress=False)."""

    def __init__(self, enabled: bool, total: int):
        self.bar = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("checkup: {task.description:<34}"), BarColumn(), TimeElapsedColumn(),
                                console=Console(stderr=True), transient=True)
            self.task = self.bar.add_task("starting", total=total)

    def __enter__(self):
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def start(self, what: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, description=what)

    def done(self) -> None:
        if self.bar is not None:
            self.bar.advance(self.task)

    def add(self, n: int) -> None:
        """``n`` more steps than planned (re-runs decided along the way)."""
        if self.bar is not None:
            self.bar.update(self.task, total=self.bar.tasks[0].total + n)


def _call_room(notes: list[str], what: str, fn: Callable[[], Any]) -> Any:
    """Call another room's entry point; a missing room, a complaint about the data it cannot
    handle, or a failure becomes a note, not a crash (the recipe itself was validated already)."""
    try:
        return fn()
    except ImportError as exc:
        notes.append(f"{what} skipped: not available ({exc})")
    except RecipeError:
        raise
    except InputError as exc:
        notes.append(f"{what} skipped: {exc}")
    except Exception as exc:
        if os.environ.get("LOSSDOCTOR_STRICT"):
            raise
        report_internal_error(f"checkup: {what}", exc)
        notes.append(f"{what} skipped: lossdoctor's own error ({type(exc).__name__}: {exc})")
    return None


def _check_rows(recipe: Recipe, rows: int = 256):
    """The first ``rows`` training rows as (inputs, targets), for the model checks."""
    batch = recipe.batch(torch.arange(min(recipe.n_train, rows)))
    return split_batch(batch)


def _model_and_data_facts(recipe: Recipe, notes: list[str], baseline: bool) -> tuple[Any, Any]:
    """The data profile and the model inspection (plain facts; their checks run with the probes')."""
    if not baseline:
        notes.append(f"data checks: the cross-validated baseline (no-signal permutation test, label noise) "
                     f"skipped: it needs a budget of at least {DATA_BASELINE_MIN_BUDGET:g} s "
                     "(or cross_validate=True)")

    def data_facts():
        from .data import profile_data

        X = _features(recipe)
        if X is None:
            notes.append("data checks skipped: the batches hold no single input tensor to profile")
            return None
        y = recipe.targets
        if y is not None and y.shape[0] != X.shape[0]:
            y = None  # per-token targets: the inputs are profiled alone
        # token ids and category codes are not feature values: scales, quick baselines and label noise
        # mean nothing on raw ids, and the data room skips them when told what they are
        return profile_data(X, y, groups=recipe.groups, task=recipe.task, baseline=baseline,
                            inputs="token_ids" if recipe.integer_inputs else None)

    def model_facts():
        from .model import inspect_model

        model = recipe.fresh_model()
        inputs, targets = _check_rows(recipe)
        return inspect_model(model, sample_input=inputs, loss_fn=recipe.loss_fn,
                             targets=targets if isinstance(targets, torch.Tensor) else None,
                             optimizer=recipe.make_optimizer(model))

    data = _call_room(notes, "data profile (lossdoctor.data.profile_data)", data_facts)
    model = _call_room(notes, "model inspection (lossdoctor.model.inspect_model)", model_facts)
    return data, model


def _features(recipe: Recipe) -> torch.Tensor | None:
    """The training inputs as one (rows, features) tensor for the data checks: the input tensor of
    (X, y) data, or a dict's ``input_ids``; None for inputs that are several tensors."""
    examples = recipe.train
    return input_matrix(examples.columns if examples.columns is not None else examples.batch(torch.arange(examples.n)))


def _facts(recipe: Recipe) -> dict[str, Any]:
    return {
        "lr": recipe.lr,
        "optimizer": recipe.optimizer_class.__name__,
        "grad_clip": recipe.grad_clip,
        "weight_decay": recipe.weight_decay,
        "dropout": [(n, p) for n, p in dropout_layers(recipe.model) + recurrent_dropouts(recipe.model) if p > 0],
        "batchnorm": batchnorm_layers(recipe.model),
        "task": recipe.task,
        "n_train": recipe.n_train,
        "batch_size": recipe.batch_size,
        "gradient_accumulation_steps": recipe.accumulation,
        "scheduler": recipe.schedule is not None,
        "autocast": str(recipe.autocast).replace("torch.", "") if recipe.autocast is not None else None,
        "grad_scaler": recipe.scaler is not None,
        "device": str(recipe.device),
        "loss": recipe.loss_kind,
        "integer_inputs": recipe.integer_inputs,
        "trained_parameters": sum(p.numel() for i, p in enumerate(recipe.model.parameters())
                                  if i in recipe.trained_indices),
        "frozen_parameters": sum(p.numel() for i, p in enumerate(recipe.model.parameters())
                                 if i not in recipe.trained_indices),
    }


def run_length(recipe: Recipe, steps: int | None) -> int:
    """Optimizer steps per probe run, from ``steps`` (default DEFAULT_STEPS) and the recipe: never more
    than the user's own training (epochs worth of batches), never fewer than MIN_STEPS. Never from
    the clock: the same recipe gets the same runs on any machine."""
    length = DEFAULT_STEPS if steps is None else steps
    if recipe.total_steps:
        length = min(length, max(MIN_STEPS, recipe.total_steps))
    return length


def checkup(model, train, loss_fn=None, optimizer=None, val=None, grad_clip=None, task=None, epochs=None,
            batch_size=None, budget_s: float | None = None, progress: bool = True, seed: int = 0, groups=None,
            steps: int | None = None, cross_validate: bool | None = None, forward_fn=None, scheduler=None,
            scheduler_interval: str = "step", gradient_accumulation_steps: int = 1, autocast=None,
            grad_scaler=None) -> Report:
    """Run the probes on copies of the recipe and return the ranked differential as a Report.

    ``train``/``val``: (X, y) tensors or arrays, several input tensors and a target, a dict of
    columns, a Dataset or a DataLoader (its ``collate_fn`` is used), a Hugging Face ``datasets.Dataset``.
    The loss: ``loss_fn(outputs, targets)``, or the model's own ``outputs.loss`` (no ``loss_fn``: a
    Hugging Face model given ``labels``), or ``forward_fn(model, batch) -> loss``. ``optimizer``: an
    instance bound to ``model``'s parameters (its class, hyper-parameters and the parameters it
    trains are what is probed). ``scheduler``: a factory ``lambda optimizer: ...`` or a scheduler
    bound to ``optimizer`` (stepped every step, or every epoch with ``scheduler_interval="epoch"``).
    ``autocast``: torch.float16 / torch.bfloat16 for mixed precision; ``grad_scaler``: a
    ``torch.amp.GradScaler`` (or True). ``steps``: optimizer steps per probe run (default
    DEFAULT_STEPS, at most the recipe's epochs): the runs never depend on the machine's speed.
    ``budget_s`` (default DEFAULT_BUDGET_S) only decides how many of the optional probes run; a
    skipped probe is named in the report. ``cross_validate`` runs the data checks' cross-validated
    baseline (default: when the budget is at least DATA_BASELINE_MIN_BUDGET).
    """
    budget_s = DEFAULT_BUDGET_S if budget_s is None else budget_s
    if isinstance(budget_s, bool) or not isinstance(budget_s, (int, float)) or not budget_s > 0:
        raise InputError(f"budget_s: expected a positive number of seconds, got {budget_s!r}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < MIN_STEPS):
        raise InputError(f"steps: expected a whole number of training steps >= {MIN_STEPS}, got {steps!r}")
    if cross_validate is None:
        cross_validate = budget_s >= DATA_BASELINE_MIN_BUDGET
    with preserved_rng(), torch.enable_grad():
        recipe = normalize_recipe(model, train, loss_fn, optimizer, val=val, grad_clip=grad_clip, task=task,
                                  epochs=epochs, batch_size=batch_size, groups=groups, forward_fn=forward_fn,
                                  scheduler=scheduler, scheduler_interval=scheduler_interval,
                                  gradient_accumulation_steps=gradient_accumulation_steps, autocast=autocast,
                                  grad_scaler=grad_scaler)
        length = run_length(recipe, steps)
        set_schedule_horizon(recipe, length)
        return _checkup(recipe, float(budget_s), progress, seed, length, bool(cross_validate))


def _checkup(recipe: Recipe, budget_s: float, progress: bool, seed: int, steps: int, cross_validate: bool) -> Report:
    budget = Budget(budget_s)
    notes: list[str] = list(recipe.notes)
    facts = _facts(recipe)
    ev = ProbeEvidence(facts=facts)
    variants = ["lr_suggested"]
    if facts["dropout"] or facts["weight_decay"]:
        variants.append("no_regularization")
    if recipe.grad_clip is not None:
        variants.append("no_clipping")
    if recipe.autocast is not None:
        variants.append("full_precision")
    variants.append("reinit")
    has_bn = bool(facts["batchnorm"])
    overfit_steps = max(MIN_STEPS, int(steps * OVERFIT_SHARE))
    monitor_steps = min(steps, MONITOR_MAX_STEPS)
    # The plan, in the order the probes run: the core (the initial loss and gradients, the baseline, the
    # range test and its confirmation run) always runs, the budget decides how many of the others do
    # (each runs whole). Costs are in optimizer steps of the user's batch size.
    optional = ["monitor", *[f"ablation:{v}" for v in variants if v != "lr_suggested"], "reruns", "subset",
                "overfit_batch",
                *(["batchnorm_out"] if has_bn else []), "ablation:other_optimizer"]
    cost = {"monitor": monitor_steps * MONITOR_COST, "subset": steps, "overfit_batch": overfit_steps,
            "batchnorm_out": BATCHNORM_CHECK_COST, "reruns": 0, **{f"ablation:{v}": steps for v in variants},
            "ablation:other_optimizer": steps}
    plan: list[dict[str, Any]] = [{"probe": "initial_loss", "steps": 0, "core": True},
                                  {"probe": "gradients_at_init", "steps": 0, "core": True},
                                  {"probe": "baseline", "steps": steps, "core": True},
                                  {"probe": "lr_range", "steps": LR_RANGE_STEPS, "core": True},
                                  {"probe": "ablation:lr_suggested", "steps": steps, "core": True},
                                  *({"probe": name, "steps": cost[name], "core": False} for name in optional)]
    stats = None
    with _Progress(progress, len(plan) + 1) as bar:
        bar.start("model and data checks")
        data_facts, model_facts = _model_and_data_facts(recipe, notes, cross_validate)
        bar.done()

        def run_probe(name: str, fn: Callable[[], ProbeResult]) -> ProbeResult:
            """Run one probe; lossdoctor's own failure in it becomes a skipped probe and a note."""
            bar.start(name)
            try:
                result = fn()
            except InputError:
                raise
            except Exception as exc:
                if os.environ.get("LOSSDOCTOR_STRICT"):
                    raise
                report_internal_error(f"checkup: probe {name}", exc)
                result = ProbeResult.skipped(name, f"skipped: lossdoctor's own error ({type(exc).__name__}: {exc})")
            bar.done()
            return result

        ev.results["initial_loss"] = run_probe("initial loss", lambda: run_initial_loss(recipe))
        ev.results["gradients_at_init"] = run_probe("gradients at initialization",
                                                    lambda: run_gradients_at_init(recipe, seed))
        base_holder: dict[str, Any] = {}

        def baseline() -> ProbeResult:
            run = train_run(recipe, label="your setting", steps=steps, seed=seed)
            base_holder["run"] = run
            return ProbeResult("baseline", data={"run": run.summary(), "losses": run.losses}, seconds=run.seconds)

        ev.results["baseline"] = run_probe("baseline (your setting)", baseline)
        base = base_holder.get("run")
        per_step = (base.seconds / max(base.steps_done, 1)) if base is not None else 0.0
        ev.results["lr_range"] = run_probe("lr_range", lambda: run_lr_range(recipe, LR_RANGE_STEPS, seed))
        suggested = ev.get("lr_range").data.get("suggested_lr") if ev.get("lr_range") else None
        if suggested:  # the range test's confirmation: without it no rate is ever named
            ev.results["ablation:lr_suggested"] = run_probe("ablation:lr_suggested", lambda: run_ablation(
                recipe, "lr_suggested", steps, suggested_lr=suggested, seed=seed))
        else:
            ev.results["ablation:lr_suggested"] = ProbeResult.skipped(
                "ablation:lr_suggested", "skipped: the range test gave no suggested rate")

        def optional_probe(name: str, cost_steps: float, fn: Callable[[], ProbeResult]) -> None:
            if not budget.fits(cost_steps * recipe.accumulation * per_step):
                ev.results[name] = ProbeResult.skipped(
                    name, f"skipped: the budget ({budget_s:g} s) would run out: {budget.elapsed:.0f} s spent, this "
                          f"probe takes about {cost_steps * per_step:.0f} s ({cost_steps:g} steps)")
                bar.done()
                return
            ev.results[name] = run_probe(name, fn)

        def monitor() -> ProbeResult:
            # the live monitor on its own copy of the user's setting (the baseline above is the reference run)
            holder: dict[str, Any] = {}
            run = train_run(recipe, label="monitored", steps=monitor_steps, seed=seed,
                            setup=lambda m, o: _start_monitor(m, o, recipe, holder, notes),
                            on_step=lambda loss: _monitor_step(holder, loss), stop_on_non_finite=False)
            if "watch" in holder:
                base_holder["stats"] = _call_room(notes, "live monitor read-out", lambda: holder["watch"].stats())
            return ProbeResult("monitor", data={"steps": run.steps_done}, seconds=run.seconds)

        for name in optional:
            if name == "monitor":
                optional_probe(name, cost[name], monitor)
            elif name == "reruns":
                # An ablation whose two runs both failed at the user's rate (non-finite, or at chance)
                # proves nothing there: run it again at the range test's suggested rate, against the
                # lr_suggested run; when that pair fails too, the experiment is reported as inconclusive.
                safe = ev.get("ablation:lr_suggested")
                reruns = [v for v in variants if v in SAFE_LR_VARIANTS and safe and confounded(ev, v)]
                bar.add(len(reruns))
                for variant in reruns:
                    plan.append({"probe": safe_lr_name(variant), "steps": steps, "core": False})
                    optional_probe(safe_lr_name(variant), steps, lambda v=variant, lr=safe.data["lr"]: run_ablation(
                        recipe, v, steps, seed=seed, at_lr=lr))
                bar.done()
            elif name.startswith("ablation:"):
                variant = name.split(":", 1)[1]
                optional_probe(name, cost[name], lambda v=variant: run_ablation(
                    recipe, v, steps, suggested_lr=suggested, seed=seed))
            elif name == "subset":
                optional_probe(name, cost[name], lambda: run_subset(recipe, steps, seed))
            elif name == "overfit_batch":
                optional_probe(name, cost[name], lambda: run_overfit_batch(recipe, overfit_steps, seed))
            elif name == "batchnorm_out":
                optional_probe(name, cost[name], lambda: run_batchnorm_gradient_check(recipe, seed))
        stats = base_holder.get("stats")

    losses = base.losses if base is not None else []
    curves = _baseline_curves(losses, ev.chance_loss)
    analysis = _call_room(notes, "curve analysis (lossdoctor.curves.judge)", lambda: judge(curves)) \
        if losses else None
    run = RunFacts(framework="pytorch", optimizer=facts["optimizer"], lr=facts["lr"], grad_clip=recipe.grad_clip,
                   weight_decay=facts["weight_decay"], dropout=dict(facts["dropout"]), task=recipe.task,
                   num_classes=recipe.n_classes, loss=recipe.loss_kind,
                   inputs="token_ids" if recipe.integer_inputs else None)
    evidence = Evidence(curves=curves, analysis=analysis, model=model_facts, data=data_facts, stats=stats,
                        probes=ev, run=run)
    plots = _plots(ev, losses, data_facts, stats)
    report = build_report(evidence, source="checkup", plots=plots)
    serious = {f.code for f in report.findings if f.severity != "info"}
    report.ruled_out = [r for r in rule_out(ev) if r.code not in serious]
    undecided = inconclusive(ev)
    for u in undecided:
        notes.append(f"{u['by']}: inconclusive for {', '.join(u['codes'])}: {u['why']}")
    for r in ev.results.values():
        if not r.ran:
            notes.append(f"{r.name}: {r.note}")
    for entry in plan:
        result = ev.results.get(entry["probe"])
        entry["ran"] = bool(result and result.ran) if entry["probe"] != "reruns" else True
    report.metadata.update({
        "budget_s": budget_s, "elapsed_s": round(budget.elapsed, 2), "steps_per_run": steps,
        "seconds_per_step": per_step, "seed": seed, "recipe": facts,
        "plan": [e for e in plan if e["probe"] != "reruns"],
        "skipped": [n for n, r in ev.results.items() if not r.ran],
        "probes": {n: {"ran": r.ran, "note": r.note, "seconds": round(r.seconds, 3),
                       **({k: v for k, v in r.data.items() if k not in ("losses", "raw_losses", "lrs")})}
                   for n, r in ev.results.items()},
        "inconclusive": undecided, "chance_loss": ev.chance_loss, "notes": notes,
    })
    return report


def _start_monitor(model, optimizer, recipe: Recipe, holder: dict, notes: list[str]):
    def start():
        from .monitor import watch

        w = watch(model, optimizer, every=MONITOR_EVERY, max_norm=recipe.grad_clip)
        holder["watch"] = w
        return w

    return _call_room(notes, "live monitor (lossdoctor.monitor.watch)", start)


def _monitor_step(holder: dict, loss) -> None:
    w = holder.get("watch")
    if w is not None:
        try:
            w.step(loss)
        except Exception as exc:
            if os.environ.get("LOSSDOCTOR_STRICT"):
                raise
            report_internal_error("checkup: monitor step", exc)
            holder.pop("watch", None)


def _baseline_curves(losses: list[float], chance_loss: float | None = None) -> Curves:
    """The baseline run's loss curve, told the chance level (a curve that ends there has learned
    nothing, however far it fell)."""
    curves = Curves(run="checkup: your setting", source="checkup",
                    meta={CHANCE_LEVEL_META: chance_loss} if chance_loss is not None else {})
    if losses:
        curves.add("train_loss", np.arange(1, len(losses) + 1), losses)
    return curves


def _plots(ev: ProbeEvidence, base_losses: list[float], data_facts=None, stats=None) -> dict[str, Any]:
    plots: dict[str, Any] = {}
    rng = ev.get("lr_range")
    if rng:
        plots["lr_range"] = {k: rng.data.get(k) for k in ("lrs", "losses", "suggested_lr", "current_lr")}
    runs = [{"label": r.data["label"], "losses": r.data["losses"]}
            for name, r in ev.results.items() if name.startswith("ablation:") and r.ran]
    if runs:
        plots["ablations"] = {"baseline": {"label": "your setting", "losses": base_losses}, "runs": runs}
    # the rooms that ran along draw their own evidence: the data profile's feature and group scales,
    # the monitor's gradient norms and dead units (the monitored copy's loss curve repeats the baseline's)
    if data_facts is not None:
        from .data.profile import data_plots

        plots.update(data_plots(data_facts))
    if stats is not None:
        from .monitor.stats import stats_plots

        plots.update({k: v for k, v in stats_plots(stats).items() if k != "curves"})
    return plots


# -- from a file -------------------------------------------------------------------------------
def _load_build(target: str) -> tuple[Callable[[], Any], str]:
    path, sep, func = target.rpartition(":")
    if not sep or not path or os.sep in func or func.endswith(".py"):
        path, func = target, "build"
    if not path.endswith(".py"):
        raise InputError(f"{target}: expected FILE.py:FUNCTION (e.g. recipe.py:build)")
    if not os.path.isfile(path):
        raise InputError(f"{path}: file not found")
    name = f"_lossdoctor_recipe_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise InputError(f"{path}: cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    folder = os.path.dirname(os.path.abspath(path))
    sys.path.insert(0, folder)
    try:
        with user_code(f"importing {path}", "a recipe file defines build() and runs nothing at import"):
            spec.loader.exec_module(module)
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)
    fn = getattr(module, func, None)
    if fn is None:
        raise InputError(f"{path}: no function named {func!r}")
    if not callable(fn):
        raise InputError(f"{path}: {func!r} is not a function")
    return fn, f"{path}:{func}"


def checkup_from_file(target: str, budget_s: float | None = None, progress: bool = True, seed: int = 0,
                      steps: int | None = None, cross_validate: bool | None = None) -> Report:
    """``lossdoctor checkup FILE.py:build``: call ``build()`` and run ``checkup`` on the recipe it returns."""
    fn, origin = _load_build(target)
    with user_code(f"{origin}()", "expected it to return the recipe dict"):
        spec = fn()
    kwargs = recipe_from_dict(spec, f"{origin}()")
    report = checkup(**kwargs, budget_s=budget_s, progress=progress, seed=seed, steps=steps,
                     cross_validate=cross_validate)
    report.source = origin
    return report
