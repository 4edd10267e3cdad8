"""Backgrounds behind the object: a constant colour, or a small MLP of the view direction."""

from __future__ import annotations

import torch
from torch import nn

from sds.config import OptimConfig


class ConstantBackground(nn.Module):
    def __init__(self, rgb: tuple[float, float, float] = (1.0, 1.0, 1.0)):
        super().__init__()
        self.register_buffer("rgb", torch.tensor(rgb))

    def forward(self, dirs: torch.Tensor) -> torch.Tensor:
        """dirs [..., 3] -> rgb [..., 3]."""
        return self.rgb.expand_as(dirs)

    def param_groups(self, cfg: OptimConfig) -> list[dict]:
        return []


class MLPBackground(nn.Module):
    """rgb = sigmoid(MLP(frequency-encoded view direction)); starts near white."""

    def __init__(self, hidden_dim: int = 16, n_frequencies: int = 3):
        super().__init__()
        self.n_frequencies = n_frequencies
        self.mlp = nn.Sequential(nn.Linear(3 + 6 * n_frequencies, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 3))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.constant_(self.mlp[2].bias, 3.0)  # sigmoid(3) ~ 0.95

    def forward(self, dirs: torch.Tensor) -> torch.Tensor:
        freqs = 2.0 ** torch.arange(self.n_frequencies, device=dirs.device) * torch.pi
        angles = dirs[..., None] * freqs  # [..., 3, F]
        encoded = torch.cat([dirs, angles.sin().flatten(-2), angles.cos().flatten(-2)], dim=-1)
        return torch.sigmoid(self.mlp(encoded))

    def param_groups(self, cfg: OptimConfig) -> list[dict]:
        lr = cfg.lr_background
        return [{"params": list(self.parameters()), "lr": lr, "initial_lr": lr, "role": "background"}]
