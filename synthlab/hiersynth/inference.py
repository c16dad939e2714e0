"""``synthlab cbv``: synthesise a CBV map slice by slice and put it back on the input grid.

The contrasts the model card lists are read (a missing one is named), brought onto the
model canvas with the brain mask (given or estimated from the first contrast), cut into
2.5D stacks, synthesised, stacked back to 3D, multiplied by the card's ``cbv_scale`` and
resampled onto the first contrast's grid (zero outside the brain).

rCBV divides by the median CBV of normal-appearing white matter: brain voxels outside
the tumour (when given, dilated by 5 mm) whose T1 is in the brain's top quarter (white
matter is the brightest tissue on T1-weighted images) and whose FLAIR, when read, is not
above the brain's median (no oedema).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
import torch
from scipy import ndimage

from synthlab import volume
from synthlab.device import autocast
from synthlab.errors import InputError
from synthlab.hiersynth.data import CBVCase, read_case, volume_stacks
from synthlab.hiersynth.networks import synthesise_stacks
from synthlab.hiersynth.variants import make_network
from synthlab.progress import StageProgress
from synthlab.registry import InferenceModel

TUMOUR_MARGIN_MM = 5.0
NAWM_T1_QUANTILE = 75
MIN_NAWM_VOXELS = 20


class CBVModel(InferenceModel):
    task = "cbv"

    @property
    def contrasts(self) -> list[str]:
        return list(self.card["inputs"])

    @property
    def spacing(self) -> float:
        return float(self.card["spacing"][0])

    @property
    def tumour_rcbv_bias(self) -> dict | None:
        """The card's measured error of the tumour's mean rCBV (synthetic minus true, averaged over held-out
        tumours) and what it was measured on, when the card records it."""
        bias = self.card.get("metrics", {}).get("tumour_rcbv_bias")
        return bias if bias and "mean_error" in bias and "measured_on" in bias else None

    @classmethod
    def from_weights(cls, weights: dict, card: dict, device: torch.device) -> CBVModel:
        network = make_network(card["variant"], int(card["in_channels"]))
        network.load_state_dict(weights)
        return cls(card.get("id", "unregistered"), card, network.to(device).eval(), device)

    def synthesise_canvas(self, case: CBVCase) -> np.ndarray:
        """CBV (z, y, x) in the card's units on the case's canvas, zero outside the brain."""
        stacks = torch.from_numpy(volume_stacks(case.brain.image, int(self.card["neighbours"])))
        with autocast(self.device):
            output = self.predict(lambda inputs: synthesise_stacks(self.network, inputs, self.device), stacks).numpy()
        return np.where(case.brain.mask, output * float(self.card["cbv_scale"]), 0).astype(np.float32)


@dataclass
class CBVResult:
    cbv: sitk.Image
    rcbv: sitk.Image | None
    white_matter_cbv: float | None
    tumour_rcbv: float | None


def normal_white_matter(case: CBVCase, contrasts: list[str], tumour: np.ndarray | None, spacing: float
                        ) -> np.ndarray:
    """Normal-appearing white matter on the canvas (see the module docstring)."""
    brain = case.brain.mask.copy()
    if tumour is not None and tumour.any():
        brain &= ~ndimage.binary_dilation(tumour, iterations=max(1, round(TUMOUR_MARGIN_MM / spacing)))
    if "t1" not in contrasts:
        raise InputError("--rcbv", "needs a model that reads T1 (white matter is found on it)")
    t1 = case.brain.image[contrasts.index("t1")]
    selected = brain & (t1 >= np.percentile(t1[brain], NAWM_T1_QUANTILE))
    if "flair" in contrasts:
        flair = case.brain.image[contrasts.index("flair")]
        selected &= flair <= np.median(flair[brain])
    if selected.sum() < MIN_NAWM_VOXELS:
        raise InputError("--rcbv", "found too little normal-appearing white matter to normalise to")
    return selected


def mean_rcbv(cbv: np.ndarray, nawm: np.ndarray, region: np.ndarray) -> float:
    """A region's mean CBV over the median CBV of normal-appearing white matter (for the tumour: the panel's
    figure)."""
    return float(cbv[region].mean() / max(float(np.median(cbv[nawm])), 1e-6))


def synthesise_cbv(model: CBVModel, paths: dict[str, str | None], mask_path: str | None, tumour_path: str | None,
                   with_rcbv: bool, progress: StageProgress) -> CBVResult:
    progress(0.05, "reading " + ", ".join(model.contrasts))
    case = read_case({**paths, "label": tumour_path}, model.contrasts, model.spacing, mask_path)
    progress(0.3, f"synthesising on {model.device.type}")
    cbv = model.synthesise_canvas(case)
    progress(0.8, "mapping onto the input grid")
    reference = case.brain.reference
    on_input = volume.resample(volume.image_like(cbv, case.brain.canvas), reference)
    rcbv_image, white_matter, tumour_rcbv = None, None, None
    if with_rcbv or case.tumour is not None:
        nawm = normal_white_matter(case, model.contrasts, case.tumour, model.spacing)
        white_matter = float(np.median(cbv[nawm]))
        rcbv_image = volume.image_like(volume.array_of(on_input) / max(white_matter, 1e-6), reference)
        if case.tumour is not None and case.tumour.any():
            tumour_rcbv = mean_rcbv(cbv, nawm, case.tumour & case.brain.mask)
    return CBVResult(on_input, rcbv_image if with_rcbv else None, white_matter, tumour_rcbv)
