"""The joint registration + segmentation network and its single-task variants.

Two 3-level U-Nets (16/32/64 filters, MONAI's DynUNet blocks) run side by side:
the registration branch sees (fixed, moving[, moving contours]) and predicts a
displacement field; the segmentation branch sees the fixed image and predicts
organ logits. A :class:`CrossStitchUnit` after each encoder downsampling and
each decoder upsampling mixes the branches' features per channel. Both heads
predict at three scales (1/4, 1/2, full) for deep supervision.

Configurations (``CONFIGURATIONS``):
- ``crossstitch``: both branches linked by cross-stitch units (the method);
- ``loss-joined``: both branches, linked only through the training loss;
- ``registration-only`` / ``segmentation-only``: one branch.

Displacements are in voxels of the input grid, channel ``i`` along spatial axis
``i`` of the tensor (MONAI's Warp convention).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import DVF2DDF
from monai.networks.blocks.dynunet_block import UnetBasicBlock, UnetUpBlock
from torch import nn
from torch.nn import functional

CONFIGURATIONS = ("crossstitch", "loss-joined", "registration-only", "segmentation-only")
FILTERS = (16, 32, 64)
# Two stride-2 levels: every input side must be a multiple of this.
SIZE_MULTIPLE = 4


class CrossStitchUnit(nn.Module):
    """Per channel, a learnable 2×2 matrix mixes two feature maps: ``[a', b'] = α_c · [a, b]``.

    Initialised near 0.5 (0.55 on the diagonal, 0.45 across), so each branch starts
    by sharing almost half of its features while keeping a slight identity.
    """

    def __init__(self, channels: int, keep: float = 0.55):
        super().__init__()
        alpha = torch.tensor([[keep, 1 - keep], [1 - keep, keep]]).unsqueeze(-1).repeat(1, 1, channels)
        self.alpha = nn.Parameter(alpha)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, -1) + (1,) * (a.dim() - 2)
        mixed_a = self.alpha[0, 0].view(shape) * a + self.alpha[0, 1].view(shape) * b
        mixed_b = self.alpha[1, 0].view(shape) * a + self.alpha[1, 1].view(shape) * b
        return mixed_a, mixed_b


class Branch(nn.Module):
    """One 3-level U-Net whose stages are called one at a time, so that branches can be stitched."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, filters: Sequence[int] = FILTERS):
        super().__init__()
        block = {"spatial_dims": spatial_dims, "kernel_size": 3, "norm_name": "instance"}
        self.stem = UnetBasicBlock(in_channels=in_channels, out_channels=filters[0], stride=1, **block)
        self.down = nn.ModuleList(UnetBasicBlock(in_channels=filters[i], out_channels=filters[i + 1], stride=2,
                                                 **block) for i in range(len(filters) - 1))
        self.up = nn.ModuleList(UnetUpBlock(in_channels=filters[i + 1], out_channels=filters[i], stride=1,
                                            upsample_kernel_size=2, **block)
                                for i in reversed(range(len(filters) - 1)))
        conv = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
        # One head per scale, coarsest first: 1/4, 1/2, full resolution.
        self.heads = nn.ModuleList(conv(channels, out_channels, kernel_size=3, padding=1)
                                   for channels in reversed(filters))


