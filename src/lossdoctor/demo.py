"""``lossdoctor demo``: diagnose and fix a broken network on scikit-learn's digits, in about a minute.

The network carries three of the seed article's faults at once:

- the inputs are not normalized (pixel intensities x16, 0..256, never standardized);
- dropout is far too strong (0.9 after every hidden layer);
- the learning rate is far too high (SGD with momentum at 1.0): the loss blows up and turns NaN.

The demo trains it with the live monitor on (``lossdoctor.watch``) and prints what the monitor
catches as it happens, runs the checkup (``lossdoctor.checkup``), writes the HTML report, then
applies the recommended fixes one at a time, in the order the report ranks them, and shows the
loss converging. Nothing is downloaded: load_digits ships with scikit-learn.
"""
from __future__ import annotations

import math
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from .findings import Finding, Report

# -- the broken setting ----------------------------------------------------------------------
# digits pixels are 0..16; x16 makes them raw 8-bit intensities (0..256), as a pipeline that
# forgot its scaler would feed them.
PIXEL_SCALE = 16.0
BROKEN_LR = 1.0  # SGD + momentum on 0..256 inputs: the loss explodes and turns NaN within a few steps
BROKEN_DROPOUT = 0.9  # the seed's "dropout 0.5 on every layer" story, pushed further
MOMENTUM = 0.9
# the fixes
FIXED_DROPOUT = 0.1  # the seed's advice: remove it, then add it back gradually (0.1, then 0.2 ...)
FALLBACK_LR = 0.01  # used only when the range test gives no suggestion; a common SGD rate on standardized data

HIDDEN_UNITS = 128
BATCH_SIZE = 64
EPOCHS = 15  # per run after the fixes: ~350 steps, where the fixed network has converged on digits
VAL_SHARE = 0.2
MONITOR_EVERY = 1  # instrument and read out every step: the broken run lasts a handful of steps, and
# the demo shows each finding at the step it appears (a real run would use the default, 50)
SEED = 0

# the faults, and the finding codes whose remedy fixes each (a fault is fixed when its first code
# appears in the ranked report). Dead ReLUs count for the learning rate: here they are what the
# blow-up leaves behind, and "lower the learning rate" is part of their remedy.
FAULTS: dict[str, tuple[str, ...]] = {
    "standardize": ("data.unnormalized",),
    "learning_rate": ("optim.lr_too_high", "grad.non_finite", "model.logit_overflow", "grad.exploding",
                      "grad.dead_relu"),
    "dropout": ("model.regularization_too_strong",),
}


@dataclass(frozen=True)
class Setting:
    """One way to train the digits network; the demo moves from the broken one to the fixed one."""

    label: str
    standardize: bool = False
    lr: float | None = BROKEN_LR  # None: take the range test's suggestion for this setting
    dropout: float = BROKEN_DROPOUT


@dataclass
class RunOutcome:
    setting: Setting
    lr: float
    losses: list[float] = field(default_factory=list)  # per step, training mini-batch loss
    val_steps: list[int] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)  # per epoch
    train_loss: float = math.nan  # mean training loss over the last epoch (eval mode)
    val_loss: float = math.nan
    val_accuracy: float = math.nan
    first_non_finite_step: int | None = None
    caught: list[tuple[int, Finding]] = field(default_factory=list)  # (step, finding) from the live monitor
    monitor_report: Report | None = None

    @property
    def final_loss(self) -> float:
        """The training loss at the end, +inf when the run turned NaN/Inf."""
        return math.inf if self.first_non_finite_step is not None or not math.isfinite(self.train_loss) \
            else self.train_loss


@dataclass
class DemoResult:
    report: Report  # the checkup of the broken setting (with the monitor's and data checks' plots)
    rechecks: list[Report]  # checkups of the partly fixed setting, when the first one did not flag every fault
    after: Report  # the curves of the fully fixed run
    broken: RunOutcome
    fixes: list[RunOutcome]  # cumulative: each applies one more fix
    html_path: str
    seconds: float


