"""Recipes: YAML files that say which model to build for which devices."""

from buildsys.recipe.loader import RecipeLoader, discover
from buildsys.recipe.model import Calibration, InputSource, Recipe, Source, Target, Validate

__all__ = ["Calibration", "InputSource", "Recipe", "RecipeLoader", "Source", "Target", "Validate", "discover"]
