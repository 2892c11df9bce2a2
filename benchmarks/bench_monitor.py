"""What does watching a training loop cost? Median step time as a ratio to the bare loop.

CPU, 2 threads. Models: a CNN (3x32x32, batch 64, three 3x3 conv+ReLU+pool, two linear), an MLP
(784-512-512-10, batch 128), "tiny" (16-16-10, batch 8: almost no compute, so its "+us" column is
each tool's own cost per step), and mixed-precision runs: "bf16" is the MLP under
``torch.autocast("cpu", dtype=torch.bfloat16)`` (the same model as "mlp": the ratio between the two
rows is what mixed precision adds); "fp16" is a smaller MLP (256-256-256-10, batch 64: CPU float16
matmuls are emulated and slow) under float16 autocast with a ``torch.amp.GradScaler("cpu")``;
"bf16_small" is that smaller MLP under bfloat16 (a ~1 ms step, where lossdoctor's fixed per-step
cost, the "+us" column, shows most). Variants, interleaved step by step in a shuffled order so that load
from other processes hits all of them alike:

  bare            the plain loop
  lossdoctor      lossdoctor.watch(model, optimizer) with defaults, doctor.step(loss)
  detect_anomaly  torch.autograd.detect_anomaly() around forward and backward
  grad_norm_item  every parameter's gradient norm read with .item() every step
  tb_histograms   TensorBoard histograms of every parameter and gradient every step

(the mixed-precision runs compare bare and lossdoctor only). Columns: median step time, its ratio
to bare (the figure of merit), the added microseconds, the paired ratio (median over rounds of
variant/bare in the same round: robust to drifting load), and the ratio of means (which includes
lossdoctor's instrumented steps and read-outs).

Usage: python benchmarks/bench_monitor.py [--steps 200] [--models cnn,mlp,tiny,bf16,fp16,bf16_small] [--threads 2]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import sys
import tempfile
import time

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
import lossdoctor  # noqa: E402

WARMUP_STEPS = 15
ALL_VARIANTS = ["bare", "lossdoctor", "detect_anomaly", "grad_norm_item", "tb_histograms"]
AMP_VARIANTS = ["bare", "lossdoctor"]


def cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 4 * 4, 128), nn.ReLU(), nn.Linear(128, 10),
    )


def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                         nn.Linear(512, 10))


def tiny() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 10))


def small_mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))


# name -> (builder, input shape, autocast dtype or None)
MODELS = {"cnn": (cnn, (64, 3, 32, 32), None), "mlp": (mlp, (128, 784), None), "tiny": (tiny, (8, 16), None),
          "bf16": (mlp, (128, 784), torch.bfloat16), "fp16": (small_mlp, (64, 256), torch.float16),
          "bf16_small": (small_mlp, (64, 256), torch.bfloat16)}


class Loop:
    """One variant's model, optimizer and instrumentation; ``step()`` runs and times one step."""

    def __init__(self, variant: str, build, shape, dtype, tmp: str):
        torch.manual_seed(0)
        self.variant = variant
        self.model = build()
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
        self.dtype = dtype
        self.scaler = torch.amp.GradScaler("cpu") if dtype is torch.float16 else None
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(*shape, generator=g)
        self.y = torch.randint(0, 10, (shape[0],), generator=g)
        self.loss_fn = nn.CrossEntropyLoss()
        self.times: list[float] = []
        self.doctor = lossdoctor.watch(self.model, self.opt).start() if variant == "lossdoctor" else None
        self.writer = None
        self.step_index = 0
        if variant == "tb_histograms":
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(os.path.join(tmp, "tb"))
        self.named = list(self.model.named_parameters())

    def _autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast("cpu", dtype=self.dtype)

    def step(self, record: bool) -> None:
        t0 = time.perf_counter()
        if self.variant == "detect_anomaly":
            with torch.autograd.detect_anomaly():
                loss = self.loss_fn(self.model(self.x), self.y)
                loss.backward()
        else:
            with self._autocast():
                loss = self.loss_fn(self.model(self.x), self.y)
            (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        if self.variant == "grad_norm_item":
            self.norms = [p.grad.norm().item() for p in self.model.parameters()]
        if self.writer is not None:
            for name, p in self.named:
                self.writer.add_histogram(f"weights/{name}", p, self.step_index)
                self.writer.add_histogram(f"gradients/{name}", p.grad, self.step_index)
        if self.scaler is not None:
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt.step()
        self.opt.zero_grad()
        if self.doctor is not None:
            self.doctor.step(loss)
        self.step_index += 1
        if record:
            self.times.append(time.perf_counter() - t0)

    def close(self) -> None:
        if self.doctor is not None:
            self.doctor.close()
        if self.writer is not None:
            self.writer.close()


def bench(name: str, steps: int) -> dict[str, list[float]]:
    import warnings

    warnings.filterwarnings("ignore", message=".*Anomaly Detection.*")
    build, shape, dtype = MODELS[name]
    variants = AMP_VARIANTS if dtype is not None else ALL_VARIANTS
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        loops = [Loop(v, build, shape, dtype, tmp) for v in variants]
        for i in range(WARMUP_STEPS + steps):
            rng.shuffle(loops)
            for loop in loops:
                loop.step(record=i >= WARMUP_STEPS)
        for loop in loops:
            loop.close()
        report = next(lp.doctor for lp in loops if lp.doctor is not None).report()
    flagged = [f"{f.code} ({f.severity})" for f in report.warnings()]
    print(f"{name}: lossdoctor verdict {report.verdict}; warnings: {', '.join(flagged) or 'none'}")
    return {lp.variant: lp.times for lp in loops}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="measured steps per variant (default 200)")
    parser.add_argument("--models", default="cnn,mlp,tiny,bf16,fp16,bf16_small")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.steps} steps per variant, "
          f"interleaved step by step")
    for name in args.models.split(","):
        times = bench(name, args.steps)
        bare_median = statistics.median(times["bare"])
        bare_mean = statistics.fmean(times["bare"])
        print(f"\n{name}: bare median {bare_median * 1e3:.2f} ms/step")
        print(f"  {'variant':<16}{'median ms':>10}{'ratio':>9}{'+us':>9}{'paired':>9}{'mean ratio':>12}")
        for variant in [v for v in ALL_VARIANTS if v in times]:
            ts = times[variant]
            med = statistics.median(ts)
            # paired: the median over rounds of this variant's step time over the bare step of the same
            # round, which cancels load that drifts between rounds
            paired = statistics.median(t / b for t, b in zip(ts, times["bare"]))
            print(f"  {variant:<16}{med * 1e3:>10.3f}{med / bare_median:>8.3f}x{(med - bare_median) * 1e6:>9.0f}"
                  f"{paired:>8.3f}x{statistics.fmean(ts) / bare_mean:>11.3f}x")


if __name__ == "__main__":
    main()