# -- data and model --------------------------------------------------------------------------
@dataclass
class Digits:
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray

    def tensors(self, standardize: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        X_train, X_val = self.X_train, self.X_val
        if standardize:  # the remedy of data.unnormalized: a scaler fitted on the training split only
            from sklearn.preprocessing import StandardScaler

            scaler = StandardScaler().fit(X_train)
            X_train, X_val = scaler.transform(X_train), scaler.transform(X_val)
        as_x = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
        return as_x(X_train), torch.tensor(self.y_train), as_x(X_val), torch.tensor(self.y_val)


def load_broken_digits() -> Digits:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X_train, X_val, y_train, y_val = train_test_split(X * PIXEL_SCALE, y, test_size=VAL_SHARE, random_state=SEED,
                                                      stratify=y)
    return Digits(X_train, y_train, X_val, y_val)


def build_model(dropout: float, n_features: int = 64, n_classes: int = 10) -> nn.Module:
    """A small MLP with named layers, so that the report can say which one."""
    return nn.Sequential(OrderedDict([
        ("fc1", nn.Linear(n_features, HIDDEN_UNITS)), ("relu1", nn.ReLU()), ("drop1", nn.Dropout(dropout)),
        ("fc2", nn.Linear(HIDDEN_UNITS, HIDDEN_UNITS)), ("relu2", nn.ReLU()), ("drop2", nn.Dropout(dropout)),
        ("out", nn.Linear(HIDDEN_UNITS, n_classes)),
    ]))


def make_optimizer(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=MOMENTUM)


# -- training --------------------------------------------------------------------------------
def suggest_lr(setting: Setting, data: Digits) -> float | None:
    """The range test of lossdoctor's checkup (clipping off) on this setting: its suggested rate."""
    from .probes.lr_range import run_lr_range
    from .probes.recipe import normalize_recipe

    X_train, y_train, _, _ = data.tensors(setting.standardize)
    torch.manual_seed(SEED)
    model = build_model(setting.dropout)
    recipe = normalize_recipe(model, (X_train, y_train), nn.CrossEntropyLoss(), make_optimizer(model, BROKEN_LR),
                              batch_size=BATCH_SIZE)
    return run_lr_range(recipe, steps=120, seed=SEED).data.get("suggested_lr")


def train(setting: Setting, data: Digits, lr: float, epochs: int, progress=None,
          watch_every: int | None = None, on_caught: Callable[[int, Finding], None] | None = None) -> RunOutcome:
    """Train one setting from a seeded start; stop at the first NaN/Inf loss.

    With ``watch_every``, the live monitor watches the run and every new finding it reports is
    passed to ``on_caught`` with the step it was caught at.
    """
    X_train, y_train, X_val, y_val = data.tensors(setting.standardize)
    torch.manual_seed(SEED)
    model = build_model(setting.dropout, X_train.shape[1])
    optimizer = make_optimizer(model, lr)
    loss_fn = nn.CrossEntropyLoss()
    outcome = RunOutcome(setting, lr)
    batches = math.ceil(len(X_train) / BATCH_SIZE)
    generator = torch.Generator().manual_seed(SEED)
    task = progress.add_task(setting.label, total=epochs * batches) if progress is not None else None
    watcher = _start_watch(model, optimizer, watch_every) if watch_every else None
    seen: set[str] = set()
    step = 0
    try:
        for epoch in range(epochs):
            model.train()
            order = torch.randperm(len(X_train), generator=generator)
            for i in range(batches):
                idx = order[i * BATCH_SIZE:(i + 1) * BATCH_SIZE]
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(model(X_train[idx]), y_train[idx])
                loss.backward()
                optimizer.step()
                step += 1
                value = float(loss.detach())
                outcome.losses.append(value)
                finite = math.isfinite(value)
                if watcher is not None:
                    watcher.step(loss)
                    if not finite or step % watch_every == 0:
                        _new_findings(watcher, seen, step, outcome, on_caught)
                if progress is not None:
                    progress.update(task, advance=1, description=f"{setting.label}  loss {value:.3g}")
                if not finite:
                    outcome.first_non_finite_step = step
                    break
            if outcome.first_non_finite_step is not None:
                break
            outcome.val_steps.append(step)
            outcome.val_losses.append(_evaluate(model, loss_fn, X_val, y_val)[0])
        if watcher is not None:
            _new_findings(watcher, seen, step, outcome, on_caught)
            outcome.monitor_report = watcher.report()
    finally:
        if watcher is not None:
            watcher.close()
        if progress is not None and outcome.first_non_finite_step is not None:  # leave the bar where it stopped
            progress.update(task, description=f"{setting.label}  NaN: stopped at step {step}")
    outcome.train_loss, _ = _evaluate(model, loss_fn, X_train, y_train)
    outcome.val_loss, outcome.val_accuracy = _evaluate(model, loss_fn, X_val, y_val)
    return outcome


def _evaluate(model: nn.Module, loss_fn, X: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        logits = model(X)
        loss = float(loss_fn(logits, y))
        accuracy = float((logits.argmax(1) == y).float().mean())
    model.train()
    return loss, accuracy


def _start_watch(model, optimizer, every: int):
    from .monitor import watch

    return watch(model, optimizer, every=every).start()


def _new_findings(watcher, seen: set, step: int, outcome: RunOutcome, on_caught) -> None:
    for finding in watcher.report().findings:
        if finding.code in seen or finding.severity == "info":  # each cause once, when first caught
            continue
        seen.add(finding.code)
        outcome.caught.append((step, finding))
        if on_caught is not None:
            on_caught(step, finding)


# -- the fixes -------------------------------------------------------------------------------
FIX_LABELS = {
    "standardize": "standardize inputs",
    "learning_rate": "learning rate from the range test",
    "dropout": f"dropout {BROKEN_DROPOUT:g} -> {FIXED_DROPOUT:g}",
}


def fix_order(report: Report) -> tuple[list[str], list[str]]:
    """The planted faults in the order the report ranks their findings, and those it did not flag."""
    flagged: list[str] = []
    for finding in report.findings:
        if finding.severity == "info":
            continue
        for fault, codes in FAULTS.items():
            if finding.code in codes and fault not in flagged:
                flagged.append(fault)
    return flagged, [f for f in FAULTS if f not in flagged]


def apply_fix(setting: Setting, fault: str) -> Setting:
    label = f"+ {FIX_LABELS[fault]}"
    if fault == "standardize":
        return Setting(label, standardize=True, lr=setting.lr, dropout=setting.dropout)
    if fault == "learning_rate":  # lr None: re-run the range test for this and every later setting
        return Setting(label, standardize=setting.standardize, lr=None, dropout=setting.dropout)
    return Setting(label, standardize=setting.standardize, lr=setting.lr, dropout=FIXED_DROPOUT)


# -- the report ------------------------------------------------------------------------------
def _after_report(final: RunOutcome, broken: RunOutcome, fixes: list[RunOutcome]) -> Report:
    """The fully fixed run's curves, judged by lossdoctor's curve analysis, and every run of the demo."""
    from .curves import analyze_curves
    from .evidence import Curves

    curves = Curves(run="after the fixes", source="demo")
    curves.add("train_loss", np.arange(1, len(final.losses) + 1), final.losses)
    if final.val_losses:
        curves.add("val_loss", final.val_steps, final.val_losses)
    analysis = analyze_curves(curves)
    plots = {
        "curves": {name: s.to_plot() for name, s in curves.series.items()},
        "ablations": {"baseline": {"label": broken.setting.label, "losses": broken.losses},
                      "runs": [{"label": r.setting.label, "losses": r.losses} for r in fixes]},
    }
    metadata = {"train loss": _fmt(final.final_loss), "val accuracy": f"{final.val_accuracy:.1%}",
                "fixes": ", ".join(r.setting.label.lstrip("+ ") for r in fixes)}
    return Report(analysis.verdict, list(analysis.findings), source="demo: after the fixes", metadata=metadata,
                  events=list(analysis.events), plots=plots)


def _fmt(value: float) -> str:
    return f"{value:.4f}" if math.isfinite(value) else ("NaN" if math.isnan(value) else "Inf")


# -- the demo --------------------------------------------------------------------------------
MAX_RECHECKS = 2  # after the first checkup's fixes, re-run the checkup at most this often


def run_demo(html: str = "report.html", budget_s: float = 30, epochs: int = EPOCHS, console=None) -> DemoResult:
    """Run the whole demo and write the HTML report to ``html``; return what it found and fixed.

    ``budget_s`` is each checkup's time budget. The caller's RNG state and torch thread count are
    restored afterwards.
    """
    from rich.console import Console

    console = console or Console()
    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.set_num_threads(1)  # the demo is small; one thread is faster than contention on 2 cores
        try:
            return _run(html, float(budget_s), int(epochs), console)
        finally:
            torch.set_num_threads(threads)


def _progress(console):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("  {task.description:<52}"), BarColumn(bar_width=30), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console)


def resolve_lr(setting: Setting, data: Digits) -> float:
    """The setting's learning rate; for one that takes it from the range test, run the test now."""
    return setting.lr if setting.lr is not None else (suggest_lr(setting, data) or FALLBACK_LR)


def _checkup(setting: Setting, data: Digits, lr: float, epochs: int, budget_s: float, source: str) -> Report:
    from ._checkup import checkup

    X_train, y_train, X_val, y_val = data.tensors(setting.standardize)
    torch.manual_seed(SEED)
    model = build_model(setting.dropout)
    report = checkup(model, (X_train, y_train), nn.CrossEntropyLoss(), make_optimizer(model, lr),
                     val=(X_val, y_val), task="classification", epochs=epochs, batch_size=BATCH_SIZE,
                     budget_s=budget_s, progress=True)
    report.source = source
    return report


def _run(html: str, budget_s: float, epochs: int, console) -> DemoResult:
    from rich.panel import Panel
    from rich.rule import Rule
    from rich.table import Table

    from .report.html import render_html

    t0 = time.monotonic()
    console.print(Panel.fit(
        "[bold]lossdoctor demo[/]: a digits classifier (scikit-learn's load_digits, 1437 training images)\n"
        "that carries three faults from 'When the Loss Won't Converge' at once:\n"
        f"  [red]1.[/] inputs not normalized (pixels x{PIXEL_SCALE:g}: 0..256)\n"
        f"  [red]2.[/] dropout far too strong ({BROKEN_DROPOUT:g} after every hidden layer)\n"
        f"  [red]3.[/] learning rate far too high (SGD, momentum {MOMENTUM:g}, lr {BROKEN_LR:g})",
        border_style="red"))
    data = load_broken_digits()
    broken_setting = Setting("broken: your setting")

    # 1. the broken run, live monitor on
    console.print(Rule("[bold]1. training the broken network with the live monitor on"))

    def caught(step: int, finding: Finding) -> None:
        where = f" at [bold]{finding.where}[/]" if finding.where else ""
        colour = "red" if finding.severity == "error" else "yellow"
        console.print(f"  [{colour}]monitor, step {step}:[/] {finding.code}{where}: {finding.title}", highlight=False)

    with _progress(console) as bar:
        broken = train(broken_setting, data, BROKEN_LR, epochs, bar, watch_every=MONITOR_EVERY, on_caught=caught)
    if broken.first_non_finite_step is not None:
        console.print(f"  [bold red]the loss turned NaN at step {broken.first_non_finite_step}[/]: training "
                      "stopped (every step after it is wasted).")
    else:
        console.print(f"  the broken run ended with training loss {_fmt(broken.final_loss)}, "
                      f"validation accuracy {broken.val_accuracy:.1%}.")

    # 2. the checkup
    console.print(Rule(f"[bold]2. checkup: short experiments on copies (budget {budget_s:g} s)"))
    report = _checkup(broken_setting, data, BROKEN_LR, epochs, budget_s, "checkup: the broken digits network")
    report.print(console)
    report.to_html(html)  # written now, rewritten with the fixes at the end
    console.print(f"  report written to [bold]{os.path.abspath(html)}[/]")

    # 3. the fixes, one at a time, in the report's order; when the flagged ones are done, check again
    console.print(Rule("[bold]3. applying the recommended fixes one at a time"))
    remaining = list(FAULTS)
    queue, _ = fix_order(report)
    rechecks: list[Report] = []
    fixes: list[RunOutcome] = []
    setting = broken_setting
    while remaining:
        queue = [f for f in queue if f in remaining]
        if not queue and len(rechecks) < MAX_RECHECKS and fixes:
            console.print(f"  the flagged causes are fixed; final training loss {_fmt(fixes[-1].final_loss)}. "
                          "[bold]checking again[/] on the setting fixed so far:")
            again = _checkup(setting, data, fixes[-1].lr, epochs, budget_s,
                             f"checkup after: {', '.join(FIX_LABELS[f] for f in FAULTS if f not in remaining)}")
            rechecks.append(again)
            queue, _ = fix_order(again)
            queue = [f for f in queue if f in remaining]
            top = again.top
            console.print(f"  now the top cause is [bold]{top.code}[/]: {top.remedy}" if top is not None else
                          "  the checkup finds nothing more to fix.", highlight=False)
        if not queue:
            console.print(f"  [yellow]not flagged by any checkup:[/] {', '.join(FIX_LABELS[m] for m in remaining)} "
                          "(applied last, for comparison)")
            queue = list(remaining)
        fault = queue.pop(0)
        remaining.remove(fault)
        setting = apply_fix(setting, fault)
        lr = resolve_lr(setting, data)
        with _progress(console) as bar:
            fixes.append(train(setting, data, lr, epochs, bar))

    table = Table(title="final loss after each fix (cumulative)", header_style="bold")
    for column, justify in (("setting", "left"), ("lr", "right"), ("train loss", "right"), ("val loss", "right"),
                            ("val accuracy", "right"), ("NaN at step", "right")):
        table.add_column(column, justify=justify)
    for run in [broken, *fixes]:
        style = "red" if run.first_non_finite_step is not None else None
        table.add_row(run.setting.label, f"{run.lr:.3g}", _fmt(run.final_loss), _fmt(run.val_loss),
                      f"{run.val_accuracy:.1%}", str(run.first_non_finite_step or "-"), style=style)
    console.print(table)

    after = _after_report(fixes[-1], broken, fixes)
    sections = [report, *rechecks, after]
    if broken.monitor_report is not None:
        broken.monitor_report.source = "live monitor: the broken run"
        sections.insert(0, broken.monitor_report)
    with open(html, "w", encoding="utf-8") as fh:
        fh.write(render_html(sections))
    seconds = time.monotonic() - t0
    final = fixes[-1]
    console.print(f"  training loss: [red]{_fmt(broken.final_loss)}[/] (broken) -> [green]{_fmt(final.final_loss)}[/] "
                  f"after {len(fixes)} fixes; verdict on the fixed run: [bold]{after.verdict}[/]")
    console.print(f"  report written to [bold]{os.path.abspath(html)}[/] (the live monitor, {1 + len(rechecks)} "
                  f"checkup(s) and the fixed run) - the demo took {seconds:.0f} s")
    return DemoResult(report=report, rechecks=rechecks, after=after, broken=broken, fixes=fixes,
                      html_path=os.path.abspath(html), seconds=seconds)
