"""HierSynth and its baselines: which network each variant builds, its stages and its loss terms.

Kept apart from the Lightning trainer so that inference can build a network without importing Lightning.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from synthlab.hiersynth.networks import HierSynth, MonolithicUNet


@dataclass(frozen=True)
class Variant:
    stages: tuple[str, ...]
    hierarchical: bool  # GSM (+ LSM) rather than a monolithic U-Net
    local: bool = False
    adversarial: bool = True
    ssim: bool = True
    pac: bool = False


VARIANTS = {
    "hiersynth": Variant(("global", "local"), hierarchical=True, local=True, pac=True),
    "gsm-lsm": Variant(("global", "local"), hierarchical=True, local=True),
    "gsm": Variant(("global",), hierarchical=True),
    "unet": Variant(("single",), hierarchical=False, adversarial=False, ssim=False),
    "pix2pix": Variant(("single",), hierarchical=False, ssim=False),
}
LOSS_WEIGHTS = {"ssim": 0.5, "adversarial": 0.02, "pac": 0.1}


def make_network(variant: str, in_channels: int) -> torch.nn.Module:
    chosen = VARIANTS[variant]
    if chosen.hierarchical:
        return HierSynth(in_channels, local=chosen.local)
    return MonolithicUNet(in_channels)
