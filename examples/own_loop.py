"""lossdoctor in your own training loop: ``lossdoctor.watch``.

    python examples/own_loop.py            # learning rate far too high: NaN, with the module it started in
    python examples/own_loop.py --healthy  # the same loop at a sound learning rate
"""
import argparse

import torch
from sklearn.datasets import load_diabetes
from torch import nn

import lossdoctor


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--healthy", action="store_true", help="learning rate 0.03 instead of 1.0")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    X, y = load_diabetes(return_X_y=True)
    X = torch.tensor((X - X.mean(0)) / X.std(0), dtype=torch.float32)
    y = torch.tensor(y / 100.0, dtype=torch.float32)[:, None]
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=16, shuffle=True)

    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.03 if args.healthy else 1.0)
    with lossdoctor.watch(model, optimizer, every=20) as doctor:
        for _ in range(5):
            for xb, yb in loader:
                loss = nn.functional.mse_loss(model(xb), yb)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                doctor.step(loss)  # the optimizer hook counts steps; this adds the loss curve
    report = doctor.report()
    report.print()
    print(f"verdict={report.verdict} codes={','.join(report.codes)}")


if __name__ == "__main__":
    main()
