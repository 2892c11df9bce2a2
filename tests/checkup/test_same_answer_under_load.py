"""The same recipe gives the same report on an idle and on a loaded machine: probe lengths come from
the recipe, never from the clock, and the default budget lets the whole plan run on a loaded
2-core machine. The load is real: two processes spinning on both cores while the checkup runs."""
import subprocess
import sys

import torch
from sklearn.datasets import load_digits
from sklearn.preprocessing import StandardScaler
from torch import nn

from lossdoctor._checkup import checkup

SPIN = "while True:\n    pass\n"


def dropout_recipe():
    """The README's fault: dropout 0.8 and a strong weight decay on a digits MLP, 6 epochs."""
    X, y = load_digits(return_X_y=True)
    X = torch.tensor(StandardScaler().fit_transform(X), dtype=torch.float32)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Dropout(0.8), nn.Linear(64, 10))
    return dict(model=model, train=(X[:1200], torch.tensor(y[:1200])), val=(X[1200:], torch.tensor(y[1200:])),
                loss_fn=nn.CrossEntropyLoss(), optimizer=torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.5),
                epochs=6, batch_size=64)


def outcome(report):
    probes = report.metadata["probes"]
    return (report.verdict, report.codes, [(e["probe"], e["ran"]) for e in report.metadata["plan"]],
            {n: p["run"]["final_loss"] for n, p in probes.items() if "run" in p})


def test_an_idle_and_a_loaded_machine_give_the_same_report():
    idle = checkup(**dropout_recipe(), progress=False, cross_validate=False)
    hogs = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(2)]
    try:
        loaded = checkup(**dropout_recipe(), progress=False, cross_validate=False)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert outcome(loaded) == outcome(idle)
    assert idle.codes[0] == "model.regularization_too_strong"
    assert idle.metadata["skipped"] == [] and idle.metadata["steps_per_run"] == 6 * 19
