"""Instance optimisation: a few gradient steps on one pair to improve the network's field.

Two stages on an image pyramid: an affine correction (coarse levels; it catches
set-up shifts and rotations beyond the network's reach), then the dense field
itself (finer levels) under the photometric loss plus edge-aware smoothness.
A joint model can guide both stages with its own segmentation of the fixed image:
a Dice term between the warped moving contours and that segmentation, as the
training loss does with the true fixed contours.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from monai.networks.blocks import Warp
from torch.nn import functional

from synthlab.crossstitch import losses

AFFINE_LEVELS = (4, 2)
DENSE_LEVELS = (2, 1)
SMALLEST_SIDE = 16


def affine_field(theta: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Displacement (voxels, tensor order, batch of 1) of an affine map given in normalised [-1, 1] coordinates.

    ``theta`` is ``dims × (dims + 1)``: the matrix and the translation.
    """
    dims = len(shape)
    axes = [torch.linspace(-1, 1, size, device=theta.device) for size in shape]
    points = torch.stack(torch.meshgrid(*axes, indexing="ij")).reshape(dims, -1)
    moved = theta[:, :dims] @ points + theta[:, dims:]
    half_sizes = torch.tensor([(size - 1) / 2 for size in shape], device=theta.device).view(dims, 1)
    return ((moved - points) * half_sizes).reshape(1, dims, *shape)


def _levels(levels: tuple[int, ...], shape: tuple[int, ...]) -> list[int]:
    return [f for f in levels if min(shape) // f >= SMALLEST_SIDE] or [1]


def _resize(field: torch.Tensor, shape: tuple[int, ...], factor: float) -> torch.Tensor:
    """A voxel field resampled to ``shape``, its values scaled by ``factor`` (voxel size ratio)."""
    mode = "trilinear" if field.dim() == 5 else "bilinear"
    return functional.interpolate(field, size=shape, mode=mode, align_corners=False) * factor


@dataclass
class SegmentationGuide:
    """The moving contours and the joint model's probabilities for the same organs on the fixed image
    (batch 1, one channel an organ, no background)."""

    moving_organs: torch.Tensor
    fixed_probabilities: torch.Tensor
    weight: float = 1.0


def refine_field(field: torch.Tensor, fixed: torch.Tensor, moving: torch.Tensor, photometric: str,
                 iterations: int, smoothness: float = 1.0, guide: SegmentationGuide | None = None) -> torch.Tensor:
    """Improve ``field`` (batch 1, voxels, tensor order) for this (fixed, moving) pair."""
    dims = fixed.dim() - 2
    photometric_loss = losses.PhotometricLoss(photometric, dims)
    overlap = losses.overlap_loss(include_background=True)
    warp = Warp(mode="bilinear", padding_mode="border")
    pool = functional.avg_pool3d if dims == 3 else functional.avg_pool2d
    full = tuple(fixed.shape[2:])

    full_size = {"fixed": fixed, "moving": moving}
    if guide is not None:
        full_size.update(probabilities=guide.fixed_probabilities, organs=guide.moving_organs)

    def pyramid(factor: int) -> dict[str, torch.Tensor]:
        return {name: pool(image, factor) for name, image in full_size.items()} if factor > 1 else full_size

    def loss_of(ddf: torch.Tensor, images: dict[str, torch.Tensor]) -> torch.Tensor:
        loss = photometric_loss(warp(images["moving"], ddf), images["fixed"])
        if guide is not None:
            loss = loss + guide.weight * overlap(warp(images["organs"], ddf), images["probabilities"])
        return loss

    theta = torch.cat([torch.eye(dims), torch.zeros(dims, 1)], dim=1).to(fixed).requires_grad_(True)
    optimiser = torch.optim.Adam([theta], lr=0.01)
    for factor in _levels(AFFINE_LEVELS, full):
        images = pyramid(factor)
        shape = tuple(images["fixed"].shape[2:])
        base = _resize(field, shape, 1 / factor)
        for _ in range(iterations):
            optimiser.zero_grad()
            loss_of(base + affine_field(theta, shape), images).backward()
            optimiser.step()
    field = field + affine_field(theta.detach(), full)
    for factor in _levels(DENSE_LEVELS, full):
        images = pyramid(factor)
        shape = tuple(images["fixed"].shape[2:])
        parameter = _resize(field, shape, 1 / factor).detach().requires_grad_(True)
        optimiser = torch.optim.Adam([parameter], lr=0.1)
        for _ in range(iterations):
            optimiser.zero_grad()
            loss = loss_of(parameter, images) + smoothness * losses.edge_aware_smoothness(parameter, images["fixed"])
            loss.backward()
            optimiser.step()
        field = _resize(parameter.detach(), full, factor)
    return field
