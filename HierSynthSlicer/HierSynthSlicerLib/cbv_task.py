"""Synthesize a CBV map from non-contrast MRI nodes with the ``synthlab cbv`` backend task."""

from __future__ import annotations

from dataclasses import dataclass

from synthlab import mrml
from synthlab.client import Backend, JobResult, RemoteBackend
from synthlab.hiersynth.commands import rcbv_bias_sentence
from synthlab.registry import Registry
from synthlab.slicer_job import NodeJob

# The command-line contract: `synthlab cbv [--t1 F] [--t2 F] [--flair F] [--adc F] [--mask F] [--tumour F]
# --out F`; the model card says which contrasts are required.
CONTRASTS = ("t1", "t2", "flair", "adc")
SYNTHETIC_LABEL = "synthetic, not for diagnosis"
PERFUSION_COLOR_NODE = "vtkMRMLColorTableNodeRainbow"


def required_contrasts(backend: Backend, model_id: str | None = None) -> list[str]:
    """The contrasts the CBV model reads, from its card: the server's copy for a remote backend, else the
    local registry's."""
    if isinstance(backend, RemoteBackend):
        models = [m for m in backend.info().get("models", []) if m.get("task") == "cbv"]
        chosen = [m for m in models if m["id"] == model_id] if model_id else (
            [m for m in models if m.get("default")] or models[-1:])
        if not chosen:
            raise ValueError("The server has no CBV model" + (f" called {model_id}." if model_id else "."))
        return list(chosen[0]["inputs"])
    return list(Registry().resolve("cbv", model_id).inputs)


def start_cbv(backend: Backend, inputs: dict, required: list[str], model_id: str | None = None,
              device: str = "auto") -> NodeJob:
    """Start synthesis. ``inputs`` maps the contrasts, ``mask`` and ``tumour`` (a segmentation) to nodes or None;
    ``required`` are the contrasts the model reads (see :func:`required_contrasts`)."""
    missing = [name.upper() for name in required if inputs.get(name) is None]
    if missing:
        raise ValueError(f"Select the {' and '.join(missing)} volume{'s' if len(missing) > 1 else ''} first "
                         f"(the model reads {', '.join(name.upper() for name in required)}).")
    selected = {name: inputs.get(name) for name in (*required, "mask", "tumour")}
    return NodeJob(backend, "cbv", selected, {"out": "cbv.nrrd"}, {"model": model_id, "device": device})


@dataclass
class CBVNodes:
    volume: object
    tumour_rcbv: float | None
    bias_note: str | None = None

    @property
    def summary(self) -> str:
        """What the panel shows: the tumour's mean rCBV when a tumour was given, and how far the model's card
        says it runs from the truth."""
        if self.tumour_rcbv is None:
            return "Tumour mean rCBV: - (select a tumour segmentation)"
        figure = f"Tumour mean rCBV: {self.tumour_rcbv:.2f} (normal-appearing white matter = 1; {SYNTHETIC_LABEL})"
        return f"{figure}.\n{self.bias_note}." if self.bias_note else figure


def load_cbv(scene, result: JobResult, reference_node) -> CBVNodes:
    """The synthetic CBV as a volume node: named and attributed as synthetic, with a perfusion colour map."""
    name = f"{reference_node.GetName()} CBV ({SYNTHETIC_LABEL})"
    node = mrml.load_volume(scene, result.outputs["out"], name)
    node.GetDisplayNode().SetAndObserveColorNodeID(PERFUSION_COLOR_NODE)
    reported = {key: value for key, value in result.results.items() if isinstance(value, str | int | float)}
    mrml.set_provenance(node, **{**reported, "synthetic": "true", "warning": SYNTHETIC_LABEL, "task": "cbv",
                                 "reference": reference_node.GetName()})
    results = result.results
    bias_note = (rcbv_bias_sentence(results["tumour_rcbv_bias"], results["tumour_rcbv_bias_measured_on"])
                 if "tumour_rcbv_bias" in results else None)
    return CBVNodes(node, results.get("tumour_rcbv"), bias_note)
