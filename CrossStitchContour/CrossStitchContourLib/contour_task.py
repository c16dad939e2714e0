"""Propagate planning contours to the daily CT with the ``synthlab contour`` backend task."""

from __future__ import annotations

from synthlab import mrml
from synthlab.client import Backend, JobResult
from synthlab.slicer_job import NodeJob

# The command-line contract: `synthlab contour --fixed F --moving F --moving-labels F --out-labels F [--out-field F]`.
OUTPUT_FILES = {"out_labels": "daily_contours.seg.nrrd", "out_field": "displacement.nrrd"}


def start_contour(backend: Backend, planning_ct, planning_segmentation, daily_ct,
                  model_id: str | None = None, device: str = "auto") -> NodeJob:
    """Start propagation of ``planning_segmentation`` (on ``planning_ct``) to ``daily_ct``."""
    missing = [label for label, node in (("planning CT", planning_ct), ("planning contours", planning_segmentation),
                                         ("daily CT", daily_ct)) if node is None]
    if missing:
        raise ValueError(f"Select the {', '.join(missing)} first.")
    if planning_segmentation.GetSegmentation().GetNumberOfSegments() == 0:
        raise ValueError(f"The planning segmentation '{planning_segmentation.GetName()}' has no segments.")
    inputs = {"fixed": daily_ct, "moving": planning_ct, "moving_labels": planning_segmentation}
    return NodeJob(backend, "contour", inputs, OUTPUT_FILES, {"model": model_id, "device": device})


def load_contours(scene, result: JobResult, daily_ct, planning_segmentation):
    """Daily contours (planning names and colours, on the daily CT) and the displacement field as nodes."""
    contours = mrml.load_segmentation(scene, result.outputs["out_labels"],
                                      f"{daily_ct.GetName()} contours", reference_volume=daily_ct)
    field = mrml.load_grid_transform(scene, result.outputs["out_field"], f"{daily_ct.GetName()} deformation")
    for node in (contours, field):
        mrml.set_provenance(node, task="contour", fixed=daily_ct.GetName(),
                            moving_labels=planning_segmentation.GetName())
    return contours, field
