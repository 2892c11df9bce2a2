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
import math
import os
import random
import sys
import time
import uuid
from typing import Any, Callable

import numpy as np
import torch

from .errors import InputError
from .evidence import Curves
from .findings import Finding, Report
from .internal import report_internal_error
from .probes import checks as _checks  # noqa: F401 - registers the @check("probes") decisions
from .probes.ablations import run_ablation
from .probes.batchnorm import run_batchnorm_gradient_check
from .probes.checks import SAFE_LR_VARIANTS, ProbeEvidence, confounded, inconclusive, rule_out, safe_lr_name
from .probes.initial_loss import run_initial_loss
from .probes.loop import Budget, train_run
from .probes.lr_range import run_lr_range
from .probes.overfit_batch import run_overfit_batch
from .probes.recipe import (Recipe, batchnorm_layers, dropout_layers, normalize_recipe, recipe_from_dict,
                            recurrent_dropouts)
from .probes.result import ProbeResult
from .probes.subset import run_subset
from .registry import run_checks

# Steps per training run: at least enough for a loss curve to say something, at most what a short
# probe needs on digits-sized problems (more would spend the budget without changing the verdict).
MIN_STEPS = 40
MAX_STEPS = 600
# Range-test steps: enough points to span LR_START..LR_END (7 decades) at ~15 points per decade.
LR_RANGE_STEPS = 120
# The one-batch overfit runs this share of the run length (a single batch converges faster).
OVERFIT_SHARE = 0.5
# Share of the budget the planner hands to the probes after the model/data checks; the rest absorbs
# the monitor's overhead, evaluation passes and timing noise.
PLAN_SHARE = 0.85
# Steps timed to estimate the cost of one training step before planning.
TIMING_STEPS = 5
# The data checks' cross-validated baseline (permutation test and cleanlab's out-of-fold
# probabilities: dozens of model fits) takes 5-40 s on digits on this 2-core machine; below this
# budget it would eat the probes' time, so it is skipped with a note.
DATA_BASELINE_MIN_BUDGET = 20.0
# The monitor reads its statistics this often during the baseline run.
MONITOR_EVERY = 20
# The monitored run gets at most this share of the budget and this many steps: enough read-outs
# (MONITOR_EVERY apart) to see dead units, gradient trends and the first NaN.
MONITOR_SHARE = 0.2
MONITOR_MAX_STEPS = 200


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
    """Call another room's entry point; a missing room or a failure becomes a note, not a crash."""
    try:
        return fn()
    except ImportError as exc:
        notes.append(f"{what} skipped: not available ({exc})")
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - a bug elsewhere must not stop the checkup
        if os.environ.get("LOSSDOCTOR_STRICT"):
            raise
        report_internal_error(f"checkup: {what}", exc)
        notes.append(f"{what} skipped: {type(exc).__name__}: {exc}")
    return None


def _model_and_data_checks(recipe: Recipe, notes: list[str], baseline: bool) -> list[Report]:
    reports = []
    if not baseline:
        notes.append(f"data checks: the cross-validated baseline (no-signal permutation test, label noise) "
                     f"skipped: it needs a budget of at least {DATA_BASELINE_MIN_BUDGET:g} s "
                     "(or cross_validate=True)")

    def data_check():
        from .data import check_data

        X = recipe.X.reshape(recipe.n_train, -1)
        return check_data(X, recipe.y, groups=recipe.groups, task=recipe.task, baseline=baseline)

    def model_check():
        from .model import check_model

        model = recipe.fresh_model()
        rows = min(recipe.n_train, 256)
        return check_model(model, sample_input=recipe.X[:rows], loss_fn=recipe.loss_fn, targets=recipe.y[:rows],
                           optimizer=recipe.make_optimizer(model))

    for what, fn in (("data checks (lossdoctor.data.check_data)", data_check),
                     ("model checks (lossdoctor.model.check_model)", model_check)):
        rep = _call_room(notes, what, fn)
        if rep is not None:
            reports.append(rep)
    return reports


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
    }


