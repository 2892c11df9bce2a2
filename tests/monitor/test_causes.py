"""Live runs name the cause, not its symptoms (issue 15): each fault trains a real model on digits,
the root cause must come first with the evidence that ties the symptoms to it, and each has a
healthy twin that differs only in the fault and must come out clean."""
import pytest
from torch import nn

from lossdoctor.evidence import RunFacts
from watch_training import RAW_X, mlp, train, warnings_of


def _roots_explain_the_rest(report):
    """Every warning or error other than the top finding hangs under the top finding's code."""
    return [(f.code, f.explained_by) for f in report.warnings()
            if f is not report.top and f.explained_by != report.top.code]


@pytest.fixture(scope="module")
def warmed_up_too_far():
    return train(mlp(), lr=2.0, warmup=50)


def test_a_warm_up_to_a_rate_that_is_too_high_names_the_rate_first(warmed_up_too_far):
    report, _ = warmed_up_too_far
    top = report.top
    assert top.code == "optim.lr_too_high" and top.severity == "error" and top.source.startswith("watch:")
    ev = top.evidence
    assert ev["warmup_end_step"] == 49 and ev["peak_lr"] == pytest.approx(2.0)
    assert ev["lr_at_spike"] == pytest.approx(2.0 * min(1.0, (ev["spike_step"] + 1) / 50))  # the rate then
    assert ev["spike_step"] >= ev["onset_step"]
    assert "from 2 to about 0.2" in top.remedy  # the peak, and the one to try
    assert _roots_explain_the_rest(report) == []


def test_units_that_died_after_the_spike_are_its_symptoms(warmed_up_too_far):
    report, _ = warmed_up_too_far
    onset = report.top.evidence["onset_step"]
    dead = [f for f in report.findings if f.code == "grad.dead_relu"]
    assert dead and dead[0].explained_by == "optim.lr_too_high"
    assert dead[0].evidence["dead_at_first_look"] is False
    assert dead[0].evidence["first_seen_step"] >= onset


def test_a_warm_up_to_a_good_rate_is_clean():
    report, _ = train(mlp(), lr=0.05, warmup=50)
    assert report.verdict == "converging"
    assert warnings_of(report) == []


def test_a_huge_rate_without_warm_up_is_named_with_its_value():
    """Lightning at lr 50 got only dead_relu and logit_overflow: the rate was never named."""
    report, _ = train(mlp(), lr=50.0, every=50)
    assert report.top.code == "optim.lr_too_high" and report.top.severity == "error"
    assert report.top.evidence["lr_at_spike"] == pytest.approx(50.0)
    assert report.top.evidence["spike_step"] <= 5
    assert "from 50 to about 5" in report.top.remedy
    assert _roots_explain_the_rest(report) == []


def test_dead_units_from_the_first_look_are_not_blamed_on_the_rate():
    model = mlp()
    for layer in (model[0], model[2]):
        layer.bias.data.fill_(-10.0)
    report, _ = train(model)
    dead = next(f for f in report.findings if f.code == "grad.dead_relu")
    assert dead.evidence["dead_at_first_look"] is True and dead.evidence["first_look_step"] == 0
    assert dead.explained_by is None
    assert "bias initialization" in dead.remedy


def test_saturated_tanh_at_a_rate_that_is_too_high_is_saturation_under_the_rate():
    """A tanh net whose units the rate drove into saturation: grad.saturated_activation (not
    grad.dead_relu, and no "use LeakyReLU"), explained by the rate named first."""
    report, _ = train(mlp(act=nn.Tanh), lr=30.0)
    assert report.top.code == "optim.lr_too_high"
    saturated = [f for f in report.findings if f.code == "grad.saturated_activation"]
    assert saturated and saturated[0].explained_by == "optim.lr_too_high"
    assert saturated[0].evidence["layers"][saturated[0].where]["share"] > 0.7
    assert not report.has("grad.dead_relu")
    assert "ReLU" not in saturated[0].remedy and "lower the learning rate" in saturated[0].remedy.lower()


def test_the_tanh_twin_at_a_usual_rate_is_clean():
    report, doctor = train(mlp(act=nn.Tanh), lr=0.02)
    assert max(u["share"] for u in doctor.stats().units.values()) < 0.1
    assert warnings_of(report) == []


def test_raw_pixel_inputs_name_the_input_scale():
    report, doctor = train(mlp(), inputs=RAW_X * 16)  # 0..255 pixel values
    assert report.top.code == "data.unnormalized" and report.top.where == "inputs"
    assert report.top.evidence["first_layer"] == "0" and report.top.evidence["measured"] == "features"
    assert "Standardize the inputs before '0'" in report.top.remedy
    assert _roots_explain_the_rest(report) == []


def test_standardized_inputs_are_not_called_unnormalized():
    report, doctor = train(mlp())
    assert max(doctor.stats().inputs["std"]) < 0.1 * 20  # the data room's LARGE_STD_LIMIT is 20
    assert not report.has("data.unnormalized")


def test_remedies_fit_the_framework_and_the_task(warmed_up_too_far):
    _, doctor = warmed_up_too_far
    keras = doctor._build_report(run=RunFacts(framework="keras", lr=2.0))
    for f in keras.findings:
        if not f.source.startswith("watch:"):
            continue  # the curve checks' remedies are the curves room's
        assert "CrossEntropyLoss" not in f.remedy and "nn." not in f.remedy, (f.code, f.remedy)
    dead = next(f for f in keras.findings if f.code == "grad.dead_relu")
    assert "activation='leaky_relu'" in dead.remedy
    logit = next(f for f in keras.findings if f.code == "model.logit_overflow")
    assert "from_logits=True" in logit.remedy
    regression = doctor._build_report(run=RunFacts(task="regression", loss="mse", lr=2.0))
    assert not regression.has("model.logit_overflow", "warning")


def test_one_batch_of_outliers_is_not_a_rate_that_blew_up():
    """Synthetic read-outs of a hard regression that barely learns: a batch of outliers at step 1
    jumps 5x past everything before it and the next batches undo it. Only oversized updates (or a
    loss that stays up) make that jump the rate's."""
    from dataclasses import replace

    import numpy as np

    from lossdoctor.monitor.checks import learning_rate_too_high

    _, doctor = train(mlp(), steps=60)
    stats = doctor.stats()
    steps = np.arange(60)
    losses = 1.0 - 0.001 * steps
    losses[1] = 5.0
    outlier = replace(stats, loss_steps=steps, loss_values=losses, first_non_finite_step=None, non_finite=None)
    assert learning_rate_too_high(outlier) == []
    oversized = replace(outlier, update_ratios=np.full_like(stats.update_ratios, 0.5))  # 5x the 0.1 threshold
    blew_up = learning_rate_too_high(oversized)
    assert blew_up and blew_up[0].evidence["spike_step"] == 1 and blew_up[0].severity == "error"
    assert blew_up[0].evidence["corroborated_by"] == ["update ratio"]
