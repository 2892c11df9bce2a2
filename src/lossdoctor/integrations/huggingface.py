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
* at the end of training, reads a seeded sample of at most 4,000 rows of the training data (the
  ``train_dataloader``'s dataset, read by index through the data collator: its sampler and
  iterators are never touched, the global RNGs are restored) for the data room's checks (no
  signal, label noise, class imbalance, scales, NaN/Inf);
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
from ..evidence import TRAIN_LOSS, Curves, RunFacts
from ..findings import Report
from ..internal import report_internal_error
from ..logs.huggingface import read_trainer_state
from ..monitor.watcher import _Hook
from ._common import (
    CurveRecorder,
    WatchOwner,
    assemble_report,
    batch_facts,
    calling_instance,
    data_metadata,
    guarded,
    is_finite_number,
    leave_report,
    output_path,
    require,
    split_batch,
    start_watch,
    torch_model_facts,
    training_data_facts,
    write_tensorboard_text,
    write_to_mlflow,
)

require("transformers", "lossdoctor[huggingface]")
import torch
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


def _loss_of(output: Any) -> Any:
    """The loss tensor of a model output (a ModelOutput, a dict, or a tuple starting with it)."""
    loss = output.get("loss") if isinstance(output, Mapping) else getattr(output, "loss", None)
    if loss is None and isinstance(output, (tuple, list)) and output:
        loss = output[0]
    return loss if isinstance(loss, torch.Tensor) and loss.numel() == 1 else None


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
        check_model: inspect the model on a copy with the first batch, before the first update (output
            layer against the loss and the labels, initialization): "auto" up to 100 million
            parameters, True, or False.
        check_data: at the end of training, check a seeded sample of the training data (the data
            room: no signal, label noise, class imbalance, scales; a few seconds of CPU). ``data=``
            gives the data to check instead of the Trainer's training dataloader (a DataLoader, a
            Dataset or ``(X, y)``).
        html / json: paths to write the report to at the end of training (main process).
        wandb: write the findings to the active Weights & Biases run, if any (main process).
        tensorboard: passed to ``lossdoctor.watch`` (a log dir for its histograms).
        **watch_kwargs: anything else ``lossdoctor.watch`` takes.
    """

    def __init__(self, every: int | None = None, *, watch_model: bool = True, halt_on_nan: bool = False,
                 print_report: bool = True, log_report: bool = True, check_model: bool | str = "auto",
                 check_data: bool = True, data: Any = None, html: str | None = None, json: str | None = None, wandb: bool = True, tensorboard: str | None = None,
                 **watch_kwargs: Any) -> None:
        if every is not None and every < 1:
            raise ValueError(f"every must be a positive number of steps, got {every}")
        self.every = every
        self.watch_model, self.halt_on_nan, self.print_report = watch_model, halt_on_nan, print_report
        self.log_report, self.check_model = log_report, check_model
        self.check_data, self.data = bool(check_data), data
        self.html, self.json, self.wandb = output_path(html, "html"), output_path(json, "json"), bool(wandb)
        self.tensorboard, self.watch_kwargs = tensorboard, watch_kwargs
        self.report: Report | None = None
        self.halted_at: int | None = None
        self._watch = None
        self._forward_hook = None
        self._observed: dict[str, Any] = {}
        self._first_batch: Any = None  # the first training batch, until the model is inspected on it
        self._model_facts = None
        self._step_loss: Any = None  # the training forwards' loss since the last optimizer step (a tensor)
        self._step_forwards = 0
        self._recorder = CurveRecorder()  # the loss of every optimizer step, as the model returned it
        self._trackers: list[Any] = []
        self._mlflow_run_id: str | None = None

    @guarded("huggingface")
    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs) -> None:
        self.report, self.halted_at, self._observed = None, None, {}
        self._first_batch, self._model_facts = None, None
        self._close_watch()
        handler = calling_instance(CallbackHandler)
        self._trackers = list(handler.callbacks) if handler is not None else []
        self._mlflow_run_id = self._active_mlflow_run_id()
        self._step_loss, self._step_forwards = None, 0
        self._recorder = CurveRecorder()
        if model is not None:
            # a hook that turns inert in a deep copy of the model (EMA, checkpoints, the inspection's copy)
            self._forward_hook = model.register_forward_hook(_Hook(self._observe_forward), with_kwargs=True)
        if self.watch_model and model is not None:
            # Every rank watches: the watch's read-outs may be collectives every rank must enter.
            every = self.every or DEFAULT_EVERY
            self._watch = start_watch(model, _raw_optimizer(optimizer), every=every,
                                      tensorboard=self.tensorboard, **self.watch_kwargs)

    def _observe_forward(self, module, args, kwargs, output) -> None:
        """Each training forward's loss (a reference to the tensor: no synchronisation), handed to the
        watch once per optimizer step; on the first one, the labels and logits by dtype and shape."""
        try:
            if not (module.training and torch.is_grad_enabled()):
                return  # evaluation
            if not self._observed:
                inputs, targets = split_batch(kwargs)
                if inputs is None and args:
                    inputs = args[0]
                self._observed = {**batch_facts(inputs, targets), "width": _logits_width(output)}
                self._first_batch = (args, dict(kwargs))  # inspected before the first update
            loss = _loss_of(output)
            if loss is not None:
                loss = loss.detach()
                self._step_loss = loss if self._step_loss is None else self._step_loss + loss
                self._step_forwards += 1
        except Exception as exc:  # noqa: BLE001 - an observation must never break the forward pass
            report_internal_error("huggingface: reading a training forward", exc)

    def _remove_forward_hook(self) -> None:
        hook, self._forward_hook = self._forward_hook, None
        if hook is not None:
            hook.remove()

    def _close_watch(self) -> None:
        self._remove_forward_hook()
        super()._close_watch()

    @staticmethod
    def _active_mlflow_run_id() -> str | None:
        mlflow = sys.modules.get("mlflow")  # only a run the Trainer's MLflowCallback (or the user) started
        run = mlflow.active_run() if mlflow is not None and hasattr(mlflow, "active_run") else None
        return run.info.run_id if run is not None else None

    @guarded("huggingface")
    def on_pre_optimizer_step(self, args, state, control, model=None, optimizer=None, **kwargs) -> None:
        batch, self._first_batch = self._first_batch, None
        if batch is None or model is None:
            return
        positional, keywords = batch
        inputs = keywords if keywords else (positional[0] if len(positional) == 1 else positional)
        self._model_facts = torch_model_facts(model, inputs, split_batch(keywords)[1], _raw_optimizer(optimizer),
                                              self.check_model)

    @guarded("huggingface")
    def on_step_end(self, args, state, control, **kwargs) -> None:
        loss, self._step_loss = self._step_loss, None
        forwards, self._step_forwards = self._step_forwards, 0
        if loss is not None:  # the mean over the step's micro-batches, at the step the Trainer logs it
            loss = loss / forwards
            self._recorder.add(TRAIN_LOSS, state.global_step, loss)
            if state.global_step % (self.every or DEFAULT_EVERY) == 0:
                self._recorder.flush()  # one transfer per read-out interval, not one per step
        if self._watch is None:
            return
        if loss is not None:
            self._watch.step(loss)
        elif self._watch.optimizer is None:
            self._watch.step()  # the watch counts the step itself

    @guarded("huggingface")
    def on_log(self, args, state, control, logs=None, **kwargs) -> None:
        if not self.halt_on_nan or not logs:
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
        per_step = self._recorder.to_curves(run=name, source="transformers").train
        if per_step is not None and len(per_step) > len(curves.train or ()):
            # every step's own loss rather than the logged means over logging_steps (which blur a
            # blow-up into its first point and, with logging_nan_inf_filter, hide a NaN)
            curves.series[TRAIN_LOSS] = per_step
            curves.meta["train_loss"] = "the model's loss at every optimizer step"
        clip = args.max_grad_norm if args.max_grad_norm and args.max_grad_norm > 0 else None
        raw = _raw_optimizer(optimizer)
        run = RunFacts.of_torch("huggingface", model, raw, clip, **_hf_task(model, self._observed))
        # the rate the user set: a schedule keeps it as each group's initial_lr (the optimizer's own
        # rate has decayed by the end of training)
        initial = [float(g["initial_lr"]) for g in getattr(raw, "param_groups", []) if "initial_lr" in g]
        if initial:
            run.lr = max(initial)
        metadata = {"framework": "transformers", "global_step": state.global_step, "halted_at_step": self.halted_at,
                    **meta}
        data = None
        if self.check_data:
            notes: list[str] = []
            data = training_data_facts(self.data if self.data is not None else kwargs.get("train_dataloader"), notes)
            metadata["data"] = data_metadata(data, notes)
        self.report = assemble_report(curves, stats, source="transformers", run=run, model=self._model_facts,
                                      data=data, metadata=metadata)
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
