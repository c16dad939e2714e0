"""``synthlab demo``: built-in data through every available pipeline, with a figure and metrics.

Each pipeline contributes a :class:`DemoStep`; the demo runs them in order and
writes, under the output folder, the volumes (NRRD, which Slicer opens), an
``overview.png`` montage and ``metrics.json``.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from synthlab import figures, volume
from synthlab.errors import InputError
from synthlab.labels import LabelMap, write_labels
from synthlab.phantoms import brain, pelvis
from synthlab.phantoms.fields import case_seed
from synthlab.progress import ProgressReporter, StageProgress
from synthlab.volume import atomic_output


@dataclass
class StepOutput:
    """Volumes a step wrote (name -> path), label maps to overlay (name -> path) and the true label maps to
    compare them with, its metrics, and how to show volumes in the overview (name -> display window; name ->
    colour map; name -> caption, the scores printed in its title)."""

    volumes: dict[str, Path] = field(default_factory=dict)
    overlays: dict[str, Path] = field(default_factory=dict)
    references: dict[str, Path] = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    windows: dict[str, tuple[float, float]] = field(default_factory=dict)
    colormaps: dict[str, str] = field(default_factory=dict)
    captions: dict[str, str] = field(default_factory=dict)


DEMO_SEED = 2026


@dataclass
class DemoStep:
    name: str
    run: Callable[[Path, StageProgress], StepOutput]


def brain_phantom_step(folder: Path, progress: StageProgress) -> StepOutput:
    """One small brain phantom case with a tumour: the contrasts, the true CBV and the tumour labels."""
    progress(0.0, "generating a brain phantom case")
    case = demo_brain_case()
    paths = {name: volume.write_image(case.images[name], folder / f"{name}.nrrd")
             for name in ("t1", "flair", "adc", "cbv")}
    label_path = write_labels(case.labels, folder / "tumour_labels.seg.nrrd")
    progress(1.0, "brain phantom written")
    voxel_ml = float(np.prod(case.mask.GetSpacing())) / 1000
    return StepOutput(volumes=paths, overlays={"tumour": label_path}, colormaps={"cbv": "inferno"}, metrics={
        "anatomy": case.parameters["anatomy"], "tumour_labels": label_path.name,
        "brain_volume_ml": round(float(volume.array_of(case.mask).sum()) * voxel_ml, 1),
        **{f"{s.name}_ml": round(case.labels.volume_ml(s.name), 1) for s in case.labels.segments}})


@functools.cache
def demo_brain_case() -> brain.BrainCase:
    """The demo's brain: a small phantom case with a tumour (made once, shared by the steps)."""
    return brain.generate_case(case_seed(DEMO_SEED, 0), "small", with_tumour=True)


def write_demo_brain(folder: Path, contrasts: list[str]) -> tuple[dict[str, str], str]:
    """The demo brain's ``contrasts`` and brain mask written to ``folder``: (contrast → path, mask path)."""
    case = demo_brain_case()
    inputs = {name: str(volume.write_image(case.images[name], folder / f"{name}.nrrd")) for name in contrasts}
    return inputs, str(volume.write_image(case.mask, folder / "brain_mask.nrrd"))


def demo_pelvis_patient() -> pelvis.PelvisPatient:
    """The demo's pelvis patient: a small phantom with a planning CT and one daily CT."""
    return pelvis.generate_patient(case_seed(DEMO_SEED, 0), 1, "small")


def pelvis_phantom_step(folder: Path, progress: StageProgress) -> StepOutput:
    """A small pelvis phantom patient: planning CT and one daily CT with their true contours."""
    progress(0.0, "generating a pelvis phantom patient")
    patient = demo_pelvis_patient()
    images, contour_files, metrics = {}, {}, {}
    for index, (ct, contours) in enumerate(patient.scans):
        name = pelvis.scan_name(index)
        images[name] = volume.write_image(ct, folder / f"{name}_ct.nrrd")
        contour_files[name] = write_labels(contours, folder / f"{name}_contours.seg.nrrd")
        metrics[name] = {f"{s.name}_ml": round(contours.volume_ml(s.name), 1) for s in contours.segments}
    progress(1.0, "pelvis phantom written")
    return StepOutput(volumes={"planning_ct": images["planning"]},
                      overlays={"planning contours": contour_files["planning"]}, metrics=metrics,
                      windows={"planning_ct": pelvis.SOFT_TISSUE_WINDOW})


