"""Brain MRI for the brain models (tumour, CBV): reading, the brain mask, the model canvas and intensity scaling.

Every case is resampled onto a *canvas*: an identity-direction cube of the model
spacing centred on the brain (192 mm a side), so healthy and tumour brains line up
for carving. Each channel is divided by its 99th percentile inside the brain
(about 0–1, the scale the stage-1 intensity model expects); the network sees the
z-score inside the brain. Models whose card asks for it have the receive bias field
removed first (N4, fitted inside the brain on a coarse copy of the canvas): otherwise
a bright corner of the coil's field looks like FLAIR hyperintensity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from synthlab import volume
from synthlab.errors import InputError

CONTRASTS = ("t1", "t2", "flair", "adc")  # the structural and diffusion MRI the brain models read
CANVAS_MM = 192.0
CANVAS_MULTIPLE = 16
BRAIN_ML = (150.0, 2200.0)  # an estimated "brain" outside this range is no brain, or a head with its skull
BIAS_FIT_MM = 4.0  # N4 fits the bias field on a canvas copy this coarse (the field is smooth; 1 mm would be slow)
BIAS_FIT_LEVELS = 3  # N4's B-spline refinements; each doubles the field's resolution (cards without the key: 3)
BIAS_FREE = {"adc"}  # a ratio of two images acquired together: the receive field cancels


@dataclass
class BrainArrays:
    """One case on its canvas: ``image`` (C, z, y, x) scaled, ``mask`` (z, y, x) bool, optional ``label``."""

    image: np.ndarray
    mask: np.ndarray
    canvas: sitk.Image
    label: np.ndarray | None = None
    name: str = ""
    reference: sitk.Image | None = None  # the first channel as read: outputs go back onto its grid


def canvas_for(mask: sitk.Image, spacing: float) -> sitk.Image:
    """The model canvas centred on the brain mask's centre of mass."""
    statistics = sitk.LabelShapeStatisticsImageFilter()
    statistics.Execute(sitk.Cast(mask > 0, sitk.sitkUInt8))
    if not statistics.HasLabel(1):
        raise InputError("--mask", "the brain mask is empty")
    centre = np.array(statistics.GetCentroid(1))
    side = int(np.ceil(CANVAS_MM / spacing / CANVAS_MULTIPLE) * CANVAS_MULTIPLE)
    canvas = sitk.Image([side] * 3, sitk.sitkFloat32)
    canvas.SetSpacing([spacing] * 3)
    canvas.SetOrigin((centre - (side - 1) / 2 * spacing).tolist())
    return canvas


def estimate_brain_mask(flair: sitk.Image, name: str = "--flair") -> sitk.Image:
    """A brain mask of a skull-stripped image: Otsu foreground, largest component, holes filled.

    Refuses images with no brain, and heads with skull and scalp (too much tissue), which need ``--mask``.
    """
    values = sitk.GetArrayFromImage(flair).astype(np.float32)
    if not (values > 0).any():
        raise InputError(name, "no brain found (the image has no positive intensities)")
    otsu = sitk.OtsuThresholdImageFilter()  # on the positive voxels only: the zero background would dominate
    otsu.SetMaskValue(1)
    otsu.Execute(sitk.Cast(flair, sitk.sitkFloat32), sitk.Cast(flair > 0, sitk.sitkUInt8))
    threshold = otsu.GetThreshold()
    foreground = ndimage.binary_opening(values > threshold * 0.5, iterations=1)
    components, count = ndimage.label(foreground)
    if count == 0:
        raise InputError(name, "no brain found")
    largest = components == (np.argmax(np.bincount(components.ravel())[1:]) + 1)
    mask = ndimage.binary_fill_holes(largest)
    millilitres = mask.sum() * np.prod(flair.GetSpacing()) / 1000
    if millilitres < BRAIN_ML[0]:
        raise InputError(name, f"no brain found (only {millilitres:.0f} ml of tissue)")
    if millilitres > BRAIN_ML[1]:
        raise InputError(name, f"looks like a whole head ({millilitres:.0f} ml of tissue, skull and scalp "
                               "included): give a brain mask with --mask, or a skull-stripped image")
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.CopyInformation(flair)
    return image


