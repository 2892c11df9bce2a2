"""lossdoctor for PyTorch Lightning: ``Trainer(callbacks=[LossDoctorCallback()])``.

What it does during ``trainer.fit``:

* watches the LightningModule with :func:`lossdoctor.watch` (NaN origin, gradient health, logit
  overflow, clipping), with Lightning's own ``gradient_clip_val`` declared as ``max_norm``;
* records the training loss of every step (the ``loss`` a ``training_step`` returns), the
  validation loss Lightning logged (``trainer.callback_metrics``), the learning rate, and the total
  gradient norm *before* Lightning clips it (``on_before_optimizer_step`` runs before clipping);
* reads the first batch's dtypes (class-id targets, token-id inputs) so that the report knows a
  classifier from a regression and its chance level (ln K for K output units), and inspects the
  model on a copy with that batch before the first update (the model room's checks: initialization,
  output layer against the targets);
* hands every step's loss to the watch (its spike and warm-up evidence);
* at the end of fit, reads a seeded sample of at most 4,000 rows of the training data (the
  ``train_dataloader``'s dataset, read by index through its collate function: its sampler and
  iterators are never touched, the global RNGs are restored) for the data room's checks (no
  signal, label noise, class imbalance, scales, NaN/Inf);
* at the end of fit, judges the curves, the watch's read-out and the run's facts through the same
  registry and differential as every other entry point, keeps the Report as ``callback.report``,
  prints it, writes it as HTML/JSON when asked (``html=``, ``json=``), writes the verdict and the
  finding to fix first to the Trainer's loggers as text (TensorBoard ``add_text``, MLflow text and
  tags, the other loggers as hyper-parameters: CSVLogger's ``hparams.yaml``), and to the active
  Weights & Biases run (summary fields and a ``wandb.Table``).

Under DDP every rank records and watches (the watch's read-outs may be collectives that every rank
must enter); only global rank 0 prints and logs. ``halt_on_nan`` stops all ranks together through
``strategy.reduce_boolean_decision``, called by every rank at the same steps, so it cannot deadlock.
"""
from __future__ import annotations

import math
from typing import Any

from ..evidence import GRAD_NORM, LEARNING_RATE, TRAIN_LOSS, VAL_LOSS, RunFacts
from ..findings import Report
from ._common import (
    REPORT_TEXT_TAG,
    CurveRecorder,
    WatchOwner,
    assemble_report,
    batch_facts,
    data_metadata,
    guarded,
    leave_report,
    output_path,
    report_markdown,
    require,
    split_batch,
    start_watch,
    summary_fields,
    torch_model_facts,
    training_data_facts,
    write_to_mlflow,
)

require("lightning", "lossdoctor[lightning]")
import lightning.pytorch as pl  # noqa: E402
import torch  # noqa: E402

# Names under which Lightning users commonly log their validation / training loss, in the order
# they are tried when no key is given (Lightning appends _epoch / _step when on_step and on_epoch).
VAL_LOSS_KEYS = ("val_loss", "val/loss", "valid_loss", "validation_loss", "val_loss_epoch", "loss/val")
TRAIN_LOSS_KEYS = ("train_loss", "train/loss", "train_loss_step", "loss/train", "loss")


def _find_key(metrics: dict, given: str | None, candidates: tuple[str, ...], must_contain: str) -> str | None:
    if given is not None:
        return given if given in metrics else None
    for key in candidates:
        if key in metrics:
            return key
    for key in metrics:  # e.g. "val_cross_entropy": a loss logged under a name of the user's own
        low = key.lower()
        if must_contain in low and "loss" in low:
            return key
    return None


def _loss_from_outputs(outputs: Any):
    if isinstance(outputs, torch.Tensor):
        return outputs
    if isinstance(outputs, dict) and isinstance(outputs.get("loss"), torch.Tensor):
        return outputs["loss"]
    return None


