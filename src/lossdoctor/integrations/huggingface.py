"""lossdoctor for the Hugging Face ``transformers.Trainer``: ``Trainer(..., callbacks=[LossDoctorCallback()])``.

What it does during ``trainer.train()``:

* watches the model with :func:`lossdoctor.watch` (NaN origin, gradient health, logit overflow);
  the Trainer clips with ``torch.nn.utils.clip_grad_norm_`` (through accelerate), which the watch
  observes, so ``optim.clipping_masks_lr`` is judged against ``args.max_grad_norm``;
* at the end of training, reads ``state.log_history`` (``loss``, ``eval_loss``, ``grad_norm``,
  ``learning_rate``) into the same curve analysis as ``lossdoctor diagnose``. The learning-rate
  schedule is part of the curves, and the warm-up length (``args.warmup_steps``, a count or a ratio)
  goes into ``Curves.meta``, so a divergence right after warm-up is reported as ``optim.lr_too_high``;
* reads the first training batch's ``labels`` and the model's ``logits`` (dtypes and shapes only),
  so that a classifier's chance level (ln K for K labels) is known to the curve analysis;
* keeps the Report as ``callback.report``, prints it on the main process, writes it as HTML/JSON
  when asked (``html=``, ``json=``), writes the verdict and the finding to fix first to the
  Trainer's ``report_to`` trackers (TensorBoard: text beside the Trainer's own events; MLflow: tags
  and a ``lossdoctor/report.md`` text; W&B: see below), and to the active Weights & Biases run
  (summary fields and a ``wandb.Table``).

After a crash inside ``train()`` the Trainer gives callbacks no event: call ``callback.close()`` (or
train inside ``with callback:``) to take the watch's hooks off the model at once; otherwise they go
at the start of the next ``train()`` with this callback.

Note: with ``args.logging_nan_inf_filter`` (the default) the Trainer replaces NaN/Inf training
losses by the mean of the finite ones before logging them, so the logged loss may look finite.
The watch still sees the NaN (``grad.non_finite``), and so does the logged ``grad_norm``.
"""
from __future__ import annotations

import sys
from typing import Any, Mapping

from ..errors import LogFormatError
from ..evidence import Curves, RunFacts
from ..findings import Report
from ..internal import report_internal_error
from ..logs.huggingface import read_trainer_state
from ._common import (
    WatchOwner,
    assemble_report,
    batch_facts,
    calling_instance,
    guarded,
    is_finite_number,
    leave_report,
    output_path,
    require,
    split_batch,
    start_watch,
    write_tensorboard_text,
    write_to_mlflow,
)

require("transformers", "lossdoctor[huggingface]")
from transformers import TrainerCallback  # noqa: E402
from transformers.trainer_callback import CallbackHandler  # noqa: E402


# The watch instruments one step in this many: often enough to see a problem within a short run,
# rarely enough to keep its cost to a few percent (logging_steps is often 1-10, far too dense).
DEFAULT_EVERY = 50


def curves_from_log_history(log_history: list[dict[str, Any]], run: str = "trainer",
                            meta: dict[str, Any] | None = None) -> Curves:
    """The curves of a ``TrainerState.log_history``, read by the same reader as ``trainer_state.json``
    files (``lossdoctor diagnose``); empty curves when nothing was logged yet."""
    try:
        curves = read_trainer_state("TrainerState.log_history", obj={"log_history": list(log_history)}, run=run)
    except LogFormatError:  # no logged step (logging_steps longer than the run)
        curves = Curves(run=run, source="transformers")
    curves.source = "transformers"
    curves.meta.update(meta or {})
    return curves


def _raw_optimizer(optimizer: Any) -> Any:
    """The torch optimizer under accelerate's AcceleratedOptimizer (its step hooks are the ones that
    fire), or None when there is none (e.g. DeepSpeed's): the watch then counts ``on_step_end`` calls."""
    import torch

    while isinstance(getattr(optimizer, "optimizer", None), torch.optim.Optimizer):
        optimizer = optimizer.optimizer
    return optimizer if isinstance(optimizer, torch.optim.Optimizer) else None


