"""``synthlab demo``: built-in data through every available pipeline, with a figure and metrics.

Each pipeline contributes a :class:`DemoStep`; the demo runs them in order and
writes, under the output folder, the volumes (NRRD, which Slicer opens), an
``overview.png`` montage and ``metrics.json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import SimpleITK as sitk

from synthlab import figures, volume
from synthlab.errors import InputError
from synthlab.phantoms import anatomy
from synthlab.progress import ProgressReporter, StageProgress
from synthlab.volume import atomic_output


@dataclass
class StepOutput:
    """Volumes a step wrote (name -> path), label maps to overlay (name -> path) and its metrics."""

    volumes: dict[str, Path] = field(default_factory=dict)
    overlays: dict[str, Path] = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)


@dataclass
class DemoStep:
    name: str
    run: Callable[[Path, StageProgress], StepOutput]


def brain_template_step(folder: Path, progress: StageProgress) -> StepOutput:
    """Write the MNI152 template's T1 and a brain mask from its tissue maps (real anatomy, 2 mm)."""
    progress(0.0, "loading MNI152")
    template = anatomy.mni152()
    t1 = volume.to_canonical(template.t1, spacing=(2.0, 2.0, 2.0))
    brain = volume.to_canonical(sitk.Add(template.gm, template.wm), spacing=(2.0, 2.0, 2.0))
    mask = sitk.Cast(sitk.BinaryThreshold(brain, 0.5, 10.0), sitk.sitkUInt8)
    paths = {"mni152_t1": folder / "mni152_t1.nrrd", "brain_mask": folder / "brain_mask.nrrd"}
    volume.write_image(t1, paths["mni152_t1"])
    volume.write_image(mask, paths["brain_mask"])
    progress(1.0, "template written")
    brain_ml = float(sitk.GetArrayViewFromImage(mask).sum()) * 8.0 / 1000.0
    return StepOutput(volumes={"mni152_t1": paths["mni152_t1"]}, overlays={"brain_mask": paths["brain_mask"]},
                      metrics={"brain_volume_ml": round(brain_ml, 1)})


def available_steps() -> list[DemoStep]:
    """Every demo step that exists in this installation, in order."""
    return [DemoStep("brain template", brain_template_step)]


def run_demo(out: Path, reporter: ProgressReporter) -> dict:
    """Run every step into ``out``; return the paths of the overview and metrics files."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError("--out", f"{out} is a file; give a folder for the demo's outputs")
    out.mkdir(parents=True, exist_ok=True)
    steps = available_steps()
    outputs: dict[str, StepOutput] = {}
    metrics: dict = {}
    for index, step in enumerate(steps):
        started = time.perf_counter()
        folder = out / step.name.replace(" ", "_")
        folder.mkdir(exist_ok=True)
        outputs[step.name] = step.run(folder, reporter.stage(step.name, index / len(steps),
                                                             (index + 1) / len(steps)))
        metrics[step.name] = {**outputs[step.name].metrics,
                              "seconds": round(time.perf_counter() - started, 2)}
    overview = out / "overview.png"
    figures.overview(outputs, overview)
    metrics_path = out / "metrics.json"
    with atomic_output(metrics_path) as temporary:
        temporary.write_text(json.dumps(metrics, indent=2) + "\n")
    reporter.update("done", 1.0, f"demo written to {out}", result={"overview": str(overview)})
    return {"overview": overview, "metrics": metrics_path, "steps": metrics}