class JointNetwork(nn.Module):
    """Registration and/or segmentation branches in one of the :data:`CONFIGURATIONS`.

    ``forward(fixed, moving, moving_labels)`` returns ``{"ddf": [3 scales], "seg": [3 scales]}``
    (each list coarsest first, upsampled to the input size; a missing branch gives no key).
    ``moving_labels`` is the one-hot moving contours without background (``organs`` channels),
    or None for pure image registration (``organs=0`` on the registration side).
    """

    def __init__(self, configuration: str = "crossstitch", spatial_dims: int = 3, organs: int = 4,
                 label_inputs: bool = True, diffeomorphic: bool = False, filters: Sequence[int] = FILTERS):
        super().__init__()
        if configuration not in CONFIGURATIONS:
            raise ValueError(f"unknown configuration '{configuration}' (choose from {', '.join(CONFIGURATIONS)})")
        self.configuration, self.spatial_dims, self.organs = configuration, spatial_dims, organs
        self.label_inputs = label_inputs
        self.registration = None if configuration == "segmentation-only" else Branch(
            spatial_dims, 2 + (organs if label_inputs else 0), spatial_dims, filters)
        self.segmentation = None if configuration == "registration-only" else Branch(
            spatial_dims, 1, organs + 1, filters)
        stitched = configuration == "crossstitch"
        self.stitch_down = nn.ModuleList(CrossStitchUnit(c) for c in filters[1:]) if stitched else None
        self.stitch_up = nn.ModuleList(CrossStitchUnit(c) for c in reversed(filters[:-1])) if stitched else None
        if self.registration is not None:
            for head in self.registration.heads:  # start from (almost) no displacement
                nn.init.normal_(head.weight, std=1e-5)
                nn.init.zeros_(head.bias)
        self.integrate = DVF2DDF(num_steps=7) if diffeomorphic else None

    @property
    def predicts_field(self) -> bool:
        return self.registration is not None

    @property
    def predicts_segmentation(self) -> bool:
        return self.segmentation is not None

    def forward(self, fixed: torch.Tensor, moving: torch.Tensor | None = None,
                moving_labels: torch.Tensor | None = None) -> dict[str, list[torch.Tensor]]:
        branches = [b for b in (self.registration, self.segmentation) if b is not None]
        features = []
        if self.registration is not None:
            inputs = [fixed, moving] + ([moving_labels] if self.label_inputs else [])
            features.append(self.registration.stem(torch.cat(inputs, dim=1)))
        if self.segmentation is not None:
            features.append(self.segmentation.stem(fixed))
        skips = [list(features)]
        for level in range(len(branches[0].down)):
            features = self._stitch([b.down[level](f) for b, f in zip(branches, features, strict=True)],
                                    self.stitch_down, level)
            skips.append(list(features))
        outputs = [[b.heads[0](f)] for b, f in zip(branches, features, strict=True)]
        for level in range(len(branches[0].up)):
            skip = skips[-2 - level]
            features = self._stitch([b.up[level](f, s) for b, f, s in zip(branches, features, skip, strict=True)],
                                    self.stitch_up, level)
            for output, branch, feature in zip(outputs, branches, features, strict=True):
                output.append(branch.heads[level + 1](feature))
        size = fixed.shape[2:]
        result, names = {}, (["ddf"] if self.registration is not None else []) + (
            ["seg"] if self.segmentation is not None else [])
        for name, scales in zip(names, outputs, strict=True):
            scales = [_upsample(s, size) for s in scales]
            if name == "ddf" and self.integrate is not None:
                scales = [self.integrate(s) for s in scales]
            result[name] = scales
        return result

    def _stitch(self, features: list[torch.Tensor], units: nn.ModuleList | None, level: int) -> list[torch.Tensor]:
        if units is None:
            return features
        return list(units[level](*features))


def start_branches_from(network: JointNetwork, weights: dict[str, torch.Tensor], keep: float = 0.9) -> list[str]:
    """Load single-task weights (``registration.*`` / ``segmentation.*``) into the matching branches.

    The cross-stitch recipe of Misra et al. (2016): start each branch from a network trained on its task
    alone and the units near identity (``keep`` on the diagonal), so that joint training begins from
    both single-task results. Weights of a cross-stitch model bring their own units, which then carry on
    as they are (training goes on from that model). Returns the branches loaded; a branch this network
    lacks is an error.
    """
    loaded = []
    for name in ("registration", "segmentation"):
        prefix = f"{name}."
        branch_weights = {k.removeprefix(prefix): v for k, v in weights.items() if k.startswith(prefix)}
        if not branch_weights:
            continue
        branch = getattr(network, name)
        if branch is None:
            raise ValueError(f"a {network.configuration} network has no {name} branch to start from")
        branch.load_state_dict(branch_weights)
        loaded.append(name)
    if not loaded:
        raise ValueError("the weights hold neither a registration nor a segmentation branch")
    for name in ("stitch_down", "stitch_up"):
        units, prefix = getattr(network, name), f"{name}."
        unit_weights = {k.removeprefix(prefix): v for k, v in weights.items() if k.startswith(prefix)}
        if units is not None and unit_weights:
            units.load_state_dict(unit_weights)
            continue
        for unit in units or []:
            unit.alpha.data = CrossStitchUnit(unit.alpha.shape[-1], keep).alpha.data.to(unit.alpha)
    return loaded


def _upsample(tensor: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    if tuple(tensor.shape[2:]) == tuple(size):
        return tensor
    mode = "trilinear" if tensor.dim() == 5 else "bilinear"
    return functional.interpolate(tensor, size=tuple(size), mode=mode, align_corners=False)
