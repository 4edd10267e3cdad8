"""Multi-resolution hash encoding (Instant-NGP) in pure torch: no compiler, runs anywhere."""

from __future__ import annotations

import math
from itertools import accumulate

import torch
from torch import nn

# Spatial-hash primes from Instant-NGP (the first is 1 so coarse levels stay coherent along x).
_PRIMES = (1, 2654435761, 805459861)


class HashGridEncoding(nn.Module):
    """Points [N, 3] in [0, 1]^3 -> features [N, levels * features_per_level].

    Level l has resolution floor(base * b^l) with b chosen so the last level reaches max_resolution.
    Levels whose dense grid fits in the table are indexed densely (no collisions); finer ones are hashed.
    """

    def __init__(self, levels: int, features_per_level: int, log2_table_size: int, base_resolution: int,
                 max_resolution: int):
        super().__init__()
        self.levels = levels
        self.features_per_level = features_per_level
        growth = math.exp((math.log(max_resolution) - math.log(base_resolution)) / max(levels - 1, 1))
        self.resolutions = [int(math.floor(base_resolution * growth**level)) for level in range(levels)]
        self.table_size = 2**log2_table_size
        sizes = [min(self.table_size, (r + 1) ** 3) for r in self.resolutions]
        self.offsets = [0, *accumulate(sizes)]
        self.table = nn.Parameter(torch.empty(self.offsets[-1], features_per_level).uniform_(-1e-4, 1e-4))
        corners = torch.tensor([[(i >> 2) & 1, (i >> 1) & 1, i & 1] for i in range(8)])
        self.register_buffer("corners", corners, persistent=False)  # [8, 3]

    @property
    def output_dim(self) -> int:
        return self.levels * self.features_per_level

    def _index(self, cell: torch.Tensor, level: int) -> torch.Tensor:
        """Integer corner coordinates [N, 8, 3] -> table rows [N, 8]."""
        res = self.resolutions[level] + 1
        size = self.offsets[level + 1] - self.offsets[level]
        if res**3 <= self.table_size:
            index = cell[..., 0] * res * res + cell[..., 1] * res + cell[..., 2]
        else:
            index = (cell[..., 0] * _PRIMES[0]) ^ (cell[..., 1] * _PRIMES[1]) ^ (cell[..., 2] * _PRIMES[2])
            index = index % size
        return index + self.offsets[level]

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        features = []
        for level, res in enumerate(self.resolutions):
            scaled = points.clamp(0, 1) * res
            base = scaled.floor().clamp(max=res - 1)
            frac = scaled - base  # [N, 3]
            cell = base.long()[:, None, :] + self.corners  # [N, 8, 3]
            rows = self.table[self._index(cell, level)]  # [N, 8, F]
            w = torch.where(self.corners.bool(), frac[:, None, :], 1 - frac[:, None, :]).prod(-1)  # [N, 8]
            features.append((rows * w[..., None]).sum(1))
        return torch.cat(features, dim=-1)

