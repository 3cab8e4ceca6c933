"""Comparisons: objectives trained on the same data with the same seeds, measured alike, reported
in one table with their pictures side by side."""

from pyro_vae.core.imports import lazy_names

__all__ = [
    "Comparison",
    "compare",
]

__getattr__, __dir__ = lazy_names(
    __name__,
    {
        "Comparison": "pyro_vae.comparison.comparison",
        "compare": "pyro_vae.comparison.comparison",
    },
)
