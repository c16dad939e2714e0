"""Evaluation metrics in physical units: overlap, surface distances in mm (MONAI), image similarity.

Surface distances use the voxel spacing, so they are millimetres on any grid.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance


def dice(prediction: np.ndarray, reference: np.ndarray) -> float:
    """Dice of two boolean masks (1.0 when both are empty)."""
    prediction, reference = prediction.astype(bool), reference.astype(bool)
    total = prediction.sum() + reference.sum()
    return 1.0 if total == 0 else float(2 * np.logical_and(prediction, reference).sum() / total)


def surface_distances(prediction: np.ndarray, reference: np.ndarray, spacing: Sequence[float]) -> dict[str, float]:
    """Mean symmetric surface distance and 95th-percentile Hausdorff distance (mm) of two boolean masks.

    ``spacing`` is in the masks' axis order (numpy z, y, x for SimpleITK arrays). An empty mask gives inf.
    """
    if not prediction.any() or not reference.any():
        return {"msd_mm": float("inf"), "hd95_mm": float("inf")}
    as_tensor = [torch.from_numpy(np.ascontiguousarray(m, dtype=np.float32))[None, None]
                 for m in (prediction, reference)]
    spacing = [float(s) for s in spacing]
    with warnings.catch_warnings():  # MONAI 1.5+ passes its own deprecated argument internally
        warnings.filterwarnings("ignore", message=".*always_return_as_numpy.*", category=FutureWarning)
        msd = compute_average_surface_distance(*as_tensor, symmetric=True, spacing=spacing)
        hd95 = compute_hausdorff_distance(*as_tensor, percentile=95, spacing=spacing)
    return {"msd_mm": float(msd.item()), "hd95_mm": float(hd95.item())}


def overlap_report(prediction: np.ndarray, reference: np.ndarray, spacing: Sequence[float]) -> dict[str, float]:
    """Dice, MSD and HD95 of one structure."""
    return {"dice": dice(prediction, reference), **surface_distances(prediction, reference, spacing)}
