"""Synthesize a CBV map from non-contrast MRI nodes with the ``synthlab cbv`` backend task."""

from __future__ import annotations

from synthlab import mrml
from synthlab.client import Backend, JobResult
from synthlab.slicer_job import NodeJob

# The command-line contract: `synthlab cbv --t1 F --t2 F --adc F [--flair F] [--mask F] --out F`.
REQUIRED_INPUTS = ("t1", "t2", "adc")
OPTIONAL_INPUTS = ("flair", "mask")
SYNTHETIC_LABEL = "synthetic, not for diagnosis"
PERFUSION_COLOR_NODE = "vtkMRMLColorTableNodeRainbow"


def start_cbv(backend: Backend, inputs: dict, model_id: str | None = None, device: str = "auto") -> NodeJob:
    """Start synthesis. ``inputs`` maps ``t1``, ``t2``, ``adc``, ``flair``, ``mask`` to nodes (None if absent)."""
    missing = [name.upper() for name in REQUIRED_INPUTS if inputs.get(name) is None]
    if missing:
        raise ValueError(f"Select the {' and '.join(missing)} volume{'s' if len(missing) > 1 else ''} first.")
    selected = {name: inputs.get(name) for name in REQUIRED_INPUTS + OPTIONAL_INPUTS}
    return NodeJob(backend, "cbv", selected, {"out": "cbv.nrrd"}, {"model": model_id, "device": device})


def load_cbv(scene, result: JobResult, reference_node):
    """The synthetic CBV as a volume node: named and attributed as synthetic, with a perfusion colour map."""
    name = f"{reference_node.GetName()} CBV ({SYNTHETIC_LABEL})"
    node = mrml.load_volume(scene, result.outputs["out"], name)
    node.GetDisplayNode().SetAndObserveColorNodeID(PERFUSION_COLOR_NODE)
    mrml.set_provenance(node, synthetic="true", warning=SYNTHETIC_LABEL, task="cbv",
                        reference=reference_node.GetName(), **{k: v for k, v in result.results.items()
                                                               if isinstance(v, str | int | float)})
    return node
