"""What the framework callbacks (and ``lossdoctor.watch``) share: recording curves step by step,
what a batch says about the task, assembling the final Report through the registry, leaving the
report where users look (HTML/JSON files, TensorBoard text, an active Weights & Biases run), and
keeping lossdoctor's own failures out of the user's training. Imports no framework (torch only
where a tensor is handed in; wandb only when the user already imported it).
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import sys
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from ..errors import InputError
from ..evidence import LEARNING_RATE, Curves, RunFacts
from ..findings import Finding, Report
from ..internal import report_internal_error

STRICT_ENV = "LOSSDOCTOR_STRICT"


def require(module: str, extra: str):
    """Import a framework, or fail with the one command that installs it."""
    from importlib import import_module

    try:
        return import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"this lossdoctor integration needs {module!r}: pip install '{extra}'") from exc


def guarded(where: str) -> Callable:
    """Run a callback hook so that a failure inside lossdoctor never stops the user's training.

    The failure is reported once (``report_internal_error``) and the hook returns None. With
    ``LOSSDOCTOR_STRICT=1`` (the tests) it raises instead, so bugs cannot hide.
    """

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - lossdoctor must not break a training run
                if os.environ.get(STRICT_ENV):
                    raise
                report_internal_error(f"{where}.{fn.__name__}", exc)
                return None

        return run

    return decorate


class WatchOwner:
    """The ``lossdoctor.watch`` a framework callback owns, and the one way it is let go: at the end
    of training, on an exception the framework reports, or by the user's ``close()`` after a crash
    the framework does not report (Hugging Face and Keras give callbacks no event on an exception)."""

    _watch = None

    def close(self) -> None:
        """Remove the watch's hooks from the model now; safe to call more than once."""
        self._close_watch()

    def __enter__(self):
        """``with callback: trainer.train()`` closes the watch however training ends."""
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.close()
        return False

    @guarded("integration")
    def _close_watch(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.close()


class CurveRecorder:
    """Step-indexed metrics recorded during training, turned into a :class:`Curves` at the end.

    Values may be Python numbers or tensors. Tensors are kept as they are (on their device) and
    converted in one batch by :meth:`flush`, so recording adds no host synchronisation per step.
    Several values at one step (gradient accumulation, several loggers) are averaged.
    """

    def __init__(self) -> None:
        self._points: dict[str, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
        self._pending: list[tuple[str, float, Any]] = []

    def add(self, name: str, step: float, value: Any) -> None:
        if value is None:
            return
        if hasattr(value, "detach"):
            self._pending.append((name, float(step), value.detach().reshape(())))
            return
        steps, values = self._points[name]
        steps.append(float(step))
        values.append(float(value))

    def flush(self) -> list[tuple[str, float, float]]:
        """Move pending tensor values to the host (one transfer); returns what was flushed."""
        if not self._pending:
            return []
        import torch

        pending, self._pending = self._pending, []
        host = torch.stack([t.float().to(pending[0][2].device) for _, _, t in pending]).cpu().tolist()
        flushed = []
        for (name, step, _), value in zip(pending, host):
            steps, values = self._points[name]
            steps.append(step)
            values.append(value)
            flushed.append((name, step, value))
        return flushed

    def to_curves(self, run: str, source: str, meta: Mapping[str, Any] | None = None) -> Curves:
        self.flush()
        curves = Curves(run=run, source=source, meta=dict(meta or {}))
        for name, (steps, values) in self._points.items():
            if not steps:
                continue
            s = np.asarray(steps, dtype=np.float64)
            v = np.asarray(values, dtype=np.float64)
            # sorted by step; repeated steps averaged (a NaN stays NaN: it must remain visible)
            unique, inverse = np.unique(s, return_inverse=True)
            curves.add(name, unique, np.bincount(inverse, weights=v) / np.bincount(inverse))
        return curves


# ------------------------------------------------------------------------------------------------
# The final report.


def start_watch(model: Any, optimizer: Any = None, **kwargs: Any):
    """``lossdoctor.watch`` on the model, started; None (reported once) if watching fails."""
    from ..monitor import watch

    # the owner writes the report itself (its own curves and facts): the watch must not write one too
    # and inspects the model itself (torch_model_facts, with the batch as the framework gives it)
    w = watch(model, optimizer, wandb=False, check_model=False, **kwargs)
    start = getattr(w, "start", None)
    if callable(start) and not getattr(w, "started", False):
        start()
    return w


def assemble_report(curves: Curves, stats: Any = None, extra: Iterable[Finding] = (), *, source: str,
                    run: RunFacts | None = None, model: Any = None, data: Any = None,
                    metadata: Mapping[str, Any] | None = None) -> Report:
    """One Report from the framework's logged curves, the live watch's read-out (``stats``, a
    ``WatchStats``), what the callback knows of the run (``run``, a ``RunFacts``), of the model
    (``model``, a ``ModelFacts``: the Keras adapter's) and of the training data (``data``, a
    ``DataFacts``: ``training_data_facts``), through the registry and the differential like every
    other entry point.

    The verdict comes from the logged curves (they hold the validation loss); when they hold no
    loss at all, the watch's per-step losses are judged instead.
    """
    from ..assemble import build_report
    from ..curves import judge
    from ..evidence import TRAIN_LOSS, VAL_LOSS
    from ..registry import Evidence

    plots: dict[str, Any] = {}
    meta = dict(metadata or {})
    if stats is not None:
        from ..monitor.stats import stats_plots

        if curves.get(TRAIN_LOSS) is None and curves.get(VAL_LOSS) is None and stats.loss_steps.size:
            curves.add(TRAIN_LOSS, stats.loss_steps, stats.loss_values)
        plots = stats_plots(stats)
        meta.setdefault("watch", {"steps": stats.steps, "every": stats.every,
                                  "instrumented_steps": len(stats.sample_steps), "world_size": stats.world_size})
    if run is not None:
        run = completed_run_facts(run, curves, stats)
        declare_chance_level(curves, run)
        meta.setdefault("run", dataclasses.asdict(run))
    analysis = judge(curves) if curves.series else None
    evidence = Evidence(curves=curves, analysis=analysis, stats=stats, run=run, model=model, data=data)
    return build_report(evidence, source=source, metadata=meta, plots=plots, extra=extra)


def completed_run_facts(run: RunFacts, curves: Curves, stats: Any = None) -> RunFacts:
    """``run`` with what the curves and the watch add: the peak of the logged learning rate (the
    rate the user set, where a schedule has decayed it by the end), and the logits' width of a
    classifier (the watch measures it)."""
    changes: dict[str, Any] = {}
    lr = curves.get(LEARNING_RATE)
    finite = lr.values[np.isfinite(lr.values)] if lr is not None else np.zeros(0)
    if finite.size and finite.max() > 0 and (run.lr is None or finite.max() > run.lr):
        changes["lr"] = float(finite.max())
    width = getattr(stats, "num_classes", None)
    if run.num_classes is None and run.task == "classification" and isinstance(width, int) and width >= 2:
        changes["num_classes"] = width
    return dataclasses.replace(run, **changes) if changes else run


# The curve analysis reads the chance level of a classifier (ln K) and its class count from the curves' meta.
CHANCE_LEVEL_META = "chance_loss"
NUM_CLASSES_META = "num_classes"
NUM_CLASSES_SOURCE_META = "num_classes_source"
# Losses whose value for an uninformed K-class prediction is ln K.
CHANCE_LN_K_LOSSES = (None, "cross_entropy", "nll", "bce")


def declare_chance_level(curves: Curves, run: RunFacts) -> None:
    """Tell the curve analysis the class count of a classifier trained with a cross-entropy, so that
    a loss sitting at ln K is known to be at chance (a run that blew up and never recovered)."""
    k = run.num_classes
    if run.task != "classification" or not isinstance(k, int) or k < 2 or run.loss not in CHANCE_LN_K_LOSSES:
        return
    if NUM_CLASSES_META not in curves.meta:
        curves.meta[CHANCE_LEVEL_META] = math.log(k)
        curves.meta[NUM_CLASSES_META] = k
        curves.meta[NUM_CLASSES_SOURCE_META] = (f"the {run.framework} model's output width ({k} class scores) "
                                                "with class-id targets")


# ------------------------------------------------------------------------------------------------
# What a batch says about the run (read from dtypes and shapes only: no host synchronisation).


def _is_tensor(value: Any) -> bool:
    return hasattr(value, "dtype") and hasattr(value, "ndim") and hasattr(value, "shape")


def _integer(tensor: Any) -> bool:
    dtype = tensor.dtype
    floating = getattr(dtype, "is_floating_point", None)
    if floating is not None:  # torch
        return not floating and not getattr(dtype, "is_complex", False) and str(dtype) != "torch.bool"
    return np.issubdtype(np.dtype(dtype), np.integer)


# Names under which batches carry their inputs and their targets (dict batches, model kwargs).
INPUT_KEYS = ("input_ids", "pixel_values", "inputs", "input", "x", "features", "image", "images")
TARGET_KEYS = ("labels", "label", "targets", "target", "y")


def split_batch(batch: Any) -> tuple[Any, Any]:
    """(inputs, targets) of a batch: ``(x, y)``, ``[x, y]`` or a dict; None where not evident."""
    if isinstance(batch, Mapping):
        inputs = next((batch[k] for k in INPUT_KEYS if _is_tensor(batch.get(k))), None)
        targets = next((batch[k] for k in TARGET_KEYS if _is_tensor(batch.get(k))), None)
        return inputs, targets
    if isinstance(batch, (tuple, list)) and len(batch) >= 2 and _is_tensor(batch[0]) and _is_tensor(batch[-1]):
        return batch[0], batch[-1]
    return (batch, None) if _is_tensor(batch) else (None, None)


def batch_facts(inputs: Any = None, targets: Any = None) -> dict[str, str]:
    """RunFacts fields a batch shows: ``inputs`` (token_ids, images, features) and ``task``
    (classification for integer class ids; float targets may be values or 0/1 labels: unknown)."""
    facts: dict[str, str] = {}
    if _is_tensor(inputs):
        if _integer(inputs):
            facts["inputs"] = "token_ids"
        elif inputs.ndim == 4:
            facts["inputs"] = "images"
        elif inputs.ndim == 2:
            facts["inputs"] = "features"
    if _is_tensor(targets) and _integer(targets):
        facts["task"] = "classification"
    return facts


# ------------------------------------------------------------------------------------------------
# The model, inspected on the first batch (the model room's checks: output layer, initialization).

# inspect_model runs a deep copy (lossdoctor never runs the user's own model): the copy's memory is
# 4 bytes per parameter. Up to 100 million parameters (400 MB) that is small beside what training
# the model takes; a larger model is inspected only when the user asks (check_model=True).
MODEL_CHECK_MAX_PARAMETERS = 100_000_000


def torch_model_facts(model: Any, inputs: Any, targets: Any = None, optimizer: Any = None,
                      check: bool | str = "auto", loss_fn: Any = None) -> Any:
    """``ModelFacts`` of a torch model observed on a copy with the first batch (before any update,
    so that its initialization is judged), or None when not asked or too large for ``"auto"``.
    ``loss_fn``: the loss the user applies to the model's output, when known."""
    if check is False or inputs is None:
        return None
    if check == "auto" and sum(p.numel() for p in model.parameters()) > MODEL_CHECK_MAX_PARAMETERS:
        return None
    from ..model.inspect import inspect_model

    try:
        return inspect_model(model, sample_input=inputs, loss_fn=loss_fn, targets=targets, optimizer=optimizer)
    except InputError:  # its forward does not take the batch's inputs (a LightningModule without one)
        return inspect_model(model, loss_fn=loss_fn, targets=targets, optimizer=optimizer)


# ------------------------------------------------------------------------------------------------
# The training data, sampled at report time for the data room's checks (no signal, label noise,
# class imbalance, scales, NaN/Inf): the same path as checkup's (load_examples, input_matrix,
# profile_data), on a bounded, seeded sample of rows.

# Rows read from the training data. The data room fits its baseline and label-noise models on at
# most BASELINE_MAX_ROWS (4,000) rows whatever it is given, and its scale statistics and class counts
# are settled by a few thousand rows; reading more would only cost the user's __getitem__ and collate
# calls (file reads, tokenization) at the end of training.
DATA_SAMPLE_ROWS = 4000
# The seed of that sample: the same rows on every machine and every run (a generator of its own,
# never the user's global RNGs).
DATA_SAMPLE_SEED = 0


@contextlib.contextmanager
def untouched_rngs():
    """Restore Python's, numpy's and torch's global RNG states (CPU and initialized CUDA devices) on
    exit: a dataset's __getitem__ or a collate function may draw random numbers (augmentations), and
    reading the data for the report must not shift the user's next random draw."""
    import random

    python_state, numpy_state = random.getstate(), np.random.get_state()
    torch = sys.modules.get("torch")
    torch_state = torch.get_rng_state() if torch is not None else None
    cuda_states = torch.cuda.get_rng_state_all() if torch is not None and torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        if torch_state is not None:
            torch.set_rng_state(torch_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)


def _bounded_data(data: Any, rng: np.random.Generator) -> tuple[Any, list[str]]:
    """``data`` with at most DATA_SAMPLE_ROWS items left to read: a DataLoader's dataset is read by
    index (its sampler, workers and iterators are never touched); column data (tensors, arrays, a
    TensorDataset) is indexed directly and left whole."""
    import torch
    from torch.utils.data import DataLoader, IterableDataset, Subset, TensorDataset

    from ..probes.batches import _columns, _hf_dataset

    loader = data if isinstance(data, DataLoader) else None
    dataset = loader.dataset if loader is not None else data
    if isinstance(dataset, IterableDataset):
        raise InputError("an iterable dataset can only be read by iterating it, which would consume the rows "
                         "training draws; pass data=(X, y) or a map-style Dataset to have the data checked")
    if isinstance(dataset, TensorDataset) or _columns(dataset, "data") is not None or isinstance(dataset, torch.Tensor):
        return data, []
    try:
        n = len(dataset)
    except TypeError:
        raise InputError(f"{type(dataset).__name__} has no len(): its rows cannot be sampled without "
                         "iterating it") from None
    if n <= DATA_SAMPLE_ROWS:
        return data, []
    rows = np.sort(rng.choice(n, DATA_SAMPLE_ROWS, replace=False)).tolist()
    sample = dataset.select(rows) if _hf_dataset(dataset) else Subset(dataset, rows)
    notes = [f"data checks on a seeded sample of {DATA_SAMPLE_ROWS} of the {n} training rows"]
    if loader is None:
        return sample, notes
    # a loader that is never iterated: it only carries the user's collate function to load_examples
    return DataLoader(sample, batch_size=loader.batch_size or 1, collate_fn=loader.collate_fn), notes


def training_data_facts(data: Any, notes: list[str]) -> Any:
    """``DataFacts`` of a seeded sample of at most DATA_SAMPLE_ROWS training rows (``data``: a
    DataLoader, a Dataset, ``(X, y)`` or a dict of columns), or None with the reason in ``notes``.
    The user's data, loader and global RNGs are left as they were; a failure becomes a note
    (``LOSSDOCTOR_STRICT=1`` raises lossdoctor's own bugs)."""
    if data is None:
        notes.append("data checks skipped: the training data was not found (several loaders, or none): pass data=")
        return None
    try:
        import torch

        from ..data import profile_data
        from ..probes.batches import input_matrix, load_examples, split_batch

        rng = np.random.default_rng(DATA_SAMPLE_SEED)
        with untouched_rngs():
            bounded, sample_notes = _bounded_data(data, rng)
            examples, _, load_notes = load_examples(bounded, "training data")
            rows = np.arange(examples.n)
            if examples.n > DATA_SAMPLE_ROWS:
                rows = np.sort(rng.choice(examples.n, DATA_SAMPLE_ROWS, replace=False))
                sample_notes = [f"data checks on a seeded sample of {DATA_SAMPLE_ROWS} of the {examples.n} "
                                "training rows"]
            batch = examples.batch(torch.as_tensor(rows, dtype=torch.long))
        notes += sample_notes + load_notes
        X = input_matrix(batch)
        if X is None:
            notes.append("data checks skipped: the batches hold no single input tensor to profile")
            return None
        _, y = split_batch(batch)
        y = y.detach().cpu() if isinstance(y, torch.Tensor) and y.dim() > 0 and y.shape[0] == X.shape[0] else None
        # integer inputs are token ids or category codes, as checkup reads them: no scale to judge,
        # and a baseline on raw ids would prove nothing
        return profile_data(X, y, inputs=None if X.dtype.is_floating_point else "token_ids")
    except InputError as exc:
        notes.append(f"data checks skipped: {exc}")
    except ImportError as exc:  # a Keras backend without torch, or scikit-learn missing
        notes.append(f"data checks skipped: not available ({exc})")
    except Exception as exc:  # noqa: BLE001 - reading the data must never break the user's training
        if os.environ.get(STRICT_ENV):
            raise
        report_internal_error("data checks at the end of training", exc)
        notes.append(f"data checks skipped: lossdoctor's own error ({type(exc).__name__}: {exc})")
    return None


def data_metadata(facts: Any, notes: list[str]) -> dict[str, Any]:
    """What the report says of the data it checked (rows read, what was sampled or skipped)."""
    if facts is None:
        return {"checked": False, "notes": list(notes)}
    return {"checked": True, "rows": facts.n_rows, "rows_profiled": facts.rows_profiled,
            "rows_baseline": facts.rows_baseline, "inputs": facts.inputs,
            "task": facts.target.task if facts.target is not None else None, "notes": list(notes) + facts.notes}


# ------------------------------------------------------------------------------------------------
# Leaving the report where users look: files, the framework's loggers, Weights & Biases.


class ReportNotWrittenWarning(UserWarning):
    """A report file could not be written (a path the user gave); training is not affected."""


def output_path(path: Any, option: str) -> str | None:
    """A report path given as ``html=`` / ``json=``, checked when the callback is made (before
    training starts) so that a wrong argument fails at once, not after hours of training."""
    if path is None:
        return None
    if not isinstance(path, (str, os.PathLike)):
        raise InputError(f"{option}= must be a file path (str or os.PathLike), got {type(path).__name__}")
    path = os.fspath(path)
    if os.path.isdir(path):
        raise InputError(f"{option}={path!r} is a directory; give a file path, e.g. "
                         f"{os.path.join(path, 'lossdoctor.' + option)!r}")
    return path


def write_report_files(report: Report, html: str | None = None, json: str | None = None) -> list[str]:
    """Write the report as a self-contained HTML page and/or JSON; returns the paths written. A path
    that cannot be written gives a ``ReportNotWrittenWarning``, never an exception."""
    written = []
    for path, render in ((html, report.to_html), (json, report.to_json)):
        if path is None:
            continue
        text = render()
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text, encoding="utf-8")
        except OSError as exc:
            warnings.warn(f"lossdoctor: could not write the report to {path}: {exc}", ReportNotWrittenWarning,
                          stacklevel=2)
            continue
        written.append(path)
    return written


def leave_report(report: Report, *, html: str | None = None, json: str | None = None,
                 wandb: bool = True) -> None:
    """The report at the end of training: the files asked for, and the active W&B run if any."""
    write_report_files(report, html, json)
    if wandb:
        write_to_wandb(report)


def summary_fields(report: Report, prefix: str = "lossdoctor") -> dict[str, Any]:
    """The verdict and the finding to fix first as text (and the counts by severity), for a run's
    summary or a logger's hyper-parameters: nothing here is a metric to plot against steps."""
    top = report.top
    return {
        f"{prefix}/verdict": report.verdict or "none",
        f"{prefix}/top_finding": top.code if top is not None else "none",
        f"{prefix}/top_severity": top.severity if top is not None else "none",
        f"{prefix}/top_title": top.title if top is not None else "",
        f"{prefix}/top_remedy": top.remedy if top is not None else "",
        f"{prefix}/codes": ",".join(dict.fromkeys(report.codes)),
        f"{prefix}/errors": sum(f.severity == "error" for f in report.findings),
        f"{prefix}/warnings": sum(f.severity == "warning" for f in report.findings),
    }


def report_markdown(report: Report) -> str:
    """The report as short Markdown (TensorBoard's and MLflow's text views render it): the verdict,
    the finding to fix first with its remedy, then every finding, symptoms under their cause."""
    lines = [f"**verdict:** `{report.verdict or 'none'}`", ""]
    top = report.top
    if top is not None:
        where = f" ({top.where})" if top.where else ""
        lines += [f"**fix first:** `{top.code}`{where}: {top.title}", "", f"*Remedy:* {top.remedy}", ""]
    for f in report.findings:
        where = f" ({f.where})" if f.where else ""
        under = f" *(explained by `{f.explained_by}`)*" if f.explained_by else ""
        lines.append(f"- **{f.severity}** `{f.code}`{where}: {f.title}{under}")
    if not report.findings:
        lines.append("- no findings")
    return "\n".join(lines)


REPORT_TEXT_TAG = "lossdoctor/report"


def write_tensorboard_text(log_dir: str, report: Report, step: int = 0) -> None:
    """The report as a text entry in a TensorBoard log directory (a new event file beside the
    framework's own: TensorBoard reads every event file of a run directory)."""
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(log_dir) as writer:
        writer.add_text(REPORT_TEXT_TAG, report_markdown(report), step)


# MLflow caps a tag's value (5000 characters in its file and SQL stores); a remedy is far shorter,
# but a title quoting many layers could pass it.
MLFLOW_TAG_CHARS = 5000
MLFLOW_REPORT_FILE = "lossdoctor/report.md"


def write_to_mlflow(client: Any, run_id: str, report: Report) -> None:
    """The summary fields as tags of an MLflow run and the report as its Markdown text artifact
    (``client`` an ``mlflow.MlflowClient``; the run may have ended already)."""
    for key, value in summary_fields(report).items():
        client.set_tag(run_id, key, str(value)[:MLFLOW_TAG_CHARS])
    client.log_text(run_id, report_markdown(report), MLFLOW_REPORT_FILE)


def active_wandb_run() -> Any:
    """The W&B run the user started (``wandb.init`` or a framework's W&B logger), or None. wandb is
    never imported here: a process that did not import it has no run."""
    wandb = sys.modules.get("wandb")
    return getattr(wandb, "run", None) if wandb is not None else None


WANDB_TABLE_KEY = "lossdoctor/findings"
WANDB_COLUMNS = ["rank", "code", "severity", "confidence", "where", "title", "remedy", "explained_by"]


def write_to_wandb(report: Report) -> bool:
    """The verdict and the top finding into the active W&B run's summary, and every finding as a
    ``wandb.Table``; False when no run is active."""
    run = active_wandb_run()
    if run is None:
        return False
    wandb = sys.modules["wandb"]
    run.summary.update(summary_fields(report))
    rows = [[i, f.code, f.severity, round(float(f.confidence), 3), f.where or "", f.title, f.remedy,
             f.explained_by or ""] for i, f in enumerate(report.findings, 1)]
    run.log({WANDB_TABLE_KEY: wandb.Table(columns=WANDB_COLUMNS, data=rows)})
    return True


def calling_instance(cls: type, depth: int = 8) -> Any:
    """The instance of ``cls`` (a framework's list of callbacks) whose method is running this hook,
    found on the call stack; None when not found. Frameworks give a callback no handle on its
    neighbours (the Trainer's TensorBoard writer, Keras' TensorBoard callback); the list that calls
    the hook holds them."""
    frame = sys._getframe(1)
    for _ in range(depth):
        if frame is None:
            return None
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, cls):
            return candidate
        frame = frame.f_back
    return None




def is_finite_number(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
