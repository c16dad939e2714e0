"""Stage-1 intensity models (METHODS.md §2) and the MONAI transform that pastes a new tumour every time.

Training (blurred-scaled): m = Gaussian(mask, σ = 1 mm); image' = image·(1 − m) +
GaussianBlur(image, σ = 5 mm)·t·m with t ~ U(1.5, 5); in some tumours the core gets its
own t ~ U(0.8, 1.2). Label: m > 0.1.

Validation (distribution-shifted, for checkpoint selection): hard mask, image·t inside,
native texture kept, no blur.

The paper synthesises on FLAIR. Optional T2 takes the same hyperintense range; optional
T1 a hypointense one, U(0.5, 0.9) (our choice: gliomas are dark on T1), so that every
channel shows the same tumour. Images are expected brain-normalised (about 0–1).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.transforms import MapTransform, Randomizable
from scipy import ndimage

from synthlab.synthtumour.shapes import TumourShape, draw_tumour_shape

EDGE_SIGMA_MM = 1.0
BLUR_SIGMA_MM = 5.0
LABEL_THRESHOLD = 0.1
CORE_PROBABILITY = 0.3
SCALE_RANGES = {"flair": (1.5, 5.0), "t2": (1.5, 5.0), "t1": (0.5, 0.9)}
CORE_SCALE_RANGE = (0.8, 1.2)


def _sigma(mm: float, spacing: Sequence[float]) -> list[float]:
    return [mm / s for s in spacing]


def blurred_scaled(channels: np.ndarray, names: Sequence[str], shape: TumourShape, spacing: Sequence[float],
                   rng: np.random.Generator, brain: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The training intensity model on a (C, z, y, x) image; returns the new image and the whole-tumour label
    (both kept inside ``brain`` when given)."""
    soft = ndimage.gaussian_filter(shape.whole.astype(np.float32), _sigma(EDGE_SIGMA_MM, spacing))
    if brain is not None:
        soft *= brain
    soft_core = ndimage.gaussian_filter(shape.core.astype(np.float32), _sigma(EDGE_SIGMA_MM, spacing))
    result = channels.copy()
    for index, name in enumerate(names):
        outer = rng.uniform(*SCALE_RANGES[name])
        scale = outer + (rng.uniform(*CORE_SCALE_RANGE) - outer) * soft_core if shape.core.any() else outer
        blurred = ndimage.gaussian_filter(channels[index], _sigma(BLUR_SIGMA_MM, spacing))
        result[index] = channels[index] * (1 - soft) + blurred * scale * soft
    return result, soft > LABEL_THRESHOLD


def hard_scaled(channels: np.ndarray, names: Sequence[str], shape: TumourShape, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray]:
    """The shifted validation model: image·t inside a hard mask, texture kept, no blur."""
    result = channels.copy()
    for index, name in enumerate(names):
        result[index] = np.where(shape.whole, channels[index] * rng.uniform(*SCALE_RANGES[name]), channels[index])
    return result, shape.whole


class SynthesiseTumourd(Randomizable, MapTransform):
    """Paste a fresh stage-1 tumour into a healthy brain: ``image`` (C, z, y, x) and ``mask`` (1, z, y, x) in,
    ``image`` changed and ``label`` (1, z, y, x) out. ``channels`` names the image's channels (flair first)."""

    def __init__(self, channels: Sequence[str], spacing: Sequence[float], image_key: str = "image",
                 mask_key: str = "mask", label_key: str = "label", shifted: bool = False):
        MapTransform.__init__(self, [image_key])
        self.channels, self.spacing, self.shifted = list(channels), list(spacing), shifted
        self.image_key, self.mask_key, self.label_key = image_key, mask_key, label_key

    def randomize(self, data=None) -> None:
        self._rng = np.random.default_rng(int(self.R.randint(2**31)))

    def __call__(self, data: dict) -> dict:
        self.randomize()
        result = dict(data)
        image = np.asarray(result[self.image_key], dtype=np.float32)
        brain = np.asarray(result[self.mask_key])[0] > 0
        shape = draw_tumour_shape(brain, self.spacing, self._rng, with_core=self._rng.random() < CORE_PROBABILITY)
        if self.shifted:
            image, label = hard_scaled(image, self.channels, shape, self._rng)
        else:
            image, label = blurred_scaled(image, self.channels, shape, self.spacing, self._rng, brain)
        result[self.image_key] = torch.from_numpy(np.ascontiguousarray(image))
        result[self.label_key] = torch.from_numpy(label[None].astype(np.float32))
        return result
