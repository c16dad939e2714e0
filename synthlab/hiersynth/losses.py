"""The Perfusion-aware Constraint (PaC, METHODS.md §1): InfoNCE on residual-domain patch embeddings.

Patches are taken at locations inside the brain (half anywhere, half where the true CBV
is highest, so tumour rims and vessels are well represented). A small projector embeds
the predicted and the true residual patch of each location. The positive pair is the
predicted and the true residual at the same location; the negatives are the true
residuals at locations of *another perfusion level*, the level being the patch's mean
true CBV relative to the slice's median brain CBV (low: necrosis or CSF; normal; raised;
high: tumour rim or vessels).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PERFUSION_LEVELS = (0.6, 1.5, 3.0)  # boundaries, as multiples of the slice's median brain CBV
PATCH = 9  # pixels (18 mm at the 2 mm default)
LOCATIONS = 32  # per slice
TEMPERATURE = 0.1
EMBEDDING = 64


class PerfusionContrast(nn.Module):
    """``loss(predicted_residual, true_residual, cbv, brain)``, all (B, 1, H, W); ``brain`` boolean."""

    def __init__(self, patch: int = PATCH, locations: int = LOCATIONS, temperature: float = TEMPERATURE):
        super().__init__()
        self.patch, self.locations, self.temperature = patch, locations, temperature
        self.projector = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(32, 64, 3, stride=2, padding=1),
            nn.LeakyReLU(0.2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, EMBEDDING))

    def sample_locations(self, cbv: torch.Tensor, brain: torch.Tensor) -> torch.Tensor:
        """(N, 3) rows of (sample, y, x) patch centres inside the brain."""
        rows = []
        for index in range(cbv.shape[0]):
            inside = brain[index, 0].nonzero()
            if len(inside) == 0:
                continue
            values = cbv[index, 0][inside[:, 0], inside[:, 1]]
            anywhere = inside[torch.randint(len(inside), (self.locations // 2,), device=cbv.device)]
            bright = inside[torch.topk(values, min(len(values), 20 * self.locations)).indices]
            bright = bright[torch.randint(len(bright), (self.locations - self.locations // 2,), device=cbv.device)]
            centres = torch.cat([anywhere, bright])
            rows.append(torch.cat([torch.full_like(centres[:, :1], index), centres], 1))
        return torch.cat(rows) if rows else torch.zeros(0, 3, dtype=torch.long, device=cbv.device)

    def patches(self, image: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        half = self.patch // 2
        padded = F.pad(image, [half] * 4)
        offsets = torch.arange(self.patch, device=image.device)
        rows = (centres[:, 1:2] + offsets)[:, :, None]
        columns = (centres[:, 2:3] + offsets)[:, None, :]
        return padded[centres[:, 0, None, None], 0, rows, columns][:, None]

    def perfusion_level(self, cbv: torch.Tensor, brain: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        medians = torch.stack([cbv[i, 0][brain[i, 0]].median() if brain[i].any() else cbv.new_tensor(1.0)
                               for i in range(cbv.shape[0])])
        relative = self.patches(cbv, centres).mean(dim=(1, 2, 3)) / medians[centres[:, 0]].clamp(min=1e-6)
        return torch.bucketize(relative, relative.new_tensor(PERFUSION_LEVELS))

    def forward(self, predicted_residual: torch.Tensor, true_residual: torch.Tensor, cbv: torch.Tensor,
                brain: torch.Tensor) -> torch.Tensor:
        centres = self.sample_locations(cbv, brain)
        if len(centres) < 2:
            return predicted_residual.sum() * 0
        queries = F.normalize(self.projector(self.patches(predicted_residual, centres)), dim=1)
        keys = F.normalize(self.projector(self.patches(true_residual, centres)), dim=1)
        levels = self.perfusion_level(cbv, brain, centres)
        return info_nce(queries, keys, levels != levels[:, None], self.temperature)


def info_nce(queries: torch.Tensor, keys: torch.Tensor, negatives: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean over queries of −log(e^(q·k⁺/τ) / (e^(q·k⁺/τ) + Σ_negatives e^(q·k⁻/τ))); the positive of query i
    is key i, ``negatives[i, j]`` says whether key j is a negative for query i."""
    similarity = queries @ keys.T / temperature
    eye = torch.eye(len(queries), len(keys), dtype=torch.bool, device=queries.device)
    logits = similarity.masked_fill(~(negatives | eye), float("-inf"))
    return F.cross_entropy(logits, torch.arange(len(queries), device=queries.device))
