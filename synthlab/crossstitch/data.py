"""Inputs for the registration networks: intensity normalisation, organ matching, pairs on the model grid.

CT is windowed in Hounsfield units (soft tissue, fat, gas and bone edges all
visible); other images (2D slices, MRI) are scaled between robust percentiles.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from synthlab import volume
from synthlab.crossstitch.geometry import ModelGrid, contour_region, model_grid
from synthlab.errors import InputError
from synthlab.labels import LabelMap, organ_for_name, read_labels

HU_WINDOW = (-250.0, 350.0)
PERCENTILE_RANGE = (1.0, 99.0)

def match_organs(labels: LabelMap, organs: Sequence[str], overrides: Mapping[str, str] | None = None,
                 name: str = "--moving-labels") -> dict[str, int]:
    """Map each model organ to the label value of the planning segment that stands for it.

    ``overrides`` maps a planning segment name to a model organ (the user's choice); other
    segments match by name or a known alias. Organs with no segment are left out; none at all
    is an error. (Empty segments are refused where contours enter inference.)
    """
    by_name = {segment.name: segment for segment in labels.segments}
    for segment_name, organ in (overrides or {}).items():
        if segment_name not in by_name:
            raise InputError("--organ-map", f"no planning segment named '{segment_name}' "
                                            f"(segments: {', '.join(by_name) or 'none'})")
        if organ not in organs:
            raise InputError("--organ-map", f"'{organ}' is not an organ of this model ({', '.join(organs)})")
    chosen = {organ: by_name[segment_name].value for segment_name, organ in (overrides or {}).items()}
    for segment in labels.segments:
        organ = organ_for_name(segment.name, list(organs))
        if organ is not None and organ not in chosen and segment.value not in chosen.values():
            chosen[organ] = segment.value
    if not chosen:
        names = ", ".join(s.name for s in labels.segments) or "none"
        raise InputError(name, f"no segment the model knows (it propagates {', '.join(organs)}; the planning "
                               f"segments are: {names}); rename them or map them with --organ-map")
    return {organ: chosen[organ] for organ in organs if organ in chosen}


def _ct_statistics(image: sitk.Image) -> tuple[float, float]:
    values = sitk.GetArrayViewFromImage(image).ravel()[::7]
    return float(np.percentile(values, 0.5)), float(np.mean((values > -150) & (values < 150)))


def looks_like_ct(image: sitk.Image) -> bool:
    """True for values in Hounsfield units: fat or air below −50 HU and some soft tissue."""
    low, soft = _ct_statistics(image)
    return low <= -50 and soft >= 0.05


def require_ct(image: sitk.Image, name: str) -> None:
    """Refuse an image whose values are not CT Hounsfield units."""
    if not looks_like_ct(image):
        low, soft = _ct_statistics(image)
        raise InputError(name, f"does not look like CT in Hounsfield units (0.5th percentile {low:.0f}, "
                               f"{soft:.0%} of voxels in soft tissue −150…150 HU); give a CT, rescaled to HU")


def normalise(values: np.ndarray, intensity: Mapping) -> np.ndarray:
    """Scale to about 0–1 as the model card says: a HU window (CT) or robust percentiles (anything else)."""
    if intensity["kind"] == "hu-window":
        low, high = intensity["window"]
    else:
        low, high = np.percentile(values, intensity.get("percentiles", PERCENTILE_RANGE))
        high = high if high > low else low + 1.0
    return np.clip((values - low) / (high - low), 0.0, 1.0).astype(np.float32)


@dataclass
class PairArrays:
    """One (fixed, moving) pair on a model grid, as arrays in tensor order.

    Images are normalised; ``moving_organs``/``fixed_organs`` are partial-volume masks per model organ
    (zeros where an organ has no contour); labels are None for unlabelled pairs.
    """

    grid: ModelGrid
    fixed: np.ndarray
    moving: np.ndarray
    moving_organs: np.ndarray | None = None
    fixed_organs: np.ndarray | None = None


def organ_masks(grid: ModelGrid, labels: LabelMap, organs: Sequence[str], matched: Mapping[str, int]) -> np.ndarray:
    values = [matched.get(organ) for organ in organs]
    masks = grid.one_hot(labels.image, [v for v in values if v is not None])
    channels = iter(masks)
    return np.stack([next(channels) if v is not None else np.zeros(grid.shape, np.float32) for v in values])


def pair_on_grid(fixed: sitk.Image, moving: sitk.Image, spacing: Sequence[float], intensity: Mapping,
                 organs: Sequence[str] = (), moving_labels: LabelMap | None = None,
                 fixed_labels: LabelMap | None = None, organ_map: Mapping[str, str] | None = None) -> PairArrays:
    """Resample a pair (and its contours) onto a model grid around the moving contours (or the whole fixed
    image when there are none), normalising intensities as the model card says."""
    region = contour_region(fixed, moving_labels.image) if moving_labels is not None else None
    grid = model_grid(fixed, spacing, region)
    default = intensity["window"][0] if intensity["kind"] == "hu-window" else 0.0
    arrays = [grid.resample(image, default=default) for image in (fixed, moving)]
    fixed_array, moving_array = (normalise(a, intensity) for a in arrays)
    pair = PairArrays(grid, fixed_array, moving_array)
    if moving_labels is not None and organs:
        pair.moving_organs = organ_masks(grid, moving_labels, organs,
                                         match_organs(moving_labels, organs, organ_map))
    if fixed_labels is not None and organs:
        pair.fixed_organs = organ_masks(grid, fixed_labels, organs,
                                        match_organs(fixed_labels, organs, name="fixed labels"))
    return pair


def read_pair_entry(entry: Mapping, spacing: Sequence[float], intensity: Mapping, organs: Sequence[str],
                    dimension: int) -> PairArrays:
    """A datalist entry (``fixed``, ``moving``, optional ``fixed_labels``/``moving_labels``) on its model grid."""
    fixed = volume.read_image(entry["fixed"], "fixed", dimension=dimension)
    moving = volume.read_image(entry["moving"], "moving", dimension=dimension)
    if intensity["kind"] == "hu-window":
        require_ct(fixed, entry["fixed"])
        require_ct(moving, entry["moving"])
    labels = {key: read_labels(entry[key], key, dimension=dimension) if entry.get(key) and organs else None
              for key in ("moving_labels", "fixed_labels")}
    return pair_on_grid(fixed, moving, spacing, intensity, organs, labels["moving_labels"], labels["fixed_labels"])
