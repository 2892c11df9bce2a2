"""The framework-free pieces the integrations share."""
import math

import pytest
import torch

from lossdoctor.integrations._common import CurveRecorder


def test_recorder_sorts_steps_averages_repeats_and_keeps_nan_visible():
    recorder = CurveRecorder()
    recorder.add("train_loss", 2, 1.0)
    recorder.add("train_loss", 1, 3.0)
    recorder.add("train_loss", 2, float("nan"))  # two values at step 2, one of them NaN
    recorder.add("grad_norm", 0, torch.tensor(2.0))  # tensors wait on their device until flushed
    recorder.add("grad_norm", 0, torch.tensor(4.0))
    curves = recorder.to_curves("run", "test")
    assert list(curves.train.steps) == [1.0, 2.0]
    assert curves.train.values[0] == 3.0 and math.isnan(curves.train.values[1])
    assert list(curves.get("grad_norm").values) == [3.0]


def test_a_batch_names_class_id_targets_and_the_kind_of_inputs():
    from sklearn.datasets import load_digits

    from lossdoctor.integrations._common import batch_facts, split_batch

    X, y = load_digits(return_X_y=True)
    pixels, labels = torch.tensor(X[:32], dtype=torch.float32), torch.tensor(y[:32])
    assert batch_facts(*split_batch((pixels, labels))) == {"inputs": "features", "task": "classification"}
    images = pixels.reshape(-1, 1, 8, 8)
    assert batch_facts(*split_batch([images, labels])) == {"inputs": "images", "task": "classification"}
    tokens = {"input_ids": torch.tensor(X[:32], dtype=torch.long), "labels": labels}
    assert batch_facts(*split_batch(tokens)) == {"inputs": "token_ids", "task": "classification"}
    # float targets may be values or 0/1 labels: the task stays unknown
    assert batch_facts(*split_batch((pixels, labels.float()))) == {"inputs": "features"}


def _report():
    from lossdoctor.findings import Finding, Report

    cause = Finding("optim.lr_too_high", "error", 0.9, title="The loss blew up at step 40",
                    remedy="Lower the learning rate from 1 to 0.1.", where="step 40")
    symptom = Finding("grad.dead_relu", "warning", 0.7, title="All units of net.1 died", where="net.1")
    symptom.explained_by = "optim.lr_too_high"
    return Report(verdict="diverging", findings=[symptom, cause], source="test")


def test_markdown_names_the_verdict_and_the_cause_to_fix_first_with_its_remedy():
    from lossdoctor.integrations._common import report_markdown, summary_fields

    text = report_markdown(_report())
    assert text.startswith("**verdict:** `diverging`")
    assert "**fix first:** `optim.lr_too_high` (step 40): The loss blew up at step 40" in text
    assert "*Remedy:* Lower the learning rate from 1 to 0.1." in text
    assert "*(explained by `optim.lr_too_high`)*" in text
    fields = summary_fields(_report())
    assert fields["lossdoctor/verdict"] == "diverging" and fields["lossdoctor/top_finding"] == "optim.lr_too_high"
    assert fields["lossdoctor/codes"] == "optim.lr_too_high,grad.dead_relu"


def test_report_files_are_written_and_an_unwritable_path_warns_instead_of_raising(tmp_path):
    from lossdoctor.findings import Report
    from lossdoctor.integrations._common import ReportNotWrittenWarning, write_report_files

    report = _report()
    written = write_report_files(report, html=str(tmp_path / "a" / "r.html"), json=str(tmp_path / "a" / "r.json"))
    assert len(written) == 2 and Report.from_json((tmp_path / "a" / "r.json").read_text()).codes == report.codes
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.warns(ReportNotWrittenWarning, match="could not write the report"):
        assert write_report_files(report, json=str(blocker / "r.json")) == []


def test_report_paths_are_checked_when_given():
    from lossdoctor.errors import InputError
    from lossdoctor.integrations._common import output_path

    with pytest.raises(InputError, match="must be a file path"):
        output_path(42, "json")
    assert output_path(None, "json") is None
