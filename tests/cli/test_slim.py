"""The log path runs without torch (``pip install lossdoctor`` alone): ``lossdoctor diagnose`` on every kind
of log, with the HTML report, in a fresh interpreter where importing torch fails, as it does where torch
is not installed. The commands that need torch say so in one line. (``make test-slim`` runs the tests
marked slim in a virtual environment that truly lacks torch.)"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slim

CORPUS = Path(__file__).parents[1] / "logs" / "malformed"

# Run the command line with every torch import failing, then list the torch modules that got imported.
WITHOUT_TORCH = """
import sys

class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, NoTorch())
from lossdoctor.cli import main
try:
    code = main(sys.argv[1:])
finally:
    print("TORCH_MODULES=" + ",".join(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))),
          file=sys.stderr)
sys.exit(code)
"""


def _without_torch(*args):
    proc = subprocess.run([sys.executable, "-c", WITHOUT_TORCH, *map(str, args)], capture_output=True, text=True,
                          timeout=180)
    marker = [line for line in proc.stderr.splitlines() if line.startswith("TORCH_MODULES=")]
    assert marker, proc.stderr
    return proc.returncode, proc.stdout, proc.stderr.replace(marker[0] + "\n", ""), marker[0].split("=", 1)[1]


def _falling(n=80):
    return [2.3 * 0.96 ** i + 0.05 for i in range(n)]


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """One small log of each kind the log path reads, with the HTML report's folder."""
    root = tmp_path_factory.mktemp("slim")
    (root / "log.csv").write_text("step,loss,val_loss\n" + "".join(
        f"{i},{v},{v + 0.1 if i % 10 == 9 else ''}\n" for i, v in enumerate(_falling())))
    (root / "log.jsonl").write_text("".join(json.dumps({"step": i, "train/ce": v}) + "\n"
                                            for i, v in enumerate(_falling())))
    state = root / "hf" / "trainer_state.json"
    state.parent.mkdir()
    state.write_text(json.dumps({"log_history": [{"step": i + 1, "loss": v} for i, v in enumerate(_falling())]}))
    return root


@pytest.mark.parametrize("which", ["log.csv", "log.jsonl", "hf/trainer_state.json", "tensorboard"])
def test_diagnose_runs_and_never_imports_torch(logs, which):
    path = CORPUS / "cut" if which == "tensorboard" else logs / which  # a real SummaryWriter event file
    html = logs / f"{which.replace('/', '_')}.html"
    code, out, err, torch_modules = _without_torch("diagnose", path, "--json", "--html", html)
    assert torch_modules == "", f"the log path imported {torch_modules}"
    assert code == 0, err
    assert json.loads(out)["verdict"] == "converging" and html.read_text().lstrip().lower().startswith("<!doctype")


@pytest.mark.parametrize("command", [("checkup", "recipe.py:build"), ("demo", "--budget", "1")])
def test_commands_that_need_torch_say_how_to_get_it(command, tmp_path):
    code, out, err, _ = _without_torch(*command)
    assert code == 2 and err.strip() == f"lossdoctor: error: `lossdoctor {command[0]}` needs torch: " \
                                        "pip install 'lossdoctor[torch]'"
