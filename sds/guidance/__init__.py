"""Guidance: a frozen text-to-image diffusion model turned into an SDS loss on renders.

The package imports nothing heavy itself: ``sds.guidance.hub`` checks a hub id before torch and diffusers load.
"""

__all__ = ["Guidance", "GuidanceOutput"]


def __getattr__(name: str):
    if name in __all__:  # imported on first use: sds.guidance.base needs torch
        from sds.guidance import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
