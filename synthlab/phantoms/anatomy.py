"""Real anatomical templates that ship inside installed packages (nothing is downloaded).

* MNI152 2009a symmetric T1 with grey- and white-matter probability maps, 1 mm,
  shipped by nilearn (``nilearn/datasets/data``).
* Colin27 (``ch2.nii.gz`` and its brain-extracted ``ch2bet.nii.gz``), Debian package ``mricron-data``.

:func:`tissue_fractions` turns either into grey matter, white matter and CSF partial-volume fractions,
the anatomy the brain phantom deforms for each new subject.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from synthlab import volume

COLIN27_PATH = Path("/usr/share/mricron/templates/ch2.nii.gz")
COLIN27_BRAIN_PATH = COLIN27_PATH.with_name("ch2bet.nii.gz")
ANATOMIES = ("mni152", "colin27")
_MNI_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}


@dataclass
class BrainTemplate:
    """A T1-weighted template with tissue probability maps on the same grid (float32, 0–1 for GM/WM)."""

    t1: sitk.Image
    gm: sitk.Image
    wm: sitk.Image


def _nilearn_data() -> Path:
    import nilearn.datasets

    return Path(nilearn.datasets.__file__).parent / "data"


def mni152() -> BrainTemplate:
    """The MNI152 2009a template and its GM/WM probability maps at 1 mm."""
    folder = _nilearn_data()
    images = {key: sitk.ReadImage(str(folder / name), sitk.sitkFloat32) for key, name in _MNI_FILES.items()}
    for key in ("gm", "wm"):  # stored as 0-255
        images[key] = sitk.Clamp(images[key] / 255.0, sitk.sitkFloat32, 0.0, 1.0)
        images[key].CopyInformation(images["t1"])
    return BrainTemplate(**images)


def _read_colin27(path: Path) -> sitk.Image:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: install the Debian package mricron-data "
                                f"(scripts/setup.sh does)")
    return sitk.ReadImage(str(path), sitk.sitkFloat32)


@dataclass(frozen=True)
class TissueFractions:
    """Grey matter, white matter and CSF fractions (0–1, float32) on one grid; zero outside the skull."""

    gm: sitk.Image
    wm: sitk.Image
    csf: sitk.Image


@functools.lru_cache(maxsize=4)
def tissue_fractions(name: str, smoothing_mm: float = 0.0) -> TissueFractions:
    """Partial-volume tissue fractions of a template at 1 mm, optionally pre-smoothed for downsampling.

    * ``mni152``: nilearn's GM and WM probability maps; the intracranial space is GM+WM > 0.5, closed
      (3 mm) and hole-filled, so CSF, the remainder inside it, covers ventricles and sulci.
    * ``colin27``: a three-class partial-volume model of the brain-extracted T1 (``ch2bet``): class
      intensities are the histogram modes of CSF, GM and WM (split by Otsu's two thresholds), and a
      voxel between two modes is a linear mixture of those two tissues.
    """
    if name == "mni152":
        template = mni152()
        gm, wm = volume.array_of(template.gm), volume.array_of(template.wm)
        inside = sitk.BinaryFillhole(sitk.BinaryMorphologicalClosing(
            sitk.BinaryThreshold(template.gm + template.wm, 0.5, 10.0), [3, 3, 3]))
        csf = np.clip(1.0 - gm - wm, 0.0, 1.0) * sitk.GetArrayViewFromImage(inside)
        reference = template.t1
    elif name == "colin27":
        reference = _read_colin27(COLIN27_BRAIN_PATH)
        gm, wm, csf = _three_class_partial_volume(reference)
    else:
        raise ValueError(f"unknown anatomy {name!r}; choose from {', '.join(ANATOMIES)}")
    images = {key: volume.image_like(values.astype(np.float32), reference)
              for key, values in (("gm", gm), ("wm", wm), ("csf", csf))}
    if smoothing_mm > 0:
        images = {key: sitk.SmoothingRecursiveGaussian(image, smoothing_mm) for key, image in images.items()}
    return TissueFractions(**images)


def _three_class_partial_volume(brain: sitk.Image) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    values = volume.array_of(brain)
    inside = values > 0
    otsu = sitk.OtsuMultipleThresholdsImageFilter()
    otsu.SetNumberOfThresholds(2)
    otsu.Execute(sitk.Mask(brain, sitk.Cast(brain > 0, sitk.sitkUInt8)))
    low, high = otsu.GetThresholds()
    brain_values = values[inside]
    modes = [_mode(brain_values[(brain_values > lo) & (brain_values <= hi)])
             for lo, hi in ((0, low), (low, high), (high, np.inf))]
    csf_mode, gm_mode, wm_mode = modes
    wm = np.clip((values - gm_mode) / (wm_mode - gm_mode), 0.0, 1.0)
    csf = np.clip((gm_mode - values) / (gm_mode - csf_mode), 0.0, 1.0)
    gm = 1.0 - wm - csf
    return gm * inside, wm * inside, csf * inside


def _mode(values: np.ndarray) -> float:
    counts, edges = np.histogram(values, bins=64)
    peak = int(np.argmax(counts))
    return float(edges[peak] + edges[peak + 1]) / 2
