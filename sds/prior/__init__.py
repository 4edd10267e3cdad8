"""The built-in prior: a small pixel-space text-to-image diffusion model of a world of primitives."""

from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).parent / "weights"


def builtin_prior_path() -> Path:
    """Folder of the shipped prior (diffusers format)."""
    return WEIGHTS_DIR


def drawable_words(prompt: str) -> list[str]:
    """The words of `prompt` that name a shape or a colour of the prior's world (split and lowercased as its
    tokenizer does)."""
    import re
    import unicodedata

    from sds.prior.world import COLORS, SHAPES

    words = re.findall(r"\w+", unicodedata.normalize("NFKC", prompt).lower())
    return [w for w in words if w in SHAPES or w in COLORS]


def check_drawable(prompt: str) -> None:
    """ConfigError (one line, listing the vocabulary) when the prompt names no shape and no colour the built-in
    prior knows: it would train for minutes and give a shapeless blob. A partly known prompt ("a red dragon") is
    let through; the prompt check warns about its unknown words."""
    from sds.errors import ConfigError
    from sds.prior.world import COLORS, SHAPES

    if not drawable_words(prompt):
        raise ConfigError(f"prompt: {prompt!r} names nothing the built-in prior can draw; it knows the shapes "
                          f"{', '.join(SHAPES)} and the colours {', '.join(COLORS)} (e.g. \"a red cube\"); for open "
                          "prompts pass model=... (a Stable Diffusion folder or hub id), or --allow-unknown-words "
                          "to run this prompt on the prior anyway")
