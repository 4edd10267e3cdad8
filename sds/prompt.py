"""Prompt processing: view-dependent variants, encoded once and cached.

The text encoder runs once per run (uncond + the base prompt + one variant per view label) and is then
freed; SDS steps only index into the cached embeddings.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from sds.cameras import VIEW_LABELS

log = logging.getLogger(__name__)


PERP_NEG_NEGATIVES: dict[str, tuple[tuple[str, float], ...]] = {
    "front": (("back", 1.0),),
    "back": (("front", 1.0),),
    "side": (("front", 0.5), ("back", 0.5)),
    "overhead": (),
}
"""Perp-Neg's negatives for each view label, with their share of guidance.perp_neg_weight: the opposite view (a
side view pushes half away from each). stable-dreamfusion interpolates these by azimuth; our views are the
discrete labels the prompts carry."""


PERP_NEG_SLOTS = 2
"""Negatives per camera in Perp-Neg's UNet batch: the most any view has (a side view's two)."""


def perp_neg_views(labels: list[str | None], weight: float) -> tuple[list[list[str | None]], list[torch.Tensor]]:
    """Perp-Neg's negatives for B cameras with these view labels: per slot, the B view labels whose prompts are the
    negatives, and their [B] weights (PERP_NEG_NEGATIVES' shares of `weight`). A camera with fewer negatives than
    the slots fills the rest with its own label at weight 0, so every slot is a full batch."""
    views, weights = [], []
    for i in range(PERP_NEG_SLOTS):
        chosen = [PERP_NEG_NEGATIVES.get(label or "", ())[i:i + 1] for label in labels]
        views.append([c[0][0] if c else label for c, label in zip(chosen, labels)])
        weights.append(torch.tensor([weight * c[0][1] if c else 0.0 for c in chosen]))
    return views, weights


def view_prompt(prompt: str, label: str | None) -> str:
    """"a red cube" + "side" -> "a red cube, side view" (the phrase the built-in prior was trained with)."""
    return f"{prompt}, {label} view" if label else prompt


@dataclass
class PromptEmbeddings:
    """Cached text embeddings: the unconditional one and one per view label ("" = no view phrase)."""

    uncond: torch.Tensor  # [1, L, D]
    by_view: dict[str, torch.Tensor]  # label -> [1, L, D]
    pooled_uncond: torch.Tensor | None = None  # [1, P]: SDXL's pooled text embedding
    pooled_by_view: dict[str, torch.Tensor] | None = None  # label -> [1, P]

    def for_views(self, labels: list[str | None]) -> torch.Tensor:
        """[B, L, D] conditional embeddings for B cameras' view labels (None: no view phrase)."""
        return torch.cat([self.by_view[label or ""] for label in labels])

    def pooled_for_views(self, labels: list[str | None]) -> torch.Tensor:
        """[B, P] pooled embeddings (SDXL) for B cameras' view labels."""
        return torch.cat([self.pooled_by_view[label or ""] for label in labels])

    def to(self, device: torch.device, dtype: torch.dtype) -> PromptEmbeddings:
        def moved(d):
            return None if d is None else {k: v.to(device, dtype) for k, v in d.items()}

        pooled = None if self.pooled_uncond is None else self.pooled_uncond.to(device, dtype)
        return PromptEmbeddings(self.uncond.to(device, dtype), moved(self.by_view), pooled, moved(self.pooled_by_view))


def unknown_words(tokenizer, text: str) -> list[str]:
    """Words the tokenizer maps to its unknown token (a closed-vocabulary model ignores them)."""
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is None:
        return []
    words = text.replace(",", " ").split()
    return [w for w in words if unk in tokenizer(w, add_special_tokens=False).input_ids]


def check_prompt(tokenizer, prompt: str) -> list[str]:
    """User-facing warnings about a prompt: truncation and unknown words."""
    warnings = []
    n_tokens = len(tokenizer(prompt).input_ids)
    if n_tokens > tokenizer.model_max_length:
        warnings.append(f"the prompt is {n_tokens} tokens; the text encoder reads only the first "
                        f"{tokenizer.model_max_length}, the rest is ignored")
    unknown = unknown_words(tokenizer, prompt)
    if unknown:
        known = sorted(w for w in tokenizer.get_vocab() if w.isalpha())
        warnings.append(f"{', '.join(repr(w) for w in unknown)} unknown to this model; it knows: "
                        f"{' '.join(known)}; pass model=... (e.g. a Stable Diffusion folder) for open prompts")
    return warnings


@torch.no_grad()
def encode_prompts(encoders: list, prompt: str, negative_prompt: str, view_dependent: bool,
                   device: torch.device) -> PromptEmbeddings:
    """Encode the negative prompt, the prompt and (if view_dependent) each view variant, once.

    encoders: [(tokenizer, text_encoder)]: one pair, whose last hidden state is the embedding; or SDXL's two,
    whose penultimate hidden states are concatenated and whose second gives the pooled embedding."""
    labels = ["", *VIEW_LABELS] if view_dependent else [""]
    texts = [negative_prompt] + [view_prompt(prompt, label or None) for label in labels]
    outputs = []
    for tokenizer, text_encoder in encoders:
        ids = tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                        return_tensors="pt").input_ids.to(device)
        outputs.append(text_encoder(ids, output_hidden_states=len(encoders) > 1))
    if len(encoders) == 1:
        hidden, pooled = outputs[0][0], None
    else:
        hidden = torch.cat([o.hidden_states[-2] for o in outputs], dim=-1)
        pooled = outputs[-1].text_embeds
    return PromptEmbeddings(hidden[:1], {label: hidden[i + 1: i + 2] for i, label in enumerate(labels)},
                            None if pooled is None else pooled[:1],
                            None if pooled is None else {label: pooled[i + 1: i + 2] for i, label in enumerate(labels)})
