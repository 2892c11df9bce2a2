"""The per-step NaN/Inf read of a CPU gradient: one sum, told apart from a finite sum that overflowed."""
import math

import pytest
import torch

from lossdoctor.monitor.sentinel import LIST_SUM_MAX_NUMEL, grad_is_finite


@pytest.mark.parametrize("numel", [10, LIST_SUM_MAX_NUMEL, LIST_SUM_MAX_NUMEL + 1, 4096])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_a_single_nan_or_inf_anywhere_is_found_on_both_paths(numel, dtype):
    grad = torch.randn(numel, generator=torch.Generator().manual_seed(0)).to(dtype)
    assert grad_is_finite(grad)
    for bad in (math.nan, math.inf, -math.inf):
        for where in (0, numel // 2, numel - 1):
            broken = grad.clone()
            broken[where] = bad
            assert not grad_is_finite(broken), (bad, where)
    opposite = grad.clone()
    opposite[0], opposite[-1] = math.inf, -math.inf  # their sum is NaN, not a cancellation
    assert not grad_is_finite(opposite)


@pytest.mark.parametrize("numel", [8, 4096])
def test_finite_values_whose_float32_sum_overflows_are_finite(numel):
    grad = torch.full((numel,), 3e38)  # each finite; the float32 sum is Inf
    assert not math.isfinite(float(grad.sum()))
    assert grad_is_finite(grad)
    assert grad_is_finite(grad.reshape(2, -1))  # any shape
