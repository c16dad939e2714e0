"""CBV cases for HierSynth: the input contrasts and the CBV on the model canvas, cut into 2.5D slice stacks.

Each contrast is divided by its 99th percentile inside the brain (robust to the
scanner's scale and to bright outliers); CBV stays in its units (ml/100 g), divided by
the card's ``cbv_scale`` for the network. A network input is an axial slice with its
``neighbours`` slices on each side, every contrast's slices side by side as channels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from synthlab import volume
from synthlab.brain import BrainArrays, read_brain
from synthlab.errors import InputError
from synthlab.labels import read_labels
from synthlab.trainer import RandomExamples

CBV_SCALE = 10.0  # ml/100 g per network unit
MIN_BRAIN_PIXELS = 50  # a training slice shows at least this much brain
MIN_TUMOUR_PIXELS = 10  # a "tumour slice" shows at least this much labelled tumour


@dataclass
class CBVCase:
    """``brain``: the inputs on the canvas (``image`` C × z × y × x); ``cbv`` and ``tumour`` (z, y, x) when known."""

    brain: BrainArrays
    cbv: np.ndarray | None = None
    tumour: np.ndarray | None = None


def read_case(paths: dict[str, str | None], contrasts: Sequence[str], spacing: float, mask_path: str | None = None,
              name: str = "") -> CBVCase:
    """Read the contrasts (and ``cbv``, ``label`` when given) onto the canvas of the first contrast's brain."""
    brain = read_brain({k: str(v) for k, v in paths.items() if v}, contrasts, spacing,
                       str(mask_path) if mask_path else None, name=name)
    case = CBVCase(brain)
    if paths.get("cbv"):
        cbv = volume.read_image(str(paths["cbv"]), "--cbv", dimension=3, check_content=False)
        case.cbv = np.where(brain.mask, volume.array_of(volume.resample(cbv, brain.canvas)), 0).astype(np.float32)
    if paths.get("label"):
        label = read_labels(paths["label"], "--tumour").image
        volume.require_overlap(f"--{contrasts[0]}", brain.reference, "--tumour", label)
        case.tumour = volume.array_of(volume.resample(label, brain.canvas, is_label=True)) > 0
    return case


def read_entry(entry: dict, contrasts: Sequence[str], spacing: float) -> CBVCase:
    """A datalist entry with its contrasts, ``cbv``, ``mask`` and (optional) tumour ``label``."""
    if not entry.get("cbv"):
        raise InputError("--datalist", f"entry {entry.get('case', '?')} has no 'cbv' image")
    return read_case(entry, contrasts, spacing, entry.get("mask"), entry.get("case", ""))


def slice_stack(image: np.ndarray, index: int, neighbours: int) -> np.ndarray:
    """(C·(2n+1), y, x): slices index−n … index+n (clamped at the ends) of every channel."""
    depth = image.shape[1]
    chosen = np.clip(np.arange(index - neighbours, index + neighbours + 1), 0, depth - 1)
    return image[:, chosen].reshape(-1, *image.shape[2:])


def volume_stacks(image: np.ndarray, neighbours: int) -> np.ndarray:
    """Every axial slice's stack: (z, C·(2n+1), y, x)."""
    return np.stack([slice_stack(image, index, neighbours) for index in range(image.shape[1])])


class SliceDataset(RandomExamples):
    """Random 2.5D training slices (with brain) from random cases, flipped left–right half of the time.

    ``tumour_share`` of the samples are drawn from slices that show a labelled tumour (when the
    training cases have any): the local stage uses it to see the lesion texture it refines more often.
    """

    def __init__(self, cases: list[CBVCase], neighbours: int, samples: int, seed: int = 0,
                 tumour_share: float = 0.0):
        super().__init__(seed)
        self.cases, self.neighbours, self.samples = cases, neighbours, samples
        self.slices = [np.flatnonzero(case.brain.mask.sum((1, 2)) >= MIN_BRAIN_PIXELS) for case in cases]
        self.cases_with_brain = [index for index, slices in enumerate(self.slices) if len(slices)]
        if not self.cases_with_brain:
            raise InputError("--datalist", "no training slice shows any brain")
        self.tumour_slices = [(index, int(depth)) for index, case in enumerate(cases) if case.tumour is not None
                              for depth in np.flatnonzero(case.tumour.sum((1, 2)) >= MIN_TUMOUR_PIXELS)]
        self.tumour_share = tumour_share if self.tumour_slices else 0.0

    def __len__(self) -> int:
        return self.samples

    def _draw(self) -> tuple[CBVCase, int]:
        if self.rng.random() < self.tumour_share:
            choice, depth = self.tumour_slices[int(self.rng.integers(len(self.tumour_slices)))]
            return self.cases[choice], depth
        choice = int(self.rng.choice(self.cases_with_brain))
        return self.cases[choice], int(self.rng.choice(self.slices[choice]))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        case, depth = self._draw()
        item = {"image": slice_stack(case.brain.image, depth, self.neighbours),
                "cbv": case.cbv[None, depth] / CBV_SCALE, "brain": case.brain.mask[None, depth]}
        if self.rng.random() < 0.5:
            item = {key: value[..., ::-1] for key, value in item.items()}
        return {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in item.items()}


def validation_volume(case: CBVCase, neighbours: int) -> dict[str, torch.Tensor]:
    """A whole case for validation: its slice stacks, CBV (network units), brain and tumour."""
    tumour = case.tumour if case.tumour is not None else np.zeros_like(case.brain.mask)
    return {"image": torch.from_numpy(volume_stacks(case.brain.image, neighbours)),
            "cbv": torch.from_numpy(case.cbv / CBV_SCALE), "brain": torch.from_numpy(case.brain.mask),
            "tumour": torch.from_numpy(tumour)}
