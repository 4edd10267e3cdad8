"""Guidance: a frozen text-to-image diffusion model turned into an SDS loss on renders."""

from sds.guidance.base import Guidance, GuidanceOutput

__all__ = ["Guidance", "GuidanceOutput"]
