"""The tumour segmenter (MONAI DynUNet) and its weights, apart from the trainer so inference needs no Lightning."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.networks.nets import DynUNet

from synthlab.brain import BrainArrays, zscore_inside

FILTERS = (16, 32, 64, 128)
SHARED_PREFIX = "skip_layers."


def segmenter(in_channels: int, filters: Sequence[int] = FILTERS) -> DynUNet:
    """A 3D DynUNet (nnU-Net-like) with two output classes (background, tumour)."""
    levels = len(filters)
    return DynUNet(3, in_channels, 2, kernel_size=[3] * levels, strides=[1] + [2] * (levels - 1),
                   upsample_kernel_size=[2] * (levels - 1), filters=list(filters), res_block=True)


def exportable(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The segmenter's weights without DynUNet's ``skip_layers`` aliases (safetensors refuses shared tensors)."""
    return {key: value for key, value in state.items() if not key.startswith(SHARED_PREFIX)}


def load_weights(network: DynUNet, weights: dict[str, torch.Tensor]) -> None:
    """Load exported weights; only the aliases may be missing (they are filled through the modules they share)."""
    missing, unexpected = network.load_state_dict(weights, strict=False)
    wrong = [key for key in missing if not key.startswith(SHARED_PREFIX)] + list(unexpected)
    if wrong:
        raise ValueError(f"the weights do not fit the network: {', '.join(wrong[:5])}")


def network_input(case: BrainArrays) -> np.ndarray:
    return zscore_inside(case.image, case.mask)
