"""Scoring tumour segmentations on labelled cases: the model(s) and the FLAIR intensity baseline.

Whole tumour = every labelled voxel. Scores are computed on the model canvas
(the same grid for every method): Dice and HD95 in mm. The baseline thresholds the
FLAIR z-score inside the brain; its threshold is the one with the best mean Dice on
the validation cases (labelled phantom cases, which favours the baseline).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from synthlab.brain import BrainArrays, zscore_inside
from synthlab.metrics import dice, surface_distances
from synthlab.synthtumour.inference import MIN_COMPONENT_ML, TumourModel, remove_small_components

THRESHOLDS = np.round(np.arange(0.5, 4.01, 0.25), 2)


def scores(prediction: np.ndarray, truth: np.ndarray, spacing: float) -> dict[str, float]:
    distances = surface_distances(prediction, truth, [spacing] * 3)
    return {"dice": dice(prediction, truth), "hd95_mm": distances["hd95_mm"]}


def baseline_mask(case: BrainArrays, threshold: float, spacing: float) -> np.ndarray:
    """FLAIR z-score above ``threshold`` inside the brain, small components removed."""
    return _above(zscore_inside(case.image[:1], case.mask)[0], case.mask, threshold, spacing)


def _above(flair_z: np.ndarray, brain: np.ndarray, threshold: float, spacing: float) -> np.ndarray:
    mask, _ = remove_small_components((flair_z > threshold) & brain, [spacing] * 3, MIN_COMPONENT_ML)
    return mask


def choose_threshold(cases: Sequence[BrainArrays], spacing: float) -> float:
    """The baseline threshold with the best mean Dice on ``cases``."""
    flair_z = [zscore_inside(case.image[:1], case.mask)[0] for case in cases]
    means = [np.mean([dice(_above(z, case.mask, t, spacing), case.label) for z, case in zip(flair_z, cases,
                                                                                            strict=True)])
             for t in THRESHOLDS]
    return float(THRESHOLDS[int(np.argmax(means))])


def model_mask(model: TumourModel, case: BrainArrays, spacing: float) -> np.ndarray:
    mask, _ = remove_small_components(model.segment_canvas(case) > 0.5, [spacing] * 3, MIN_COMPONENT_ML)
    return mask


def evaluate(methods: dict[str, Callable[[BrainArrays], np.ndarray]], cases: Sequence[BrainArrays],
             spacing: float, progress: Callable[[float, str], None]) -> dict:
    """Per case and mean Dice/HD95 of every method (finite HD95s only in the mean; misses counted)."""
    per_case = []
    for index, case in enumerate(cases):
        progress(index / max(1, len(cases)), f"case {index + 1}/{len(cases)}")
        per_case.append({"case": case.name, **{name: scores(method(case), case.label, spacing)
                                                for name, method in methods.items()}})
    summary = {}
    for name in methods:
        dices = [row[name]["dice"] for row in per_case]
        hd95 = [row[name]["hd95_mm"] for row in per_case if np.isfinite(row[name]["hd95_mm"])]
        summary[name] = {"dice_mean": float(np.mean(dices)), "dice_sd": float(np.std(dices)),
                         "hd95_mm_mean": float(np.mean(hd95)) if hd95 else None,
                         "empty_or_missed": len(dices) - len(hd95)}
    return {"cases": per_case, "summary": summary}
