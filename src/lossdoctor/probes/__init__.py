"""The experiments of ``checkup``: one module per probe, each returning a ProbeResult (plain data).

``recipe`` normalises what the user trains with; ``loop`` is the small seeded training loop the
probes share; ``checks`` holds the ``@check("probes")`` decisions.
"""
from .recipe import Recipe, normalize_recipe, recipe_from_dict
from .result import ProbeResult

__all__ = ["ProbeResult", "Recipe", "normalize_recipe", "recipe_from_dict"]
