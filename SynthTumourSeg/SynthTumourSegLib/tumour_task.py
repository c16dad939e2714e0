"""Segment a brain tumour from MRI nodes with the ``synthlab tumour`` backend task."""

from __future__ import annotations

from synthlab import mrml
from synthlab.client import Backend, JobResult
from synthlab.slicer_job import NodeJob

# The command-line contract: `synthlab tumour --flair F [--t1 F] [--t2 F] [--mask F] --out F [--probability F]`.
OPTIONAL_INPUTS = ("t1", "t2", "mask")


def start_tumour(backend: Backend, inputs: dict, model_id: str | None = None, device: str = "auto") -> NodeJob:
    """Start segmentation. ``inputs`` maps ``flair`` (required), ``t1``, ``t2``, ``mask`` to nodes or None."""
    if inputs.get("flair") is None:
        raise ValueError("Select the FLAIR volume first.")
    selected = {name: inputs.get(name) for name in ("flair",) + OPTIONAL_INPUTS}
    return NodeJob(backend, "tumour", selected, {"out": "tumour.seg.nrrd"}, {"model": model_id, "device": device})


def load_tumour(scene, result: JobResult, flair):
    """The tumour segmentation node on the FLAIR grid, and its volume in ml as reported by the backend."""
    node = mrml.load_segmentation(scene, result.outputs["out"], f"{flair.GetName()} tumour", reference_volume=flair)
    volume_ml = result.results.get("volume_ml")
    mrml.set_provenance(node, task="tumour", reference=flair.GetName(), volume_ml=volume_ml)
    return node, volume_ml
