"""The experiments of ``checkup``: one module per probe, each returning a ProbeResult (plain data).

``recipe`` normalises what the user trains with; ``loop`` is the small seeded training loop the
probes share; ``checks`` holds the decisions on the probes' results (plain data, no torch).
Names are imported on first use.
"""
from __future__ import annotations

from importlib import import_module

_EXPORTS = {"ProbeResult": ".result", "Recipe": ".recipe", "normalize_recipe": ".recipe",
            "recipe_from_dict": ".recipe"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
