"""Segment a brain tumour from MRI nodes with the ``synthlab tumour`` backend task."""

from __future__ import annotations

from dataclasses import dataclass

from synthlab import mrml
from synthlab.client import Backend, JobResult
from synthlab.slicer_job import NodeJob

# The command-line contract: `synthlab tumour --flair F [--t1 F] [--t2 F] [--mask F] --out F [--probability F]`.
OPTIONAL_INPUTS = ("t1", "t2", "mask")


def start_tumour(backend: Backend, inputs: dict, model_id: str | None = None, device: str = "auto",
                 probability: bool = False) -> NodeJob:
    """Start segmentation. ``inputs`` maps ``flair`` (required), ``t1``, ``t2``, ``mask`` to nodes or None."""
    if inputs.get("flair") is None:
        raise ValueError("Select the FLAIR volume first.")
    selected = {name: inputs.get(name) for name in ("flair",) + OPTIONAL_INPUTS}
    outputs = {"out": "tumour.seg.nrrd", **({"probability": "probability.nrrd"} if probability else {})}
    return NodeJob(backend, "tumour", selected, outputs, {"model": model_id, "device": device})


@dataclass
class TumourNodes:
    segmentation: object
    volume_ml: float | None
    probability: object | None = None

    @property
    def summary(self) -> str:
        """What the panel shows: the volume, or that no tumour was found."""
        if self.volume_ml is None:
            return "Tumour volume: -"
        if self.volume_ml == 0:
            return "No tumour found (empty segmentation)"
        return f"Tumour volume: {self.volume_ml:.1f} ml"


def load_tumour(scene, result: JobResult, flair) -> TumourNodes:
    """The tumour segmentation node on the FLAIR grid, its volume in ml as reported by the backend, and the
    probability volume when it was asked for."""
    node = mrml.load_segmentation(scene, result.outputs["out"], f"{flair.GetName()} tumour", reference_volume=flair)
    volume_ml = result.results.get("volume_ml")
    model = result.results.get("model")
    mrml.set_provenance(node, task="tumour", model=model, reference=flair.GetName(), volume_ml=volume_ml)
    probability = None
    if "probability" in result.outputs:
        probability = mrml.load_volume(scene, result.outputs["probability"], f"{flair.GetName()} tumour probability")
        mrml.set_provenance(probability, task="tumour", model=model, reference=flair.GetName())
    return TumourNodes(node, volume_ml, probability)