def _logits_width(output: Any) -> int | None:
    """The class dimension of a model output's ``logits`` (a ModelOutput, a dict or a tuple)."""
    logits = output.get("logits") if isinstance(output, Mapping) else getattr(output, "logits", None)
    if logits is None and isinstance(output, (tuple, list)) and len(output) >= 2:
        logits = output[1]  # (loss, logits, ...) as models return with return_dict=False
    shape = getattr(logits, "shape", None)
    return int(shape[-1]) if shape is not None and len(shape) >= 2 else None


def _hf_task(model: Any, observed: dict[str, Any]) -> dict[str, Any]:
    """Task, class count and loss from the model's config (``problem_type``, set by the HF task
    models on their first forward) or, for any other model, from the first batch observed."""
    facts = {k: observed[k] for k in ("task", "inputs") if k in observed}
    config = getattr(model, "config", None)
    problem = getattr(config, "problem_type", None)
    if problem == "single_label_classification":
        facts.update(task="classification", num_classes=int(config.num_labels), loss="cross_entropy")
    elif problem == "regression":
        facts.update(task="regression", loss="mse")
    elif problem == "multi_label_classification":
        facts.update(task="multi_label", loss="bce_with_logits")
    elif facts.get("task") == "classification" and observed.get("width"):
        facts.update(num_classes=observed["width"], loss="cross_entropy")
    return facts


