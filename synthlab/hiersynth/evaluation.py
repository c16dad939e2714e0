"""CBV synthesis metrics over the brain: PSNR, MAE, SSIM over the brain and SSIM in the tumour ROI.

SSIM is MONAI's 3D SSIM map (Gaussian window 11, σ 1.5 voxels) averaged over the voxels
of the region (brain, or the tumour dilated by 2 voxels) whose window lies inside the
volume. The data range of PSNR and SSIM is the true CBV's maximum in the brain.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.metrics.regression import compute_ssim_and_cs
from scipy import ndimage

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
TUMOUR_MARGIN_VOXELS = 2


def ssim_map(predicted: np.ndarray, truth: np.ndarray, data_range: float) -> np.ndarray:
    """Local SSIM per voxel (z, y, x); NaN where the window leaves the volume."""
    as_tensor = [torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None] for a in (predicted, truth)]
    local, _ = compute_ssim_and_cs(*as_tensor, spatial_dims=3, kernel_size=[SSIM_WINDOW] * 3,
                                   kernel_sigma=[SSIM_SIGMA] * 3, data_range=data_range)
    half = SSIM_WINDOW // 2
    full = np.full(truth.shape, np.nan, dtype=np.float32)
    full[half:-half, half:-half, half:-half] = local[0, 0].numpy()
    return full


def tumour_roi(tumour: np.ndarray, brain: np.ndarray) -> np.ndarray:
    return ndimage.binary_dilation(tumour, iterations=TUMOUR_MARGIN_VOXELS) & brain


def cbv_metrics(predicted: np.ndarray, truth: np.ndarray, brain: np.ndarray,
                tumour: np.ndarray | None = None) -> dict[str, float]:
    """PSNR (dB), MAE (CBV units), SSIM over the brain and, when ``tumour`` is not empty, in its ROI."""
    data_range = max(float(truth[brain].max()), 1e-6)
    error = predicted[brain] - truth[brain]
    local = ssim_map(np.where(brain, predicted, 0), np.where(brain, truth, 0), data_range)
    metrics = {"psnr": float(10 * np.log10(data_range ** 2 / max(float(np.mean(error ** 2)), 1e-12))),
               "mae": float(np.abs(error).mean()), "ssim_brain": float(np.nanmean(local[brain]))}
    if tumour is not None and tumour.any():
        metrics["ssim_tumour"] = float(np.nanmean(local[tumour_roi(tumour, brain)]))
    return metrics