def scale_inside(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Divide by the 99th percentile inside the brain (0 outside)."""
    reference = float(np.percentile(image[mask], 99)) if mask.any() else 1.0
    return np.where(mask, image / max(reference, 1e-6), 0).astype(np.float32)


def correct_bias(channel: np.ndarray, brain: np.ndarray, spacing: float, levels: int = BIAS_FIT_LEVELS) -> np.ndarray:
    """``channel`` divided by its N4-estimated bias field, fitted inside ``brain`` (SimpleITK).

    Fewer fitting ``levels`` give a smoother field: it flattens less of a large, faint lesion along with the coil's
    shading.
    """
    image = sitk.GetImageFromArray(np.maximum(channel, 1e-3).astype(np.float32))  # N4 fits log intensities
    image.SetSpacing([spacing] * 3)
    mask = sitk.GetImageFromArray(brain.astype(np.uint8))
    mask.CopyInformation(image)
    shrink = [max(1, round(BIAS_FIT_MM / spacing))] * 3
    n4 = sitk.N4BiasFieldCorrectionImageFilter()
    n4.SetMaximumNumberOfIterations([50] * levels)
    n4.Execute(sitk.Shrink(image, shrink), sitk.Shrink(mask, shrink))
    bias = np.exp(sitk.GetArrayFromImage(n4.GetLogBiasFieldAsImage(image)))
    return (channel / bias).astype(np.float32)


def zscore_inside(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per channel z-score over the brain (C, z, y, x); 0 outside it: what the network sees."""
    result = np.zeros_like(image, dtype=np.float32)
    for index, channel in enumerate(image):
        values = channel[mask]
        result[index] = np.where(mask, (channel - values.mean()) / max(float(values.std()), 1e-6), 0)
    return result


def read_brain(paths: dict[str, str], channels: Sequence[str], spacing: float, mask_path: str | None = None,
               label_path: str | None = None, name: str = "", bias_levels: int = 0) -> BrainArrays:
    """Read a case's channels (``flair`` first) onto its canvas; the mask is read or estimated; with
    ``bias_levels`` above 0 every channel but ADC loses its bias field (N4 with that many fitting levels)."""
    images = {}
    for channel in channels:
        if not paths.get(channel):
            raise InputError(f"--{channel}", "missing (this model needs " + ", ".join(channels) + ")")
        images[channel] = volume.read_image(paths[channel], f"--{channel}", dimension=3)
    flair = images[channels[0]]
    for channel in channels[1:]:
        volume.require_overlap(f"--{channels[0]}", flair, f"--{channel}", images[channel])
    if mask_path:
        mask = volume.read_image(mask_path, "--mask", dimension=3, check_content=False)
        volume.require_overlap(f"--{channels[0]}", flair, "--mask", mask)
        mask = sitk.Cast(mask > 0, sitk.sitkUInt8)
    else:
        mask = estimate_brain_mask(flair, f"--{channels[0]}")
    canvas = canvas_for(mask, spacing)
    brain = volume.array_of(volume.resample(mask, canvas, is_label=True)) > 0
    if not brain.any():
        raise InputError("--mask", "the brain mask does not overlap the image")
    scaled = []
    for channel in channels:
        values = volume.array_of(volume.resample(images[channel], canvas))
        if bias_levels and channel not in BIAS_FREE:
            values = correct_bias(values, brain, spacing, bias_levels)
        scaled.append(scale_inside(values, brain))
    label = None
    if label_path:
        label = volume.array_of(volume.resample(sitk.ReadImage(str(label_path)), canvas, is_label=True)) > 0
    return BrainArrays(np.stack(scaled), brain, canvas, label, name, flair)


def read_entry(entry: dict, channels: Sequence[str], spacing: float, with_label: bool = False,
               bias_levels: int = 0) -> BrainArrays:
    """A datalist entry (``flair``, ``t1``, ``t2``, ``mask``, ``label``) on its canvas."""
    return read_brain(entry, channels, spacing, entry.get("mask"), entry.get("label") if with_label else None,
                      entry.get("case", entry.get(channels[0], "")), bias_levels)