def contour_step(folder: Path, progress: StageProgress) -> StepOutput:
    """The registered contour model propagates the demo patient's planning contours to the daily CT."""
    from synthlab.crossstitch.evaluation import contour_metrics
    from synthlab.crossstitch.inference import load_model, propagate_contours

    progress(0.0, "loading the contour model")
    model = load_model("contour")
    (planning_ct, planning_contours), (daily_ct, true_contours) = demo_pelvis_patient().scans
    started = time.perf_counter()
    result = propagate_contours(model, daily_ct, planning_ct, planning_contours, progress=progress)
    seconds = time.perf_counter() - started
    volume.write_image(result.field, folder / "displacement.nrrd")
    shift = sitk.VectorMagnitude(result.field)  # how far each daily voxel's planning point moved, in mm
    paths = {"daily_ct": volume.write_image(daily_ct, folder / "daily_ct.nrrd"),
             "displacement_mm": volume.write_image(shift, folder / "displacement_magnitude_mm.nrrd")}
    identity = contour_metrics(planning_contours, true_contours)  # contours left where they were planned
    metrics = contour_metrics(result.contours, true_contours, result.field)
    return StepOutput(
        volumes=paths, overlays={"propagated contours": write_labels(result.contours, folder / "daily_contours.seg.nrrd")},
        references={"true contours": write_labels(true_contours, folder / "true_daily_contours.seg.nrrd")},
        windows={"daily_ct": pelvis.SOFT_TISSUE_WINDOW, "displacement_mm": (0.0, float(volume.array_of(shift).max()))},
        colormaps={"displacement_mm": "viridis"},
        captions={"daily_ct": "MSD mm: " + ", ".join(f"{organ} {scores['msd_mm']:.2f}"
                                                     for organ, scores in metrics["organs"].items())},
        metrics={"model": model.model_id, "inference_seconds": round(seconds, 2),
                 **result.inference_summary(),
                 "propagated": metrics, "without_propagation": identity["organs"]})


def tumour_step(folder: Path, progress: StageProgress) -> StepOutput:
    """The registered SynthTumour model segments the demo brain's tumour (written by the brain phantom step)."""
    from synthlab.metrics import dice, surface_distances
    from synthlab.synthtumour.inference import TUMOUR_SEGMENT, TumourModel, segment_tumour

    progress(0.0, "loading the tumour model")
    model = TumourModel.registered()
    case = demo_brain_case()
    inputs, mask_path = write_demo_brain(folder, model.channels)
    started = time.perf_counter()
    result = segment_tumour(model, inputs, mask_path, 0.5, progress)
    seconds = time.perf_counter() - started
    segmentation = write_labels(result.labels, folder / "tumour_segmentation.seg.nrrd")
    truth = volume.array_of(case.labels.image) > 0
    true_tumour = write_labels(LabelMap(volume.image_like(truth.astype(np.uint8), case.labels.image), [TUMOUR_SEGMENT]),
                               folder / "true_tumour.seg.nrrd")
    found = volume.array_of(result.labels.image) > 0
    spacing = list(case.mask.GetSpacing())[::-1]
    true_ml, overlap = float(truth.sum()) * float(np.prod(spacing)) / 1000, dice(found, truth)
    return StepOutput(volumes={"flair": Path(inputs["flair"])}, overlays={"segmented tumour": segmentation},
                      references={"true tumour": true_tumour},
                      captions={"flair": f"Dice {overlap:.2f}; {result.volume_ml:.1f} ml found, {true_ml:.1f} ml true"},
                      metrics={"model": model.model_id, "inference_seconds": round(seconds, 2),
                               "tumour_volume_ml": round(result.volume_ml, 1), "true_volume_ml": round(true_ml, 1),
                               "dice": round(overlap, 3),
                               "hd95_mm": round(surface_distances(found, truth, spacing)["hd95_mm"], 2)})


