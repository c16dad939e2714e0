"""HierSynth's networks (METHODS.md §1), all 2D over 2.5D slice stacks.

- ``GlobalSynthesis`` (GSM): an encoder over the input channels gives a style vector and
  multi-scale features; a StyleGAN2-style synthesis network (modulated/demodulated
  convolutions, per-pixel noise, an output skip at every resolution) decodes the style,
  starting from the deepest encoder features and taking the others in on the way up
  (pSp-like conditioning).
- ``LocalSynthesis`` (LSM): a U-Net over the inputs and the GSM output that predicts the
  residual r = CBV − GSM(x).
- ``HierSynth``: output GSM(x) + r.
- ``conditional_discriminator``: MONAI's PatchDiscriminator over inputs and CBV.
- ``monolithic_unet``: the U-Net baseline (also pix2pix's generator).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.nets import BasicUNet, PatchDiscriminator
from torch import nn

GSM_CHANNELS = (32, 64, 96, 128)
STYLE_SIZE = 128
LSM_FEATURES = (16, 32, 48, 64, 96, 16)
DISCRIMINATOR_CHANNELS = 32


class ModulatedConv2d(nn.Module):
    """StyleGAN2's convolution: the style scales the weight per input channel, demodulation renormalises
    each output channel; a grouped convolution applies every sample's own weight."""

    def __init__(self, in_channels: int, out_channels: int, style_size: int, kernel_size: int = 3,
                 demodulate: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.gain = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.style = nn.Linear(style_size, in_channels)
        nn.init.ones_(self.style.bias)
        self.demodulate = demodulate
        self.padding = kernel_size // 2

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        weight = self.gain * self.weight[None] * self.style(style)[:, None, :, None, None]
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
        out_channels = weight.shape[1]
        x = F.conv2d(x.reshape(1, batch * channels, height, width),
                     weight.reshape(batch * out_channels, channels, *weight.shape[3:]),
                     padding=self.padding, groups=batch)
        return x.reshape(batch, out_channels, height, width)


class StyledLayer(nn.Module):
    """Modulated convolution, per-pixel noise with a learnt strength, bias, leaky ReLU. The noise is drawn
    in training only, so inference is deterministic."""

    def __init__(self, in_channels: int, out_channels: int, style_size: int):
        super().__init__()
        self.convolution = ModulatedConv2d(in_channels, out_channels, style_size)
        self.noise_strength = nn.Parameter(torch.zeros(1))
        self.bias = nn.Parameter(torch.zeros(1, out_channels, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        x = self.convolution(x, style)
        if self.training:
            x = x + self.noise_strength * torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype)
        return F.leaky_relu(x + self.bias, 0.2)


class SynthesisBlock(nn.Module):
    """One resolution: upsample, merge the encoder features of that scale, two styled layers, an output skip
    (a modulated 1×1 convolution without demodulation)."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, style_size: int):
        super().__init__()
        self.merge = nn.Conv2d(in_channels + skip_channels, out_channels, 1)
        self.first = StyledLayer(out_channels, out_channels, style_size)
        self.second = StyledLayer(out_channels, out_channels, style_size)
        self.to_output = ModulatedConv2d(out_channels, 1, style_size, kernel_size=1, demodulate=False)

    def forward(self, x, encoder_features, style, output):
        x = F.interpolate(x, size=encoder_features.shape[2:], mode="bilinear", align_corners=False)
        x = self.merge(torch.cat([x, encoder_features], 1))
        x = self.second(self.first(x, style), style)
        output = F.interpolate(output, size=x.shape[2:], mode="bilinear", align_corners=False)
        return x, output + self.to_output(x, style)


def _conv_block(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride, 1), nn.InstanceNorm2d(out_channels),
                         nn.LeakyReLU(0.2), nn.Conv2d(out_channels, out_channels, 3, 1, 1),
                         nn.InstanceNorm2d(out_channels), nn.LeakyReLU(0.2))


class GlobalSynthesis(nn.Module):
    """The GSM: encoder (features at every scale + a style vector through a mapping MLP) and a StyleGAN2-style
    decoder. Input (B, C, H, W) with H and W divisible by 2^(levels − 1); output (B, 1, H, W)."""

    def __init__(self, in_channels: int, channels: Sequence[int] = GSM_CHANNELS, style_size: int = STYLE_SIZE):
        super().__init__()
        channels = list(channels)
        self.encoder = nn.ModuleList(
            [_conv_block(in_channels if level == 0 else channels[level - 1], width, 1 if level == 0 else 2)
             for level, width in enumerate(channels)])
        self.mapping = nn.Sequential(nn.Linear(channels[-1], style_size), nn.LeakyReLU(0.2),
                                     nn.Linear(style_size, style_size), nn.LeakyReLU(0.2),
                                     nn.Linear(style_size, style_size))
        self.start = StyledLayer(channels[-1], channels[-1], style_size)
        self.start_output = ModulatedConv2d(channels[-1], 1, style_size, kernel_size=1, demodulate=False)
        self.blocks = nn.ModuleList(
            [SynthesisBlock(channels[level + 1], channels[level], channels[level], style_size)
             for level in reversed(range(len(channels) - 1))])

    @property
    def divisor(self) -> int:
        return 2 ** (len(self.encoder) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = []
        for block in self.encoder:
            x = block(x)
            features.append(x)
        style = self.mapping(features[-1].mean(dim=(2, 3)))
        x = self.start(features[-1], style)
        output = self.start_output(x, style)
        for block, skip in zip(self.blocks, reversed(features[:-1]), strict=True):
            x, output = block(x, skip, style, output)
        return output


class LocalSynthesis(nn.Module):
    """The LSM: predicts the residual from the inputs and the GSM output. Its last convolution starts at zero,
    so a new LSM returns the GSM's output unchanged and its training starts from the GSM's quality."""

    def __init__(self, in_channels: int, features: Sequence[int] = LSM_FEATURES):
        super().__init__()
        self.unet = BasicUNet(spatial_dims=2, in_channels=in_channels + 1, out_channels=1, features=tuple(features),
                              act=("LeakyReLU", {"negative_slope": 0.2}), norm=("instance", {"affine": True}))
        nn.init.zeros_(self.unet.final_conv.weight)
        nn.init.zeros_(self.unet.final_conv.bias)

    def forward(self, x: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        return self.unet(torch.cat([x, base], 1))


class HierSynth(nn.Module):
    """GSM and (optionally) LSM. ``forward`` returns (base, residual, output); residual is None without LSM."""

    def __init__(self, in_channels: int, local: bool = True, gsm_channels: Sequence[int] = GSM_CHANNELS,
                 lsm_features: Sequence[int] = LSM_FEATURES):
        super().__init__()
        self.gsm = GlobalSynthesis(in_channels, gsm_channels)
        self.lsm = LocalSynthesis(in_channels, lsm_features) if local else None

    @property
    def divisor(self) -> int:
        return self.gsm.divisor

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        base = self.gsm(x)
        if self.lsm is None:
            return base, None, base
        residual = self.lsm(x, base)
        return base, residual, base + residual


class MonolithicUNet(nn.Module):
    """The single-generator baseline (U-Net; pix2pix's generator), same (base, residual, output) interface."""

    divisor = 16

    def __init__(self, in_channels: int, features: Sequence[int] = (32, 32, 64, 128, 256, 32)):
        super().__init__()
        self.unet = BasicUNet(spatial_dims=2, in_channels=in_channels, out_channels=1, features=tuple(features),
                              act=("LeakyReLU", {"negative_slope": 0.2}), norm=("instance", {"affine": True}))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None, torch.Tensor]:
        output = self.unet(x)
        return output, None, output


def conditional_discriminator(in_channels: int) -> PatchDiscriminator:
    """A PatchGAN over the input channels and a CBV slice (real or synthetic)."""
    return PatchDiscriminator(spatial_dims=2, channels=DISCRIMINATOR_CHANNELS, in_channels=in_channels + 1,
                              num_layers_d=3, norm="INSTANCE")


@torch.no_grad()
def synthesise_stacks(generate, stacks: torch.Tensor, device: torch.device, batch_size: int = 16) -> torch.Tensor:
    """Run ``generate`` (input → (base, residual, output)) over a volume's slice stacks (z, C, y, x) in batches:
    the output (z, y, x) on the CPU."""
    outputs = [generate(stacks[start:start + batch_size].to(device))[2][:, 0].float().cpu()
               for start in range(0, len(stacks), batch_size)]
    return torch.cat(outputs)
