"""Propagate planning contours to the daily CT with the ``synthlab contour`` backend task."""

from __future__ import annotations

import dataclasses
import json

from synthlab import mrml
from synthlab.client import Backend, JobResult
from synthlab.labels import PELVIS_ORGANS, format_organ_map, organ_for_name
from synthlab.slicer_job import NodeJob

# The command-line contract: `synthlab contour --fixed F --moving F --moving-labels F --out-labels F [--out-field F]
# [--out-warped F] [--reference-labels F --out-metrics F]`.
OUTPUT_FILES = {"out_labels": "daily_contours.seg.nrrd", "out_field": "displacement.nrrd"}
WARPED_FILE = {"out_warped": "warped_planning_ct.nrrd"}
METRICS_FILE = {"out_metrics": "metrics.json"}


def default_organ_map(planning_segmentation) -> dict[str, str]:
    """Planning segment name -> model organ for the segments whose names say which organ they are."""
    mapping = {}
    for name in mrml.segment_names(planning_segmentation):
        organ = organ_for_name(name, PELVIS_ORGANS)
        if organ is not None and organ not in mapping.values():
            mapping[name] = organ
    return mapping


def start_contour(backend: Backend, planning_ct, planning_segmentation, daily_ct, reference_segmentation=None,
                  organ_map: dict[str, str] | None = None, warp_planning_ct: bool = False,
                  model_id: str | None = None, device: str = "auto", iterations: int | None = None,
                  guide_organs: str | None = None, segmentation_weight: str | None = None,
                  setup_correction: bool | None = None) -> NodeJob:
    """Start propagation of ``planning_segmentation`` (on ``planning_ct``) to ``daily_ct``.

    ``organ_map`` (planning segment -> model organ) defaults to matching by name; with a
    ``reference_segmentation`` on the daily CT the job also reports Dice, MSD and HD95.
    ``guide_organs`` (model organs, comma-separated, or ``none``) overrides the model card's choice of organs
    pulled towards the network's own segmentation, and ``segmentation_weight`` (one number, ``organ=weight``
    pairs, or ``none``) the card's weight of that segmentation in today's contours. ``setup_correction`` (True or
    False; None: the card's choice) turns the rigid match on bone before the network on or off.
    """
    missing = [label for label, node in (("planning CT", planning_ct), ("planning contours", planning_segmentation),
                                         ("daily CT", daily_ct)) if node is None]
    if missing:
        raise ValueError(f"Select the {', '.join(missing)} first.")
    if planning_segmentation.GetSegmentation().GetNumberOfSegments() == 0:
        raise ValueError(f"The planning segmentation '{planning_segmentation.GetName()}' has no segments.")
    mapping = default_organ_map(planning_segmentation) if organ_map is None else organ_map
    if not any(mapping.values()):
        raise ValueError(f"None of the segments of '{planning_segmentation.GetName()}' is mapped to an organ the "
                         f"model knows ({', '.join(PELVIS_ORGANS)}); map at least one.")
    inputs = {"fixed": daily_ct, "moving": planning_ct, "moving_labels": planning_segmentation,
              "reference_labels": reference_segmentation}
    outputs = {**OUTPUT_FILES, **(WARPED_FILE if warp_planning_ct else {}),
               **(METRICS_FILE if reference_segmentation is not None else {})}
    params = {"model": model_id, "device": device, "organ_map": format_organ_map(mapping),
              "iterations": iterations, "guide_organs": (guide_organs or "").strip() or None,
              "segmentation_weight": (segmentation_weight or "").strip() or None,
              "setup_correction": setup_correction}
    return NodeJob(backend, "contour", inputs, outputs, params)


@dataclasses.dataclass
class ContourNodes:
    contours: object  # vtkMRMLSegmentationNode on the daily CT
    field: object  # vtkMRMLGridTransformNode (daily -> planning)
    warped: object | None = None  # vtkMRMLScalarVolumeNode: planning CT warped onto the daily CT
    metrics: object | None = None  # vtkMRMLTableNode: per-organ Dice, MSD, HD95
    # organs whose own segmentation was asked for but set aside (too far from the warped contour, or too unsure):
    # its distance in mm (None: the model found no such organ); their contours are the warped planning contours
    set_aside: dict = dataclasses.field(default_factory=dict)
    near_scan_border: list = dataclasses.field(default_factory=list)  # organs the daily CT ends close to

    def review_message(self) -> str | None:
        """What to tell the user to check, or None."""
        parts = []
        if self.set_aside:
            parts.append("Review " + ", ".join(self.set_aside) + ": the model's own segmentation was too far from "
                         "the propagated contour or too unsure, so only the propagated contour was kept there. Its "
                         "distance from the propagated contour: " + ", ".join(
                             _distance_text(organ, mm) for organ, mm in self.set_aside.items()) + ".")
        if self.near_scan_border:
            parts.append("The daily CT ends close to the " + ", ".join(self.near_scan_border) + ": near the scan's "
                         "edge the propagated contour counts more than the model's own segmentation. Review the "
                         "contours there.")
        return " ".join(parts) or None


def _distance_text(organ: str, distance_mm: float | None) -> str:
    return f"{organ} not found" if distance_mm is None else f"{organ} {distance_mm:.1f} mm"


def setup_text(setup: dict | None) -> str:
    """The rigid set-up correction the backend found first (its JSON), for people; "none" when it ran none."""
    if not setup:
        return "none"
    return ("translation " + ", ".join(f"{v:.1f}" for v in setup["translation_mm"]) + " mm; rotation "
            + ", ".join(f"{v:.1f}" for v in setup["rotation_deg"]) + " degrees")


def load_contours(scene, result: JobResult, daily_ct, planning_segmentation) -> ContourNodes:
    """Daily contours (planning names and colours, on the daily CT), the displacement field, and the optional
    warped planning CT and metrics table, as nodes."""
    name = daily_ct.GetName()
    nodes = ContourNodes(
        mrml.load_segmentation(scene, result.outputs["out_labels"], f"{name} contours", reference_volume=daily_ct),
        mrml.load_grid_transform(scene, result.outputs["out_field"], f"{name} deformation"))
    if "out_warped" in result.outputs:
        nodes.warped = mrml.load_volume(scene, result.outputs["out_warped"], f"{name} warped planning CT")
    if "out_metrics" in result.outputs:
        metrics = json.loads(result.outputs["out_metrics"].read_text())
        rows = {organ: {"Dice": m["dice"], "MSD (mm)": m["msd_mm"], "HD95 (mm)": m["hd95_mm"]}
                for organ, m in metrics["organs"].items()}
        nodes.metrics = mrml.metrics_table(scene, rows, f"{name} contour metrics")
    weights = result.results.get("segmentation_weights", {})
    nodes.set_aside = {organ: distance for organ, distance in result.results.get("segmentation_disagreement_mm",
                                                                                 {}).items() if organ not in weights}
    nodes.near_scan_border = list(result.results.get("near_scan_border", []))
    for node in (nodes.contours, nodes.field, nodes.warped, nodes.metrics):
        if node is not None:
            mrml.set_provenance(node, task="contour", fixed=name, moving_labels=planning_segmentation.GetName(),
                                model=result.results.get("model", ""),
                                guided_organs=",".join(result.results.get("guided_organs", [])) or "none",
                                segmentation_weights=",".join(
                                    f"{organ}={weight:g}" for organ, weight in
                                    weights.items()) or "none",
                                segmentation_set_aside=",".join(nodes.set_aside) or "none",
                                near_scan_border=",".join(nodes.near_scan_border) or "none",
                                setup_correction=setup_text(result.results.get("setup_correction")))
    return nodes
