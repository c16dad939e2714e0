"""Scoring propagated contours against reference contours: per organ Dice, MSD, HD95 (mm), and folding."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import SimpleITK as sitk

from synthlab import volume
from synthlab.crossstitch.geometry import folding_fraction
from synthlab.labels import PELVIS_ORGANS, LabelMap, name_key, organ_for_name
from synthlab.metrics import overlap_report


def _reference_values(contours: LabelMap, reference: LabelMap, organ_map: Mapping[str, str]) -> dict[str, int]:
    """Each contour segment's reference label value: the same name, else the same organ."""
    by_key = {name_key(s.name): s.value for s in reference.segments}
    by_organ = {organ_for_name(s.name, PELVIS_ORGANS): s.value for s in reference.segments}
    values = {}
    for segment in contours.segments:
        organ = organ_map.get(segment.name) or organ_for_name(segment.name, PELVIS_ORGANS)
        value = by_key.get(name_key(segment.name), by_organ.get(organ) if organ else None)
        if value is not None:
            values[segment.name] = value
    return values


def contour_metrics(contours: LabelMap, reference: LabelMap, field: sitk.Image | None = None,
                    organ_map: Mapping[str, str] | None = None) -> dict:
    """Metrics of each contour segment against the reference segment of the same name (or organ: the
    user's ``organ_map`` or a known alias).

    The reference is brought onto the contours' grid (nearest neighbour) if it lies on another.
    Returns ``{"organs": {name: {dice, msd_mm, hd95_mm}}, "folding_fraction": f}`` (folding when a field is given).
    """
    reference_image = reference.image if volume.same_grid(reference.image, contours.image) else \
        volume.resample(reference.image, contours.image, is_label=True)
    reference_values = _reference_values(contours, reference, organ_map or {})
    predicted = sitk.GetArrayViewFromImage(contours.image)
    truth = sitk.GetArrayViewFromImage(reference_image)
    spacing = tuple(reversed(contours.image.GetSpacing()))
    organs = {}
    for segment in contours.segments:
        value = reference_values.get(segment.name)
        if value is None or not (truth == value).any():
            continue
        organs[segment.name] = {key: round(v, 4) for key, v in
                                overlap_report(predicted == segment.value, truth == value, spacing).items()}
    result: dict = {"organs": organs}
    if field is not None:
        result["folding_fraction"] = folding_fraction(field)
    return result


def summarise(reports: list[dict]) -> dict:
    """Mean (and standard deviation) of each organ's metrics, and of folding, over several pairs."""
    summary: dict = {"pairs": len(reports), "organs": {}}
    names = sorted({name for report in reports for name in report["organs"]})
    for name in names:
        values = [report["organs"][name] for report in reports if name in report["organs"]]
        summary["organs"][name] = {key: {"mean": round(float(np.mean([v[key] for v in values])), 4),
                                         "std": round(float(np.std([v[key] for v in values])), 4)}
                                   for key in values[0]}
    folding = [report["folding_fraction"] for report in reports if "folding_fraction" in report]
    if folding:
        summary["folding_fraction"] = {"mean": float(np.mean(folding)), "max": float(np.max(folding))}
    return summary
