"""Real anatomical templates that ship inside installed packages (nothing is downloaded).

* MNI152 2009a symmetric T1 with grey- and white-matter probability maps, 1 mm,
  shipped by nilearn (``nilearn/datasets/data``).
* Colin27 (``ch2.nii.gz``), Debian package ``mricron-data``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import SimpleITK as sitk

COLIN27_PATH = Path("/usr/share/mricron/templates/ch2.nii.gz")
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


def colin27_t1() -> sitk.Image:
    """Colin Holmes' 27-average T1 (1 mm); requires the Debian package mricron-data."""
    if not COLIN27_PATH.is_file():
        raise FileNotFoundError(f"{COLIN27_PATH} is missing: install the Debian package mricron-data "
                                f"(scripts/setup.sh does)")
    return sitk.ReadImage(str(COLIN27_PATH), sitk.sitkFloat32)
