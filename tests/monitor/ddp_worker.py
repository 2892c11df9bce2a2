"""Run by test_ddp.py under `torchrun --nproc_per_node=2`: a DDP run (gloo, CPU) where rank 1 alone
gets a NaN in its batch at NAN_STEP. Rank 0 writes its report as JSON to argv[1]."""
import sys

import torch
import torch.distributed as dist
from torch import nn

import lossdoctor

NAN_STEP = 12
STEPS = 20


def main(out_path: str) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    ddp = nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(rank)
    with lossdoctor.watch(ddp, opt, every=5) as doctor:
        for step in range(STEPS):
            x = torch.randn(16, 8, generator=g)
            y = torch.randint(0, 3, (16,), generator=g)
            if rank == 1 and step == NAN_STEP:
                x[3, 2] = float("nan")
            loss = nn.functional.cross_entropy(ddp(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            doctor.step(loss)
    report = doctor.report()
    if rank == 0:
        with open(out_path, "w") as fh:
            fh.write(report.to_json())
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