class LossDoctorCallback(WatchOwner, TrainerCallback):
    """Diagnose a ``transformers.Trainer`` run; the Report is ``callback.report`` after ``train()``.

    Args:
        every: the watch instruments one optimizer step in this many and reads out then (default 50).
        watch_model: hook the model with :func:`lossdoctor.watch` (False: curves only).
        halt_on_nan: stop training once a logged loss or gradient norm is NaN/Inf.
        print_report: print the report at the end of training (main process).
        log_report: write the verdict and the finding to fix first to the ``report_to`` trackers.
        html / json: paths to write the report to at the end of training (main process).
        wandb: write the findings to the active Weights & Biases run, if any (main process).
        tensorboard: passed to ``lossdoctor.watch`` (a log dir for its histograms).
        **watch_kwargs: anything else ``lossdoctor.watch`` takes.
    """

    def __init__(self, every: int | None = None, *, watch_model: bool = True, halt_on_nan: bool = False,
                 print_report: bool = True, log_report: bool = True, html: str | None = None,
                 json: str | None = None, wandb: bool = True, tensorboard: str | None = None,
                 **watch_kwargs: Any) -> None:
        if every is not None and every < 1:
            raise ValueError(f"every must be a positive number of steps, got {every}")
        self.every = every
        self.watch_model, self.halt_on_nan, self.print_report = watch_model, halt_on_nan, print_report
        self.log_report = log_report
        self.html, self.json, self.wandb = output_path(html, "html"), output_path(json, "json"), bool(wandb)
        self.tensorboard, self.watch_kwargs = tensorboard, watch_kwargs
        self.report: Report | None = None
        self.halted_at: int | None = None
        self._watch = None
        self._first_batch_hook = None
        self._observed: dict[str, Any] = {}
        self._trackers: list[Any] = []
        self._mlflow_run_id: str | None = None

    @guarded("huggingface")
    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs) -> None:
        self.report, self.halted_at, self._observed = None, None, {}
        self._close_watch()
        handler = calling_instance(CallbackHandler)
        self._trackers = list(handler.callbacks) if handler is not None else []
        self._mlflow_run_id = self._active_mlflow_run_id()
        if model is not None:
            self._first_batch_hook = model.register_forward_hook(self._observe_first_batch, with_kwargs=True)
        if self.watch_model and model is not None:
            # Every rank watches: the watch's read-outs may be collectives every rank must enter.
            every = self.every or DEFAULT_EVERY
            self._watch = start_watch(model, _raw_optimizer(optimizer), every=every,
                                      tensorboard=self.tensorboard, **self.watch_kwargs)

    def _observe_first_batch(self, module, args, kwargs, output) -> None:
        """The first training forward's labels and logits, by dtype and shape (no synchronisation)."""
        try:
            inputs, targets = split_batch(kwargs)
            if inputs is None and args:
                inputs = args[0]
            self._observed = {**batch_facts(inputs, targets), "width": _logits_width(output)}
        except Exception as exc:  # noqa: BLE001 - an observation must never break the forward pass
            report_internal_error("huggingface: reading the first batch", exc)
        finally:
            self._remove_first_batch_hook()

    def _remove_first_batch_hook(self) -> None:
        hook, self._first_batch_hook = self._first_batch_hook, None
        if hook is not None:
            hook.remove()

    def _close_watch(self) -> None:
        self._remove_first_batch_hook()
        super()._close_watch()

    @staticmethod
    def _active_mlflow_run_id() -> str | None:
        mlflow = sys.modules.get("mlflow")  # only a run the Trainer's MLflowCallback (or the user) started
        run = mlflow.active_run() if mlflow is not None and hasattr(mlflow, "active_run") else None
        return run.info.run_id if run is not None else None

    @guarded("huggingface")
    def on_step_end(self, args, state, control, **kwargs) -> None:
        if self._watch is not None and self._watch.optimizer is None:
            self._watch.step()

    @guarded("huggingface")
    def on_log(self, args, state, control, logs=None, **kwargs) -> None:
        if not logs:
            return
        if self._watch is not None and self._watch.optimizer is not None and "loss" in logs:
            # the logged loss (the mean since the last log) joins the watch's view of the step it ends
            self._watch.step(float(logs["loss"]))
        if not self.halt_on_nan:
            return
        bad = [key for key in ("loss", "grad_norm") if key in logs and not is_finite_number(logs[key])]
        if bad:  # logged values are already reduced over ranks: every rank stops at the same step
            control.should_training_stop = True
            self.halted_at = state.global_step

    @guarded("huggingface")
    def on_train_end(self, args, state, control, model=None, optimizer=None, **kwargs) -> None:
        stats = self._watch.stats() if self._watch is not None else None
        self._close_watch()
        warmup = args.get_warmup_steps(state.max_steps) if state.max_steps else None
        meta = {"format": "huggingface", "warmup_steps": warmup, "max_steps": state.max_steps,
                "max_grad_norm": args.max_grad_norm,
                "lr_scheduler_type": str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)),
                "logging_nan_inf_filter": bool(args.logging_nan_inf_filter)}
        name = type(model).__name__ if model is not None else "trainer"
        curves = curves_from_log_history(state.log_history, run=name, meta=meta)
        clip = args.max_grad_norm if args.max_grad_norm and args.max_grad_norm > 0 else None
        run = RunFacts.of_torch("huggingface", model, _raw_optimizer(optimizer), clip,
                                **_hf_task(model, self._observed))
        # the peak of the schedule is the rate the user set (the optimizer's rate has decayed by now)
        run.lr, run.weight_decay = float(args.learning_rate), float(args.weight_decay)
        self.report = assemble_report(
            curves, stats, source="transformers", run=run,
            metadata={"framework": "transformers", "global_step": state.global_step,
                      "halted_at_step": self.halted_at, **meta})
        if not state.is_world_process_zero:
            return
        if self.log_report:
            self._log_to_trackers(state.global_step)
        leave_report(self.report, html=self.html, json=self.json, wandb=self.wandb)
        if self.print_report:
            self.report.print()

    def _log_to_trackers(self, step: int) -> None:
        """The report into the trackers the Trainer reports to (``args.report_to``); W&B is written
        as the active run by ``leave_report``."""
        for tracker in self._trackers:
            kind = type(tracker).__name__
            if kind == "TensorBoardCallback" and getattr(tracker, "logging_dir", None):
                write_tensorboard_text(tracker.logging_dir, self.report, step)
            elif kind == "MLflowCallback" and self._mlflow_run_id is not None:
                from mlflow import MlflowClient

                write_to_mlflow(MlflowClient(), self._mlflow_run_id, self.report)


__all__ = ["LossDoctorCallback", "curves_from_log_history"]
