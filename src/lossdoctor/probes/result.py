"""What every probe returns: plain data, no decision."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ProbeResult:
    """The outcome of one experiment. ``ran`` is False when it was skipped; ``note`` says why."""

    name: str
    ran: bool = True
    note: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @classmethod
    def skipped(cls, name: str, note: str) -> ProbeResult:
        return cls(name=name, ran=False, note=note)