def _total_grad_norm(module: torch.nn.Module):
    """The 2-norm of all gradients, as a tensor on their device (no host synchronisation)."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return None
    by_device: dict[torch.device, list[torch.Tensor]] = {}
    for g in grads:
        by_device.setdefault(g.device, []).append(g)
    norms = [torch.linalg.vector_norm(torch.stack(torch._foreach_norm(gs)).float())
             for gs in by_device.values()]
    first = norms[0].device
    return torch.linalg.vector_norm(torch.stack([n.to(first) for n in norms]))


def _train_data(trainer: pl.Trainer) -> Any:
    """The DataLoader fit trained on (the ``train_dataloaders`` given to fit or the datamodule's, as
    Lightning loaded it: no user hook is called again); None when there were several (a dict or list
    of loaders: which one holds the task is not evident)."""
    loaders = trainer.train_dataloader
    return loaders if isinstance(loaders, torch.utils.data.DataLoader) else None


class LossDoctorCallback(WatchOwner, pl.Callback):
    """Diagnose a Lightning run while it trains; the Report is ``callback.report`` after ``fit``.

    Args:
        every: read out the watch and check for NaN every this many training batches.
        val_key / train_key: the ``self.log`` names of the validation / training loss; found
            automatically when left out (``val_loss``, ``val/loss``, ...).
        watch_model: hook the model with :func:`lossdoctor.watch` (set False for curves only).
        halt_on_nan: stop training (all ranks) once the training loss is NaN/Inf.
        print_report: print the report at the end of fit (rank 0).
        log_report: write the verdict and the finding to fix first to the Trainer's loggers (rank 0).
        check_model: inspect the model on a copy with the first batch (output layer against the
            targets, initialization): "auto" up to 100 million parameters, True, or False.
        check_data: at the end of fit, check a seeded sample of the training data (the data room:
            no signal, label noise, class imbalance, scales; a few seconds of CPU). ``data=`` gives
            the data to check instead of the Trainer's ``train_dataloader`` (a DataLoader, a
            Dataset or ``(X, y)``).
        html / json: paths to write the report to at the end of fit (rank 0).
        wandb: write the findings to the active Weights & Biases run, if any (rank 0).
        tensorboard: passed to ``lossdoctor.watch`` (a log dir for its histograms).
        **watch_kwargs: anything else ``lossdoctor.watch`` takes.
    """

    def __init__(self, every: int = 50, *, val_key: str | None = None, train_key: str | None = None,
                 watch_model: bool = True, halt_on_nan: bool = False, print_report: bool = True,
                 log_report: bool = True, check_model: bool | str = "auto", check_data: bool = True,
                 data: Any = None, html: str | None = None, json: str | None = None, wandb: bool = True,
                 tensorboard: str | None = None, **watch_kwargs: Any) -> None:
        super().__init__()
        if every < 1:
            raise ValueError(f"every must be a positive number of batches, got {every}")
        self.every = int(every)
        self.val_key, self.train_key = val_key, train_key
        self.watch_model, self.halt_on_nan = watch_model, halt_on_nan
        self.print_report, self.log_report, self.check_model = print_report, log_report, check_model
        self.check_data, self.data = bool(check_data), data
        self.html, self.json, self.wandb = output_path(html, "html"), output_path(json, "json"), bool(wandb)
        self.tensorboard, self.watch_kwargs = tensorboard, watch_kwargs
        self.report: Report | None = None
        self.halted_at: int | None = None
        self._recorder = CurveRecorder()
        self._watch = None
        self._batches = 0
        self._max_norm: float | None = None
        self._batch_facts: dict[str, str] | None = None
        self._model_facts = None

    # -- set-up ----------------------------------------------------------------------------
    @guarded("lightning")
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.report, self.halted_at, self._batches, self._batch_facts = None, None, 0, None
        self._model_facts = None
        self._recorder = CurveRecorder()
        clip = trainer.gradient_clip_val
        algorithm = str(trainer.gradient_clip_algorithm or "norm").lower()
        # only norm clipping has a threshold comparable with the total gradient norm
        self._max_norm = float(clip) if clip and "norm" in algorithm else None
        if self.watch_model:
            optimizer = trainer.optimizers[0] if len(trainer.optimizers) == 1 else None
            # Lightning clips with torch.nn.utils.clip_grad_norm_, which the watch observes itself, and
            # steps through optimizer.step(closure), whose closure the watch wraps: its NaN check runs
            # after that step's backward. Its NaN replay never raises (a LightningModule's forward may
            # not be its training_step) and enters no collective, so every rank goes on together.
            self._watch = start_watch(pl_module, optimizer, every=self.every, tensorboard=self.tensorboard,
                                      **self.watch_kwargs)

    # -- every step ------------------------------------------------------------------------
    @guarded("lightning")
    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self._batch_facts is None:  # dtypes and shapes only: no synchronisation
            inputs, targets = split_batch(batch)
            self._batch_facts = batch_facts(inputs, targets)
            self._inspect(trainer, pl_module, inputs, targets)

    @guarded("lightning")
    def _inspect(self, trainer: pl.Trainer, pl_module: pl.LightningModule, inputs: Any, targets: Any) -> None:
        optimizer = trainer.optimizers[0] if len(trainer.optimizers) == 1 else None
        self._model_facts = torch_model_facts(pl_module, inputs, targets, optimizer, self.check_model)

    @guarded("lightning")
    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer) -> None:
        # Lightning clips right after this hook: the norm here is the one clipping compares with.
        step = trainer.global_step  # 0-based index of the update being made (Lightning's log step)
        self._recorder.add(GRAD_NORM, step, _total_grad_norm(pl_module))
        groups = getattr(optimizer, "param_groups", None)
        if groups:
            self._recorder.add(LEARNING_RATE, step, float(groups[0]["lr"]))

    @guarded("lightning")
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        loss = _loss_from_outputs(outputs)
        if loss is None:  # manual optimization or no loss returned: take what was logged
            key = _find_key(trainer.callback_metrics, self.train_key, TRAIN_LOSS_KEYS, "train")
            loss = trainer.callback_metrics.get(key) if key else None
        # global_step already counts this batch's update: its 0-based index is one less (the step
        # Lightning's own loggers write for a value logged in training_step)
        step = max(trainer.global_step - 1, 0)
        if loss is not None:
            self._recorder.add(TRAIN_LOSS, step, loss)
        if self._watch is not None and (loss is not None or self._watch.optimizer is None):
            # the loss joins the watch's view of the step (its spike and warm-up evidence); with several
            # optimizers the watch has none of its own and counts batches here instead of updates
            self._watch.step(loss)
        self._batches += 1
        if self._batches % self.every == 0:
            flushed = self._recorder.flush()
            if self.halt_on_nan:
                self._halt_if_non_finite(trainer, flushed)

    def _halt_if_non_finite(self, trainer: pl.Trainer, flushed: list) -> None:
        local = any(name == TRAIN_LOSS and not math.isfinite(v) for name, _, v in flushed)
        # every rank calls this at the same batch count, so the collective cannot deadlock
        if trainer.strategy.reduce_boolean_decision(local, all=False):
            trainer.should_stop = True
            self.halted_at = trainer.global_step

    @guarded("lightning")
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        key = _find_key(trainer.callback_metrics, self.val_key, VAL_LOSS_KEYS, "val")
        if key is not None:
            self._recorder.add(VAL_LOSS, max(trainer.global_step - 1, 0), trainer.callback_metrics[key])

    # -- the end ---------------------------------------------------------------------------
    @guarded("lightning")
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        stats = self._watch.stats() if self._watch is not None else None
        self._close_watch()
        curves = self._recorder.to_curves(
            run=type(pl_module).__name__, source="lightning",
            meta={"format": "lightning", "max_norm": self._max_norm, "max_steps": trainer.max_steps,
                  "accumulate_grad_batches": trainer.accumulate_grad_batches})
        metadata = {"framework": "lightning", "global_step": trainer.global_step,
                    "gradient_clip_val": self._max_norm, "world_size": trainer.world_size,
                    "halted_at_step": self.halted_at}
        optimizer = trainer.optimizers[0] if len(trainer.optimizers) == 1 else None
        run = RunFacts.of_torch("lightning", pl_module, optimizer, self._max_norm, **(self._batch_facts or {}))
        data = None
        if self.check_data:
            notes: list[str] = []
            data = training_data_facts(self.data if self.data is not None else _train_data(trainer), notes)
            metadata["data"] = data_metadata(data, notes)
        self.report = assemble_report(curves, stats, source="lightning", run=run, model=self._model_facts,
                                      data=data, metadata=metadata)
        if not trainer.is_global_zero:
            return
        if self.log_report:
            self._log(trainer, self.report)
        leave_report(self.report, html=self.html, json=self.json, wandb=self.wandb)
        if self.print_report:
            self.report.print()

    def _log(self, trainer: pl.Trainer, report: Report) -> None:
        """The verdict and the finding to fix first, as text, into every logger that takes text;
        the W&B logger's run gets them through ``leave_report`` (it is the active W&B run)."""
        step = trainer.global_step
        for logger in trainer.loggers:
            if isinstance(logger, pl.loggers.WandbLogger):
                continue
            if isinstance(logger, pl.loggers.TensorBoardLogger):
                logger.experiment.add_text(REPORT_TEXT_TAG, report_markdown(report), step)
            elif isinstance(logger, pl.loggers.MLFlowLogger):
                write_to_mlflow(logger.experiment, logger.run_id, report)
            else:  # CSVLogger and the rest: as hyper-parameters (CSVLogger writes them to hparams.yaml)
                logger.log_hyperparams(summary_fields(report))
            logger.save()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._close_watch()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._close_watch()



__all__ = ["LossDoctorCallback"]
