"""Watch a live training loop: ``with lossdoctor.watch(model, optimizer) as doctor: ...``.

See docs/watch.md. ``watch`` returns a ``Watch``; ``doctor.report()`` is the same ``Report`` as
``diagnose`` gives for a log, with the findings only a live run can show. Names are imported on
first use: the read-out statistics (``stats``) and their checks (``checks``) are plain numpy.
"""
from __future__ import annotations

from importlib import import_module

_EXPORTS = {"Watch": ".watcher", "watch": ".watcher", "WatchStats": ".stats"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
