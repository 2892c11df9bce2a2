"""Which steps the watch instruments: one in ``every``, and every step for a while after a warning sign."""
from __future__ import annotations

import math

from .stats import EXP_OVERFLOW_LIMIT, Record

# Escalation: instrument every step until the next read-out once the largest logit passes this share
# of the exp overflow limit of the dtype the softmax runs in (float32 under autocast, which runs
# softmax and the losses in float32 whatever the logits' dtype: a quarter of float16's limit is 2.8,
# an everyday logit, and judging float16 logits by it instrumented most steps of every healthy float16
# run; a hand-written exp that overflows float16 is caught by the NaN sentinel and the scaler anyway), or the gradient norm grew this many times over its first value,
# and the sign is new (above ESCALATE_NEW_HIGH times the previous high). A run that stays in that
# state is escalated at most MAX_ESCALATIONS times, which bounds the cost to a few read-out windows.
ESCALATE_LOGIT_FRACTION = 0.25
ESCALATE_GRAD_GROWTH = 10.0
ESCALATE_NEW_HIGH = 1.5
MAX_ESCALATIONS = 3


class Schedule:
    def __init__(self, every: int) -> None:
        self.every = every
        self.dense_until = 0
        self.escalations = 0
        self.first_total_norm: float | None = None
        self.logit_high = 0.0
        self.norm_high = 0.0

    def instrumented(self, step: int) -> bool:
        return step % self.every == 0 or step < self.dense_until

    def read_out_due(self, step_count: int) -> bool:
        return step_count % self.every == 0

    def after_read_out(self, record: Record, step_count: int, non_finite: bool) -> None:
        escalate = False
        for s in record.samples:
            if self.first_total_norm is None and math.isfinite(s.total_grad_norm) and s.total_grad_norm > 0:
                self.first_total_norm = s.total_grad_norm
            softmax_dtype = "torch.float32" if s.autocast else (s.logit_dtype or "torch.float32")
            limit = EXP_OVERFLOW_LIMIT.get(softmax_dtype, EXP_OVERFLOW_LIMIT["torch.float32"])
            logit = s.logit_absmax if s.logit_absmax is not None and math.isfinite(s.logit_absmax) else None
            norm = s.total_grad_norm if math.isfinite(s.total_grad_norm) else None
            if logit is not None:
                escalate |= logit > ESCALATE_LOGIT_FRACTION * limit and logit > ESCALATE_NEW_HIGH * self.logit_high
                self.logit_high = max(self.logit_high, logit)
            if norm is not None and self.first_total_norm is not None:
                escalate |= (norm > ESCALATE_GRAD_GROWTH * self.first_total_norm
                             and norm > ESCALATE_NEW_HIGH * self.norm_high)
                self.norm_high = max(self.norm_high, norm)
        if escalate and not non_finite and self.escalations < MAX_ESCALATIONS:
            self.escalations += 1
            self.dense_until = step_count + self.every
