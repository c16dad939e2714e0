"""``synthlab tumour``: tumour segmentation without Lightning.

The case goes onto the model canvas, the segmenter runs as a sliding window, the
tumour probability is resampled onto the FLAIR grid, thresholded at 0.5, cleaned of
components smaller than ``min_component_ml``, and written as a "Tumour" segment
(neoplasm terminology, fixed colour), optionally with the probability map.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
import torch
from monai.inferers import sliding_window_inference
from scipy import ndimage

from synthlab import volume
from synthlab.brain import BIAS_FIT_LEVELS, BrainArrays, read_brain, read_entry
from synthlab.device import autocast
from synthlab.labels import LabelMap, Segment
from synthlab.progress import StageProgress
from synthlab.registry import InferenceModel
from synthlab.synthtumour.network import load_weights, network_input, segmenter

TUMOUR_NAME = "Tumour"
TUMOUR_TERMINOLOGY = {
    "contextName": "Segmentation category and type - 3D Slicer General Anatomy list",
    "category": ["SCT", "49755003", "Morphologically Altered Structure"],
    "type": ["SCT", "108369006", "Neoplasm"],
}
TUMOUR_COLOUR = (0.9, 0.2, 0.45)
TUMOUR_SEGMENT = Segment(1, TUMOUR_NAME, TUMOUR_COLOUR, TUMOUR_TERMINOLOGY)
MIN_COMPONENT_ML = 0.5


class TumourModel(InferenceModel):
    task = "tumour"

    @property
    def channels(self) -> list[str]:
        return list(self.card["inputs"])

    @property
    def spacing(self) -> float:
        return float(self.card["spacing"][0])

    @property
    def bias_levels(self) -> int:
        """N4 fitting levels of the images the model was trained on (and so must see); 0: no bias correction."""
        intensity = self.card.get("intensity", {})
        return int(intensity.get("bias_fit_levels", BIAS_FIT_LEVELS)) if intensity.get("bias_correction") == "N4" else 0

    def read_entry(self, entry: dict, with_label: bool = False) -> BrainArrays:
        """A datalist entry on this model's canvas, scaled as it was trained."""
        return read_entry(entry, self.channels, self.spacing, with_label, self.bias_levels)

    @classmethod
    def from_weights(cls, weights: dict, card: dict, device: torch.device) -> TumourModel:
        network = segmenter(len(card["inputs"]), card["filters"])
        load_weights(network, weights)
        return cls(card.get("id", card.get("stage", "unregistered")), card, network.to(device).eval(), device)

    @torch.no_grad()
    def segment_canvas(self, case: BrainArrays) -> np.ndarray:
        """Tumour probability (z, y, x) on the case's canvas, zero outside the brain."""
        image = torch.from_numpy(network_input(case))[None].to(self.device)
        patch = self.card["patch"]

        def tumour_probability(inputs: torch.Tensor) -> torch.Tensor:
            with autocast(self.device):
                logits = sliding_window_inference(inputs, patch, sw_batch_size=2, predictor=self.network,
                                                   overlap=0.25, mode="gaussian")
            return torch.softmax(logits.float(), 1)[0, 1]

        probability = self.predict(tumour_probability, image).cpu().numpy()
        return np.where(case.mask, probability, 0).astype(np.float32)


@dataclass
class TumourResult:
    labels: LabelMap
    probability: sitk.Image
    volume_ml: float
    components_removed: int


def remove_small_components(mask: np.ndarray, spacing, min_ml: float) -> tuple[np.ndarray, int]:
    components, count = ndimage.label(mask)
    if count == 0:
        return mask, 0
    sizes_ml = np.bincount(components.ravel())[1:] * float(np.prod(spacing)) / 1000
    keep = np.concatenate([[False], sizes_ml >= min_ml])
    return keep[components], int((~keep[1:]).sum())


def segment_tumour(model: TumourModel, paths: dict[str, str | None], mask_path: str | None,
                   min_component_ml: float, progress: StageProgress) -> TumourResult:
    """Segment one case given as files (``flair`` and the model's other channels)."""
    progress(0.05, "reading " + ", ".join(model.channels) + (" and removing the bias field"
                                                              if model.bias_levels else ""))
    case = read_brain({k: str(v) for k, v in paths.items() if v}, model.channels, model.spacing,
                      str(mask_path) if mask_path else None, bias_levels=model.bias_levels)
    progress(0.3, f"segmenting on {model.device.type}")
    probability = model.segment_canvas(case)
    progress(0.8, "mapping onto the FLAIR grid")
    flair = case.reference
    on_input = volume.resample(volume.image_like(probability, case.canvas), flair)
    values = volume.array_of(on_input)
    mask, removed = remove_small_components(values > 0.5, flair.GetSpacing(), min_component_ml)
    labels = volume.image_like(mask.astype(np.uint8), flair)
    volume_ml = float(mask.sum() * np.prod(flair.GetSpacing()) / 1000)
    return TumourResult(LabelMap(labels, [TUMOUR_SEGMENT]), on_input, volume_ml, removed)
