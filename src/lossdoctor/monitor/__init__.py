"""Watch a live training loop: ``with lossdoctor.watch(model, optimizer) as doctor: ...``.

See docs/watch.md. ``watch`` returns a ``Watch``; ``doctor.report()`` is the same ``Report`` as
``diagnose`` gives for a log, with the findings only a live run can show.
"""
from __future__ import annotations

from . import checks  # noqa: F401 - registers the @check("stats") functions
from .stats import WatchStats
from .watcher import Watch, watch

__all__ = ["Watch", "WatchStats", "watch"]