def _plan_steps(recipe: Recipe, budget: Budget, n_runs: float, pinned: int | None = None) -> tuple[int, float]:
    """Time a few steps on a copy and size every run so that all of them fit the budget.

    ``pinned`` fixes the run length whatever the machine's speed (the timing then only serves the
    budget's cap: a probe that no longer fits is skipped with a note).
    """
    t0 = time.monotonic()
    train_run(recipe, label="timing", steps=TIMING_STEPS, seed=0)
    per_step = max((time.monotonic() - t0) / TIMING_STEPS, 1e-5)
    if pinned is not None:
        steps = pinned
    else:
        steps = max(MIN_STEPS, min(MAX_STEPS, int(PLAN_SHARE * budget.left / per_step / n_runs)))
    if recipe.epochs:  # never run longer than the user's own training
        steps = min(steps, max(MIN_STEPS, recipe.epochs * math.ceil(recipe.n_train / recipe.batch_size)))
    return steps, per_step


def checkup(model, train, loss_fn, optimizer, val=None, grad_clip=None, task=None, epochs=None, batch_size=None,
            budget_s: float = 60, progress: bool = True, seed: int = 0, groups=None, steps: int | None = None,
            cross_validate: bool | None = None) -> Report:
    """Run the probes on copies of the recipe and return the ranked differential as a Report.

    ``train``/``val``: (X, y) tensors or arrays, a Dataset or a DataLoader. ``optimizer``: an instance
    bound to ``model``'s parameters (its class and hyper-parameters are what is probed).
    ``grad_clip``: max total gradient norm or None. ``budget_s`` scales the probe lengths; a probe
    that no longer fits is skipped with a note. ``steps`` fixes the length of every training run
    (at least MIN_STEPS) instead of sizing it from the measured speed, so that the outcome does not
    depend on the machine; the budget then only caps. ``cross_validate`` runs the data checks'
    cross-validated baseline (default: when ``budget_s`` >= DATA_BASELINE_MIN_BUDGET).
    ``groups``: optional group/key column passed to the data checks (per-group units).
    """
    if isinstance(budget_s, bool) or not isinstance(budget_s, (int, float)) or not budget_s > 0:
        raise InputError(f"budget_s: expected a positive number of seconds, got {budget_s!r}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < MIN_STEPS):
        raise InputError(f"steps: expected a whole number of training steps >= {MIN_STEPS}, got {steps!r}")
    if cross_validate is None:
        cross_validate = budget_s >= DATA_BASELINE_MIN_BUDGET
    with preserved_rng(), torch.enable_grad():
        recipe = normalize_recipe(model, train, loss_fn, optimizer, val=val, grad_clip=grad_clip, task=task,
                                  epochs=epochs, batch_size=batch_size, groups=groups)
        return _checkup(recipe, float(budget_s), progress, seed, steps, bool(cross_validate))


def _checkup(recipe: Recipe, budget_s: float, progress: bool, seed: int, pinned_steps: int | None,
             cross_validate: bool) -> Report:
    budget = Budget(budget_s)
    notes: list[str] = list(recipe.notes)
    facts = _facts(recipe)
    ev = ProbeEvidence(facts=facts)
    variants = ["lr_suggested", "reinit"]
    if facts["dropout"] or facts["weight_decay"]:
        variants.append("no_regularization")
    if recipe.grad_clip is not None:
        variants.append("no_clipping")
    variants.append("other_optimizer")
    has_bn = bool(facts["batchnorm"])
    total = 6 + len(variants) + has_bn
    room_reports: list[Report] = []
    with _Progress(progress, total) as bar:
        bar.start("model and data checks")
        room_reports += _model_and_data_checks(recipe, notes, cross_validate)
        bar.done()
        # runs: baseline, subset, the ablations, half a run for one batch, the range test
        n_runs = 2 + len(variants) + OVERFIT_SHARE + LR_RANGE_STEPS / MAX_STEPS + MONITOR_SHARE
        steps, per_step = _plan_steps(recipe, budget, n_runs, pinned_steps)
        est = lambda n: n * per_step * 1.2  # noqa: E731 - 20 % for evaluation passes and noise
        deadline = budget.deadline()

        bar.start("initial loss")
        ev.results["initial_loss"] = run_initial_loss(recipe)
        bar.done()

        bar.start("baseline (your setting)")
        base = train_run(recipe, label="your setting", steps=steps, seed=seed, deadline=deadline)
        ev.results["baseline"] = _as_probe("baseline", base, steps)
        bar.done()

        # The live monitor runs along on its own copy of the user's setting, time-boxed, so that its
        # overhead never eats the comparisons' budget (the baseline above is the reference run).
        bar.start("live monitor (your setting)")
        watch_holder: dict[str, Any] = {}
        monitor_deadline = deadline if pinned_steps is not None else \
            min(deadline, time.monotonic() + MONITOR_SHARE * budget_s)
        train_run(recipe, label="monitored", steps=min(steps, MONITOR_MAX_STEPS), seed=seed, deadline=monitor_deadline,
                  setup=lambda m, o: _start_monitor(m, o, recipe, watch_holder, notes),
                  on_step=lambda loss: _monitor_step(watch_holder, loss), stop_on_non_finite=False)
        monitor_report = _call_room(notes, "live monitor read-out", lambda: watch_holder["watch"].report()) \
            if "watch" in watch_holder else None
        if monitor_report is not None:
            room_reports.append(monitor_report)
        bar.done()

        def probe(name: str, cost_steps: float, fn: Callable[[], ProbeResult]) -> None:
            bar.start(name)
            if not budget.fits(est(cost_steps)):
                ev.results[name] = ProbeResult.skipped(name, f"skipped: the budget ({budget_s:g} s) ran out")
            else:
                ev.results[name] = fn()
            bar.done()

        probe("lr_range", LR_RANGE_STEPS, lambda: run_lr_range(recipe, LR_RANGE_STEPS, deadline, seed))
        overfit_steps = max(MIN_STEPS, int(steps * OVERFIT_SHARE))
        probe("overfit_batch", overfit_steps * 0.5,
              lambda: _complete(run_overfit_batch(recipe, overfit_steps, deadline, seed), overfit_steps))
        probe("subset", steps, lambda: _complete(run_subset(recipe, steps, deadline, seed), steps))
        suggested = (ev.get("lr_range").data.get("suggested_lr") if ev.get("lr_range") else None)
        for variant in variants:
            name = f"ablation:{variant}"
            if variant == "lr_suggested" and not suggested:
                ev.results[name] = ProbeResult.skipped(name, "skipped: the range test gave no suggested rate")
                bar.done()
                continue
            probe(name, steps, lambda v=variant: _complete(
                run_ablation(recipe, v, steps, suggested_lr=suggested, deadline=deadline, seed=seed), steps))
        # An ablation whose two runs both failed at the user's rate (non-finite, or at chance level)
        # proves nothing there: run it again at the range test's suggested rate, against the
        # lr_suggested run; when that pair fails too, the experiment is reported as inconclusive.
        safe = ev.get("ablation:lr_suggested")
        reruns = [v for v in variants if v in SAFE_LR_VARIANTS and safe and confounded(ev, v)]
        bar.add(len(reruns))
        for variant in reruns:
            probe(safe_lr_name(variant), steps, lambda v=variant: _complete(
                run_ablation(recipe, v, steps, deadline=deadline, seed=seed, at_lr=safe.data["lr"]), steps))
        if has_bn:
            probe("batchnorm_out", 10, lambda: run_batchnorm_gradient_check(recipe, seed))

    findings: list[Finding] = run_checks("probes", ev)
    for rep in room_reports:  # the monitored copy's curve repeats the baseline's: its curve findings too
        findings += [f for f in rep.findings if f.source != "curves"]
    verdict, events, curve_findings, curve_evidence = _judge_curves(base, notes, ev.chance_loss)
    findings += _unsettled(curve_findings, findings, ev)
    findings = _differential(findings)
    report = Report(verdict=verdict, findings=findings, source="checkup", events=events)
    serious = {f.code for f in report.findings if f.severity != "info"}
    report.ruled_out = [r for r in rule_out(ev) if r.code not in serious]
    undecided = inconclusive(ev)
    for u in undecided:
        notes.append(f"{u['by']}: inconclusive for {', '.join(u['codes'])}: {u['why']}")
    for r in ev.results.values():
        if not r.ran:
            notes.append(f"{r.name}: {r.note}")
    report.metadata = {
        "budget_s": budget_s, "elapsed_s": round(budget.elapsed, 2), "steps_per_run": steps,
        "seconds_per_step": per_step, "seed": seed, "recipe": facts,
        "probes": {n: {"ran": r.ran, "note": r.note, "seconds": round(r.seconds, 3),
                       **({k: v for k, v in r.data.items() if k not in ("losses", "raw_losses", "lrs")})}
                   for n, r in ev.results.items()},
        "inconclusive": undecided, "chance_loss": ev.chance_loss, "verdict_evidence": curve_evidence,
        "notes": notes,
    }
    report.plots = _plots(ev, base, room_reports)
    return report


# Findings of other rooms that name the mechanism a re-initialization cures (dead units, vanishing
# or exploding gradients): more specific than "the init", so the probe's bad_init yields to them.
MECHANISM_CODES = ("grad.dead_relu", "grad.vanishing", "grad.exploding")
# Data findings that explain "fits a subset, not the full data" better than a lack of capacity.
DATA_EXPLANATIONS = ("data.label_noise", "data.no_signal", "data.non_finite")
# Symptoms a too-high learning rate produces; when the range test convicts the rate and the
# baseline diverged or failed, the rate is ranked above them (they are what such a rate does).
LR_SYMPTOM_CODES = ("grad.dead_relu", "grad.exploding", "grad.non_finite", "model.logit_overflow")
# Symptoms of inputs on the wrong scale, and the data findings that name that scale as the cause.
SCALE_SYMPTOM_CODES = ("model.logit_overflow", "grad.exploding")
SCALE_CAUSE_CODES = ("data.unnormalized", "data.mixed_units")
# Confidence a probe finding keeps when a more specific one explains the same observation.
YIELD_CONFIDENCE = 0.5


def _unsettled(curve_findings: list[Finding], probe_findings: list[Finding], ev: ProbeEvidence) -> list[Finding]:
    """The curve analysis' info findings name the experiment that would settle a cause; inside a
    checkup, drop those whose experiment has run (the probe found, ruled out or could not decide it)."""
    settled = {f.code for f in probe_findings if f.source.startswith("probe:")}
    settled |= {r.code for r in rule_out(ev)}
    settled |= {code for u in inconclusive(ev) for code in u["codes"]}
    if ev.get("lr_range"):
        settled |= {"optim.lr_too_high", "optim.lr_too_low"}
    return [f for f in curve_findings if f.severity != "info" or f.code not in settled]


def _differential(findings: list[Finding]) -> list[Finding]:
    """Order causes that explain the same observation: the specific one first, the other kept as a candidate."""
    serious = {f.code for f in findings if f.severity != "info" and not f.source.startswith("probe:")}
    out = []
    for f in findings:
        explained_by = None
        if f.source == "probe:ablation" and f.code == "model.bad_init":
            explained_by = [c for c in MECHANISM_CODES if c in serious]
        elif f.source == "probe:subset" and f.code == "data.too_large":
            explained_by = [c for c in DATA_EXPLANATIONS if c in serious]
        if explained_by:
            f.confidence = min(f.confidence, YIELD_CONFIDENCE)
            f.evidence["more_specific"] = explained_by
        if f.code in SCALE_SYMPTOM_CODES:
            scale = [c for c in SCALE_CAUSE_CODES if c in serious]
            if scale:  # huge inputs make huge logits/gradients: normalizing the data fixes both
                f.severity = "warning" if f.severity == "error" else f.severity
                f.confidence = min(f.confidence, YIELD_CONFIDENCE)
                f.evidence["likely_caused_by"] = scale
        if f.source == "probe:lr_range" and f.code == "optim.lr_too_high" and (
                f.evidence.get("baseline_diverged") or f.evidence.get("baseline_failed")):
            symptoms = [g for g in findings if g.code in LR_SYMPTOM_CODES and not g.source.startswith("probe:")
                        and g.severity != "info"]
            if symptoms:  # the rate that produces them is the cause to fix first
                f.severity = "error"
                f.confidence = max(f.confidence, min(0.99, max(g.confidence for g in symptoms) + 0.01))
                f.evidence["explains"] = sorted({g.code for g in symptoms})
        out.append(f)
    return out


def _complete(result: ProbeResult, planned: int) -> ProbeResult:
    """A run cut short by the deadline cannot be compared at equal steps: mark it skipped."""
    run = result.data.get("run") or {}
    done, nan = run.get("steps", planned), run.get("first_non_finite_step")
    if done < planned and nan is None:
        return ProbeResult(result.name, ran=False, seconds=result.seconds, data=result.data,
                           note=f"skipped: the budget ran out after {done} of {planned} steps")
    return result


def _as_probe(name: str, run, planned: int) -> ProbeResult:
    return _complete(ProbeResult(name, data={"run": run.summary(), "losses": run.losses}, seconds=run.seconds), planned)


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
        except Exception as exc:  # noqa: BLE001
            if os.environ.get("LOSSDOCTOR_STRICT"):
                raise
            report_internal_error("checkup: monitor step", exc)
            holder.pop("watch", None)


def _judge_curves(run, notes: list[str], chance_loss: float | None = None):
    """The verdict from the baseline run's loss curve (lossdoctor.curves.analyze_curves), told the
    chance level (a curve that ends there has learned nothing, however far it fell)."""
    curves = Curves(run="checkup: your setting", source="checkup",
                    meta={"chance_loss": chance_loss} if chance_loss is not None else {})
    curves.add("train_loss", np.arange(1, len(run.losses) + 1), run.losses)

    def analyze():
        from .curves import analyze_curves

        return analyze_curves(curves)

    analysis = _call_room(notes, "curve analysis (lossdoctor.curves.analyze_curves)", analyze)
    if analysis is None:
        return None, [], [], {}
    return analysis.verdict, list(analysis.events or []), list(analysis.findings or []), dict(analysis.evidence or {})


def _plots(ev: ProbeEvidence, base, room_reports: list[Report] = ()) -> dict[str, Any]:
    plots: dict[str, Any] = {"curves": {"train_loss": {"steps": list(range(1, len(base.losses) + 1)),
                                                       "values": base.losses}}}
    rng = ev.get("lr_range")
    if rng:
        plots["lr_range"] = {k: rng.data.get(k) for k in ("lrs", "losses", "suggested_lr", "current_lr")}
    runs = [{"label": r.data["label"], "losses": r.data["losses"]}
            for name, r in ev.results.items() if name.startswith("ablation:") and r.ran]
    if runs:
        plots["ablations"] = {"baseline": {"label": "your setting", "losses": base.losses}, "runs": runs}
    # the rooms that ran along draw their own evidence: the data checks' feature_scales and
    # group_scales, the monitor's grad_norms and dead_units (the checkup's curves come first)
    for rep in room_reports:
        for key, value in (rep.plots or {}).items():
            if key == "curves":
                continue  # the monitored copy's curve repeats the baseline's
            plots.setdefault(key, value)
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
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - the user's file failed to import: say where
        raise InputError(f"{path}: importing it raised {type(exc).__name__}: {exc}") from None
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)
    fn = getattr(module, func, None)
    if fn is None:
        raise InputError(f"{path}: no function named {func!r}")
    if not callable(fn):
        raise InputError(f"{path}: {func!r} is not a function")
    return fn, f"{path}:{func}"


def checkup_from_file(target: str, budget_s: float = 60, progress: bool = True, seed: int = 0,
                      steps: int | None = None, cross_validate: bool | None = None) -> Report:
    """``lossdoctor checkup FILE.py:build``: call ``build()`` and run ``checkup`` on the recipe it returns."""
    fn, origin = _load_build(target)
    try:
        spec = fn()
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's build() failed: say so in one line
        raise InputError(f"{origin}: calling it raised {type(exc).__name__}: {exc}") from None
    kwargs = recipe_from_dict(spec, f"{origin}()")
    report = checkup(**kwargs, budget_s=budget_s, progress=progress, seed=seed, steps=steps,
                     cross_validate=cross_validate)
    report.source = origin
    return report

