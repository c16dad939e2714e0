"""Scoring tumour segmentations on labelled cases: the model(s) and the FLAIR intensity baseline.

Whole tumour = every labelled voxel. Scores are computed on the model canvas
(the same grid for every method, prepared as the model was trained, bias correction
included): Dice and HD95 in mm, and the false islands (predicted components that miss
the tumour): their volume, FLAIR z-score and depth inside the brain. On healthy brains,
the tumour volume each method finds (all of it false). The baseline
thresholds the FLAIR z-score inside the brain; its threshold is the one with the best
mean Dice on the validation cases (labelled phantom cases, which favours the baseline).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import ndimage

from synthlab.brain import BrainArrays, zscore_inside
from synthlab.metrics import dice, surface_distances
from synthlab.synthtumour.inference import MIN_COMPONENT_ML, TumourModel, remove_small_components

THRESHOLDS = np.round(np.arange(0.5, 4.01, 0.25), 2)


def scores(prediction: np.ndarray, truth: np.ndarray, spacing: float) -> dict[str, float]:
    distances = surface_distances(prediction, truth, [spacing] * 3)
    return {"dice": dice(prediction, truth), "hd95_mm": distances["hd95_mm"]}


def canvas_ml(mask: np.ndarray, spacing: float) -> float:
    """Volume in ml of a mask on a model canvas of isotropic ``spacing`` (mm)."""
    return float(mask.sum() * spacing ** 3 / 1000)


def false_islands(prediction: np.ndarray, case: BrainArrays, spacing: float) -> dict[str, float | None]:
    """Predicted components that do not touch the tumour: volume (ml), mean FLAIR z-score and mean depth
    inside the brain (mm) of their voxels (None when there are none)."""
    components, _ = ndimage.label(prediction)
    islands = prediction & ~np.isin(components, np.unique(components[case.label]))
    if not islands.any():
        return {"false_islands_ml": 0.0, "false_island_flair_z": None, "false_island_depth_mm": None}
    flair_z = zscore_inside(case.image[:1], case.mask)[0]
    depth = ndimage.distance_transform_edt(case.mask, sampling=spacing)
    return {"false_islands_ml": canvas_ml(islands, spacing),
            "false_island_flair_z": float(flair_z[islands].mean()), "false_island_depth_mm": float(depth[islands].mean())}


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
             spacing: float, progress: Callable[[float, str], None], healthy: Sequence[BrainArrays] = ()) -> dict:
    """Per case and mean scores of every method (finite HD95s only in the mean, misses counted; island FLAIR and
    depth over the cases that have islands); with ``healthy`` brains, also what each method finds in them."""
    per_case, total = [], len(cases) + len(healthy)
    for index, case in enumerate(cases):
        progress(index / total, f"case {index + 1}/{len(cases)}")
        row = {"case": case.name}
        for name, method in methods.items():
            prediction = method(case)
            row[name] = {**scores(prediction, case.label, spacing), **false_islands(prediction, case, spacing)}
        per_case.append(row)
    found_ml = {name: [] for name in methods}
    for index, case in enumerate(healthy):
        progress((len(cases) + index) / total, f"healthy brain {index + 1}/{len(healthy)}")
        for name, method in methods.items():
            found_ml[name].append(canvas_ml(method(case), spacing))
    summary = {}
    for name in methods:
        dices = [row[name]["dice"] for row in per_case]
        hd95 = [row[name]["hd95_mm"] for row in per_case if np.isfinite(row[name]["hd95_mm"])]
        summary[name] = {"dice_mean": float(np.mean(dices)), "dice_sd": float(np.std(dices)),
                         "hd95_mm_mean": float(np.mean(hd95)) if hd95 else None,
                         "empty_or_missed": len(dices) - len(hd95),
                         "false_islands_ml_mean": float(np.mean([row[name]["false_islands_ml"] for row in per_case])),
                         **{f"{key}_mean": _mean_of_present([row[name][key] for row in per_case])
                            for key in ("false_island_flair_z", "false_island_depth_mm")}}
        if healthy:
            summary[name].update(healthy_findings(found_ml[name]))
    return {"cases": per_case, "summary": summary}


def healthy_findings(found_ml: Sequence[float]) -> dict[str, float | int]:
    """Summary of the tumour volumes (ml) a method found in brains that have none (every voxel is false): mean,
    median, largest, and how many brains came back empty."""
    volumes = np.asarray(found_ml, dtype=float)
    return {"healthy_cases": len(volumes), "healthy_found_ml_mean": float(volumes.mean()),
            "healthy_found_ml_median": float(np.median(volumes)), "healthy_found_ml_max": float(volumes.max()),
            "healthy_empty": int((volumes == 0).sum())}


def _mean_of_present(values: list[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return float(np.mean(present)) if present else None
