"""lossdoctor for the Hugging Face ``transformers.Trainer``: ``Trainer(..., callbacks=[LossDoctorCallback()])``.

What it does during ``trainer.train()``:

* watches the model with :func:`lossdoctor.watch` (NaN origin, gradient health, logit overflow);
  the Trainer clips with ``torch.nn.utils.clip_grad_norm_`` (through accelerate), which the watch
  observes, so ``optim.clipping_masks_lr`` is judged against ``args.max_grad_norm``;
* at the end of training, reads ``state.log_history`` (``loss``, ``eval_loss``, ``grad_norm``,
  ``learning_rate``) into the same curve analysis as ``lossdoctor diagnose``. The learning-rate
  schedule is part of the curves, and the warm-up length (``args.warmup_steps``, a count or a ratio)
  goes into ``Curves.meta``, so a divergence right after warm-up is reported as ``optim.lr_too_high``;
* keeps the Report as ``callback.report`` and prints it on the main process.

Note: with ``args.logging_nan_inf_filter`` (the default) the Trainer replaces NaN/Inf training
losses by the mean of the finite ones before logging them, so the logged loss may look finite.
The watch still sees the NaN (``grad.non_finite``), and so does the logged ``grad_norm``.
"""
from __future__ import annotations

from typing import Any

from ..errors import LogFormatError
from ..evidence import Curves, RunFacts
from ..findings import Report
from ..logs.huggingface import read_trainer_state
from ._common import (
    assemble_report,
    guarded,
    is_finite_number,
    require,
    start_watch,
    WatchOwner,
)

require("transformers", "lossdoctor[huggingface]")
from transformers import TrainerCallback  # noqa: E402


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


class LossDoctorCallback(WatchOwner, TrainerCallback):
    """Diagnose a ``transformers.Trainer`` run; the Report is ``callback.report`` after ``train()``.

    Args:
        every: the watch instruments one optimizer step in this many and reads out then (default 50).
        watch_model: hook the model with :func:`lossdoctor.watch` (False: curves only).
        halt_on_nan: stop training once a logged loss or gradient norm is NaN/Inf.
        print_report: print the report at the end of training (main process).
        tensorboard: passed to ``lossdoctor.watch`` (a log dir for its histograms).
        **watch_kwargs: anything else ``lossdoctor.watch`` takes.
    """

    def __init__(self, every: int | None = None, *, watch_model: bool = True, halt_on_nan: bool = False,
                 print_report: bool = True, tensorboard: str | None = None, **watch_kwargs: Any) -> None:
        if every is not None and every < 1:
            raise ValueError(f"every must be a positive number of steps, got {every}")
        self.every = every
        self.watch_model, self.halt_on_nan, self.print_report = watch_model, halt_on_nan, print_report
        self.tensorboard, self.watch_kwargs = tensorboard, watch_kwargs
        self.report: Report | None = None
        self.halted_at: int | None = None
        self._watch = None

    @guarded("huggingface")
    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs) -> None:
        self.report, self.halted_at = None, None
        self._close_watch()
        if self.watch_model and model is not None:
            # Every rank watches: the watch's read-outs may be collectives every rank must enter.
            every = self.every or DEFAULT_EVERY
            self._watch = start_watch(model, _raw_optimizer(optimizer), every=every,
                                      tensorboard=self.tensorboard, **self.watch_kwargs)

    @guarded("huggingface")
    def on_step_end(self, args, state, control, **kwargs) -> None:
        if self._watch is not None and self._watch.optimizer is None:
            self._watch.step()

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
                "max_grad_norm": args.max_grad_norm, "lr_scheduler_type": str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)),
                "logging_nan_inf_filter": bool(args.logging_nan_inf_filter)}
        run = type(model).__name__ if model is not None else "trainer"
        curves = curves_from_log_history(state.log_history, run=run, meta=meta)
        clip = args.max_grad_norm if args.max_grad_norm and args.max_grad_norm > 0 else None
        run = RunFacts.of_torch("huggingface", model, _raw_optimizer(optimizer), clip)
        self.report = assemble_report(
            curves, stats, source="transformers", run=run,
            metadata={"framework": "transformers", "global_step": state.global_step,
                      "halted_at_step": self.halted_at, **meta})
        if self.print_report and state.is_world_process_zero:
            self.report.print()




__all__ = ["LossDoctorCallback", "curves_from_log_history"]