def cbv_step(folder: Path, progress: StageProgress) -> StepOutput:
    """The registered CBV model synthesises the demo brain's CBV; shown beside the true CBV and the difference."""
    from synthlab.hiersynth.commands import tumour_rcbv_metrics
    from synthlab.hiersynth.data import read_case
    from synthlab.hiersynth.evaluation import cbv_metrics
    from synthlab.hiersynth.inference import CBVModel, synthesise_cbv

    progress(0.0, "loading the CBV model")
    model = CBVModel.registered()
    case = demo_brain_case()
    inputs, mask_path = write_demo_brain(folder, model.contrasts)
    tumour_path = write_labels(case.labels, folder / "tumour_labels.seg.nrrd")
    started = time.perf_counter()
    result = synthesise_cbv(model, inputs, mask_path, str(tumour_path), False, progress)
    seconds = time.perf_counter() - started
    brain_mask = volume.array_of(case.mask) > 0
    synthetic, truth = volume.array_of(result.cbv), volume.array_of(case.images["cbv"])
    difference = np.where(brain_mask, synthetic - truth, 0).astype(np.float32)
    paths = {"synthetic_cbv": volume.write_image(result.cbv, folder / "synthetic_cbv.nrrd"),
             "true_cbv": volume.write_image(case.images["cbv"], folder / "true_cbv.nrrd"),
             "difference": volume.write_image(volume.image_like(difference, result.cbv), folder / "difference.nrrd")}
    top = float(np.percentile(truth[brain_mask], 99.5))
    metrics = cbv_metrics(synthetic, truth, brain_mask, volume.array_of(case.labels.image) > 0)
    # the panel's figure from the true CBV: the same formula over the same normal-appearing white matter
    on_canvas = read_case({**inputs, "cbv": str(paths["true_cbv"]), "label": str(tumour_path)}, model.contrasts,
                          model.spacing, mask_path)
    true_rcbv = tumour_rcbv_metrics(on_canvas.cbv, on_canvas, model).get("true_tumour_rcbv")
    return StepOutput(volumes=paths, overlays={"tumour": tumour_path},
                      colormaps={"synthetic_cbv": "inferno", "true_cbv": "inferno", "difference": "coolwarm"},
                      captions=cbv_captions(metrics, result.tumour_rcbv, true_rcbv),
                      windows={"synthetic_cbv": (0.0, top), "true_cbv": (0.0, top), "difference": (-top / 2, top / 2)},
                      metrics={"model": model.model_id, "inference_seconds": round(seconds, 2),
                               "warning": "synthetic CBV, not for diagnosis",
                               **{key: round(value, 3) for key, value in metrics.items()},
                               "tumour_rcbv_synthetic": round(result.tumour_rcbv, 2)
                               if result.tumour_rcbv is not None else None,
                               "tumour_rcbv_true": round(true_rcbv, 2) if true_rcbv is not None else None})


def cbv_captions(metrics: dict, synthetic_rcbv: float | None, true_rcbv: float | None) -> dict[str, str]:
    """The CBV rows' scores: SSIM over the brain and in the tumour on the synthetic map, the tumour's rCBV on both."""
    scores = f"SSIM brain {metrics['ssim_brain']:.2f}" + (
        f", tumour {metrics['ssim_tumour']:.2f}" if "ssim_tumour" in metrics else "")
    if synthetic_rcbv is None or true_rcbv is None:
        return {"synthetic_cbv": scores}
    return {"synthetic_cbv": f"{scores}; tumour rCBV {synthetic_rcbv:.2f}", "true_cbv": f"tumour rCBV {true_rcbv:.2f}"}


def available_steps() -> list[DemoStep]:
    """Every demo step that exists in this installation, in order (model steps need a registered model)."""
    from synthlab.registry import Registry

    steps = [DemoStep("brain phantom", brain_phantom_step), DemoStep("pelvis phantom", pelvis_phantom_step)]
    if Registry().for_task("contour"):
        steps.append(DemoStep("contour propagation", contour_step))
    if Registry().for_task("tumour"):
        steps.append(DemoStep("tumour segmentation", tumour_step))
    if Registry().for_task("cbv"):
        steps.append(DemoStep("CBV synthesis", cbv_step))
    return steps


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
