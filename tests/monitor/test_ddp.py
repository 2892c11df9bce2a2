"""Under DDP (torchrun, 2 ranks, gloo on CPU) a NaN on one rank must not deadlock, and rank 0's
report must carry the merged statistics and the NaN origin found on the other rank."""
import os
import subprocess
import sys

import pytest

import lossdoctor

HERE = os.path.dirname(__file__)
TORCHRUN_TIMEOUT_S = 120  # generous for a loaded 2-core machine; a deadlock would hang forever


@pytest.mark.slow
def test_nan_on_one_rank_is_reported_by_rank_zero_without_deadlock(tmp_path):
    out = tmp_path / "report.json"
    torchrun = [sys.executable, "-m", "torch.distributed.run"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        [os.path.join(HERE, "..", "..", "src"), os.environ.get("PYTHONPATH", "")]))
    cmd = torchrun + ["--standalone", "--nproc_per_node=2", os.path.join(HERE, "ddp_worker.py"), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=TORCHRUN_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = lossdoctor.Report.from_json(out.read_text())
    assert report.metadata["world_size"] == 2
    nan = [f for f in report.findings if f.code == "grad.non_finite"]
    assert nan, report.codes
    assert nan[0].evidence["step"] == 12
    assert nan[0].evidence["rank"] == 1
    assert nan[0].evidence["produced_by"] == "inputs"
    assert report.verdict == "non_finite"
