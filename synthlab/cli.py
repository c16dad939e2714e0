"""The ``synthlab`` command. Each pipeline adds its sub-command here.

Bad input ends with one line on stderr (``synthlab: error: <input>: <problem>``)
and exit code 2; a GPU out-of-memory error ends with the fix and exit code 3.
"""

from __future__ import annotations

import enum
import faulthandler
import json
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

try:  # recent typers vendor click; older ones use click itself
    from typer._click.exceptions import ClickException
except ImportError:
    from click.exceptions import ClickException

from synthlab import __version__, volume
from synthlab.errors import EXIT_BAD_INPUT, InputError
from synthlab.labels import parse_organ_list, parse_organ_map
from synthlab.progress import PROGRESS_MODES, ProgressReporter

EXIT_OUT_OF_MEMORY = 3

app = typer.Typer(name="synthlab", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="SynthLab: deep-learning image synthesis backends for 3D Slicer.")

ProgressMode = enum.Enum("ProgressMode", {mode: mode for mode in PROGRESS_MODES}, type=str)
ProgressOption = Annotated[ProgressMode, typer.Option(
    "--progress", help="How to report progress (json: one event a line on stdout).")]


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"synthlab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", help="Print the version and exit.",
                                                callback=_print_version, is_eager=True)] = False):
    """SynthLab: deep-learning image synthesis backends for 3D Slicer."""


@app.command()
def info(
    files: Annotated[list[Path], typer.Argument(help="Images or label maps to describe.")],
    same_grid: Annotated[bool, typer.Option("--same-grid", help="Require every file to share the first one's "
                                                               "grid (e.g. co-registered T1/T2/FLAIR).")] = False,
):
    """Print each image's size, spacing, origin, direction and value range as JSON."""
    images = {str(path): volume.read_image(path, str(path), dimension=(2, 3), check_content=False)
              for path in files}
    if same_grid:
        (first_name, first), *others = images.items()
        volume.require_same_grid(first_name, first, dict(others))
    for name, image in images.items():
        values = volume.array_of(image)
        typer.echo(json.dumps({
            "file": name, "dimension": image.GetDimension(), "size": image.GetSize(),
            "spacing": image.GetSpacing(), "origin": image.GetOrigin(), "direction": image.GetDirection(),
            "pixel_type": image.GetPixelIDTypeAsString(), "min": float(values.min()), "max": float(values.max()),
        }))


@app.command()
def resample(
    input: Annotated[Path, typer.Option("--input", help="Image to resample.")],
    reference: Annotated[Path, typer.Option("--reference", help="Image whose grid the output takes.")],
    out: Annotated[Path, typer.Option("--out", help="Output file (.nrrd, .nii.gz, .mha).")],
    labels: Annotated[bool, typer.Option("--labels", help="Nearest-neighbour interpolation for label maps.")] = False,
    progress: ProgressOption = ProgressMode.bar,
):
    """Resample an image onto another image's grid in physical space (e.g. a CBV map onto the T1)."""
    with ProgressReporter(progress.value) as reporter:
        reporter.update("read", 0.0, "reading inputs")
        reference_image = volume.read_image(reference, "--reference", dimension=(2, 3))
        image = volume.read_image(input, "--input", dimension=reference_image.GetDimension(),
                                  check_content=not labels)
        volume.require_overlap("--reference", reference_image, "--input", image)
        reporter.update("resample", 0.5, "resampling")
        volume.write_image(volume.onto_grid(image, reference_image, is_label=labels), out)
        reporter.update("done", 1.0, f"wrote {out}", result={"out": str(out)})


phantom_app = typer.Typer(no_args_is_help=True, help="Generate built-in phantom datasets (images, labels, datalist).")
app.add_typer(phantom_app, name="phantom")


class PhantomSize(str, enum.Enum):
    small = "small"
    full = "full"


def _phantom_folder(out: Path) -> Path:
    """An output folder that holds no earlier dataset: phantoms never overwrite data."""
    if out.exists() and not out.is_dir():
        raise InputError("--out", f"{out} is a file; give a folder")
    if (out / "datalist.json").exists():
        raise InputError("--out", f"{out} already holds a dataset (datalist.json); choose a new folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _positive(name: str, value: int) -> None:
    if value < 1:
        raise InputError(name, f"must be at least 1 (got {value})")


def _cache_folder(cache: Path | None) -> Path | None:
    """``--cache``'s check, shared by every trainer: a folder, new or existing, not a file."""
    if cache is not None and cache.exists() and not cache.is_dir():
        raise InputError("--cache", f"{cache} is a file; give a folder")
    return cache


def _loader_workers(value: int) -> int:
    if value < 0:
        raise InputError("--workers", f"must be 0 or more (got {value})")
    return value


@phantom_app.command("brain")
def phantom_brain(
    out: Annotated[Path, typer.Option("--out", help="New folder for the cases and datalist.json.")],
    cases: Annotated[int, typer.Option("--cases", help="Number of subjects.")] = 10,
    seed: Annotated[int, typer.Option("--seed", help="Random seed: the same seed gives the same cases.")] = 0,
    size: Annotated[PhantomSize, typer.Option("--size", help="small: 2 mm, 96³ (tests, CPU training); "
                                                             "full: 1 mm, 192³.")] = PhantomSize.small,
    preview: Annotated[bool, typer.Option("--preview", help="Also write preview.png (a tumour case).")] = False,
    workers: Annotated[int, typer.Option("--workers", help="Processes making cases at once (0: one after "
                                                           "another); the cases are the same either way.")] = 0,
    progress: ProgressOption = ProgressMode.bar,
):
    """Multi-contrast brain MRI (T1w, T2w, FLAIR, ADC), CBV and tumour labels from real anatomy."""
    from synthlab.phantoms import brain

    _positive("--cases", cases)
    workers = _loader_workers(workers)
    with ProgressReporter(progress.value) as reporter:
        path = brain.generate_dataset(_phantom_folder(out), cases, seed, size.value,
                                      reporter.stage("brain phantom", 0.0, 1.0), preview, workers)
        reporter.update("done", 1.0, f"wrote {path}", result={"datalist": str(path)})


@phantom_app.command("pelvis")
def phantom_pelvis(
    out: Annotated[Path, typer.Option("--out", help="New folder for the patients and datalist.json.")],
    patients: Annotated[int, typer.Option("--patients", help="Number of patients.")] = 4,
    fractions: Annotated[int, typer.Option("--fractions", help="Daily CTs per patient (besides planning).")] = 5,
    seed: Annotated[int, typer.Option("--seed", help="Random seed: the same seed gives the same patients.")] = 0,
    size: Annotated[PhantomSize, typer.Option("--size", help="full: whole pelvis, 1.0–1.5 mm pixels, 2–3 mm "
                                                             "slices; small: 1.5×1.5×3 mm, cropped to the "
                                                             "organs.")] = PhantomSize.full,
    preview: Annotated[bool, typer.Option("--preview", help="Also write preview.png (first patient).")] = False,
    progress: ProgressOption = ProgressMode.bar,
):
    """Planning and daily pelvic CTs (HU) with prostate, seminal vesicle, rectum and bladder contours."""
    from synthlab.phantoms import pelvis

    _positive("--patients", patients)
    _positive("--fractions", fractions)
    with ProgressReporter(progress.value) as reporter:
        path = pelvis.generate_dataset(_phantom_folder(out), patients, fractions, seed, size.value,
                                       reporter.stage("pelvis phantom", 0.0, 1.0), preview)
        reporter.update("done", 1.0, f"wrote {path}", result={"datalist": str(path)})


DatalistOption = Annotated[Path, typer.Option("--datalist", help="MONAI datalist JSON of (fixed, moving) pairs.")]
TrainOutOption = Annotated[Path, typer.Option("--out", help="Folder for checkpoints (run again to resume), "
                                                            "weights and card.")]
StepsOption = Annotated[int, typer.Option("--steps", help="Optimiser steps in all.")]
MinutesOption = Annotated[float | None, typer.Option("--minutes", help="Stop after this many minutes "
                                                               "of this run (a resumed run gets them again).")]
DevicesOption = Annotated[int, typer.Option("--devices", help="Processes/GPUs (DDP when more than 1).")]
AcceleratorOption = Annotated[str, typer.Option("--accelerator", help="auto, cpu or gpu.")]
ModelIdOption = Annotated[str | None, typer.Option("--model-id", help="Name of the exported model.")]
LoaderWorkersOption = Annotated[int, typer.Option("--workers", help="Background processes reading the cases and "
                                                                    "making the training examples (0: the "
                                                                    "training process does it; a few keep a "
                                                                    "GPU busy).")]
CacheOption = Annotated[Path | None, typer.Option("--cache", help="Folder that keeps the prepared images "
                                                        "(resampling, bias fits): a resumed run, or another run "
                                                        "on the same images, reads them from there.",
                                                        callback=_cache_folder)]
ModelOption = Annotated[str | None, typer.Option("--model", help="Registered model id (default: the task's "
                                                                 "default model).")]
DeviceOption = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or mps.")]
MirrorOption = Annotated[bool, typer.Option("--mirror/--no-mirror", help="Average with the prediction on the "
                                                                      "left–right mirror image (twice the network time).")]
IterationsOption = Annotated[int | None, typer.Option("--iterations", help="Instance optimisation: gradient steps "
                                                          "a pyramid level on this pair (0: off; default: the "
                                                          "model card's).")]
GuidedOption = Annotated[bool, typer.Option("--guided", help="Instance optimisation also pulls the contours towards "
                                                             "the joint model's own segmentation of the daily CT.")]
GuideOrgansOption = Annotated[str | None, typer.Option("--guide-organs", help="Guide only these organs "
                                                        "(comma-separated, or 'none'); default: every organ with "
                                                        "--guided, else the model card's choice.")]
SegmentationWeightOption = Annotated[str | None, typer.Option("--segmentation-weight", help="Weight of the joint "
                                     "model's own segmentation against the warped planning contour in today's "
                                     "contours: one number for every organ, ORGAN=WEIGHT pairs (0 to 1), or "
                                     "'none'; default: the model card's.")]
SetupCorrectionOption = Annotated[bool | None, typer.Option("--setup-correction/--no-setup-correction", help="Match "
                                 "the two CTs' bone rigidly first (the patient's set-up), then register what is "
                                 "left; default: the model card's choice.")]
WindowOption = Annotated[int | None, typer.Option("--window", help="Sliding-window side in model voxels "
                                                                  "(default: the whole region at once).")]


@app.command()
def contour(
    fixed: Annotated[Path, typer.Option("--fixed", help="Daily CT (HU).")],
    moving: Annotated[Path, typer.Option("--moving", help="Planning CT (HU).")],
    moving_labels: Annotated[Path, typer.Option("--moving-labels", help="Planning contours (.seg.nrrd, or a "
                                                                        "label volume with a .labels.json).")],
    out_labels: Annotated[Path, typer.Option("--out-labels", help="Today's contours (.seg.nrrd keeps names).")],
    out_field: Annotated[Path | None, typer.Option("--out-field", help="Displacement field (ITK convention: LPS mm "
                                                   "on the daily grid, daily -> planning).")] = None,
    out_warped: Annotated[Path | None, typer.Option("--out-warped", help="Planning CT warped onto the daily "
                                                                         "CT.")] = None,
    out_segmentation: Annotated[Path | None, typer.Option("--out-segmentation", help="The network's own "
                                                          "segmentation of the daily CT.")] = None,
    reference_labels: Annotated[Path | None, typer.Option("--reference-labels", help="Reference contours on the "
                                                          "daily CT: report Dice, MSD and HD95.")] = None,
    out_metrics: Annotated[Path | None, typer.Option("--out-metrics", help="Metrics JSON (with "
                                                     "--reference-labels).")] = None,
    organ_map: Annotated[str | None, typer.Option("--organ-map", help="Planning segment -> model organ, e.g. "
                                                  "'SV=seminal vesicles,Blase=bladder'.")] = None,
    model: ModelOption = None, device: DeviceOption = "auto", iterations: IterationsOption = None,
    window: WindowOption = None, guided: GuidedOption = False, guide_organs: GuideOrgansOption = None,
    segmentation_weight: SegmentationWeightOption = None, setup_correction: SetupCorrectionOption = None,
    progress: ProgressOption = ProgressMode.bar,
):
    """Propagate planning contours to today's CT (cross-stitch registration + segmentation)."""
    from synthlab.crossstitch.commands import run_contour

    with ProgressReporter(progress.value) as reporter:
        result = run_contour(fixed, moving, moving_labels, out_labels, out_field, out_warped, out_segmentation,
                             reference_labels, out_metrics, parse_organ_map(organ_map), model, device, iterations,
                             window, reporter.stage("contour", 0.0, 1.0), guided, parse_organ_list(guide_organs),
                             segmentation_weight, setup_correction)
        reporter.update("done", 1.0, f"wrote {out_labels}", result=result)
    for line in result.get("summary", []):
        typer.echo(line, err=progress.value == "json")


@app.command()
def register(
    fixed: Annotated[Path, typer.Option("--fixed", help="Fixed image (2D or 3D).")],
    moving: Annotated[Path, typer.Option("--moving", help="Moving image.")],
    out_warped: Annotated[Path, typer.Option("--out-warped", help="Moving image warped onto the fixed grid.")],
    out_field: Annotated[Path | None, typer.Option("--out-field", help="Displacement field (ITK convention: LPS "
                                                   "mm on the fixed grid, fixed -> moving).")] = None,
    model: ModelOption = None, device: DeviceOption = "auto", iterations: IterationsOption = None,
    window: WindowOption = None, progress: ProgressOption = ProgressMode.bar,
):
    """Deformable registration of two images with the unsupervised network (no labels).

    With --model optimisation-only (the default while no register model is registered) there is no
    network: instance optimisation from zero displacement, 100 steps a level unless --iterations says.
    """
    from synthlab.crossstitch.commands import run_register

    with ProgressReporter(progress.value) as reporter:
        result = run_register(fixed, moving, out_warped, out_field, model, device, iterations, window,
                              reporter.stage("register", 0.0, 1.0))
        reporter.update("done", 1.0, f"wrote {out_warped}", result=result)


@app.command()
def tumour(
    flair: Annotated[Path, typer.Option("--flair", help="FLAIR (skull-stripped, or give --mask).")],
    out: Annotated[Path, typer.Option("--out", help="Tumour segmentation on the FLAIR grid (.seg.nrrd keeps "
                                                    "the name, colour and terminology).")],
    t1: Annotated[Path | None, typer.Option("--t1", help="T1 (if the model uses it).")] = None,
    t2: Annotated[Path | None, typer.Option("--t2", help="T2 (if the model uses it).")] = None,
    mask: Annotated[Path | None, typer.Option("--mask", help="Brain mask (default: estimated from a "
                                                             "skull-stripped FLAIR).")] = None,
    probability: Annotated[Path | None, typer.Option("--probability", help="Also write the tumour "
                                                     "probability map.")] = None,
    min_component_ml: Annotated[float, typer.Option("--min-component-ml", help="Drop tumour components "
                                                    "smaller than this.")] = 0.5,
    model: ModelOption = None, device: DeviceOption = "auto", mirror: MirrorOption = True,
    progress: ProgressOption = ProgressMode.bar,
):
    """Segment a brain tumour with the SynthTumour model (trained with no expert labels)."""
    from synthlab.synthtumour.commands import run_tumour

    with ProgressReporter(progress.value) as reporter:
        result = run_tumour(flair, t1, t2, mask, out, probability, model, device, min_component_ml, mirror,
                            reporter.stage("tumour", 0.0, 1.0))
        reporter.update("done", 1.0, f"wrote {out}", result=result)
    for line in result["summary"]:
        typer.echo(line, err=progress.value == "json")


@app.command()
def cbv(
    out: Annotated[Path, typer.Option("--out", help="Synthetic CBV on the grid of the model's first contrast.")],
    t1: Annotated[Path | None, typer.Option("--t1", help="T1-weighted image.")] = None,
    t2: Annotated[Path | None, typer.Option("--t2", help="T2-weighted image.")] = None,
    flair: Annotated[Path | None, typer.Option("--flair", help="FLAIR image.")] = None,
    adc: Annotated[Path | None, typer.Option("--adc", help="ADC map.")] = None,
    mask: Annotated[Path | None, typer.Option("--mask", help="Brain mask (default: estimated from a "
                                                             "skull-stripped first contrast).")] = None,
    tumour: Annotated[Path | None, typer.Option("--tumour", help="Tumour label map: report its mean rCBV.")] = None,
    rcbv: Annotated[Path | None, typer.Option("--rcbv", help="Also write rCBV (normal-appearing white "
                                                             "matter = 1).")] = None,
    model: ModelOption = None, device: DeviceOption = "auto", mirror: MirrorOption = True,
    progress: ProgressOption = ProgressMode.bar,
):
    """Synthesise a CBV map from non-contrast MRI with HierSynth (synthetic, not for diagnosis)."""
    from synthlab.hiersynth.commands import run_cbv

    with ProgressReporter(progress.value) as reporter:
        result = run_cbv({"t1": t1, "t2": t2, "flair": flair, "adc": adc}, mask, tumour, out, rcbv, model, device,
                         mirror, reporter.stage("cbv", 0.0, 1.0))
        reporter.update("done", 1.0, f"wrote {out}", result=result)
    for line in result["summary"]:
        typer.echo(line, err=progress.value == "json")


evaluate_app = typer.Typer(no_args_is_help=True, help="Score a model on a datalist's held-out pairs or cases.")
app.add_typer(evaluate_app, name="evaluate")


@evaluate_app.command("contour")
def evaluate_contour(
    datalist: DatalistOption,
    report: Annotated[Path, typer.Option("--report", help="JSON report: per pair and mean per organ.")],
    split: Annotated[str, typer.Option("--split", help="Datalist section to score.")] = "test",
    model: ModelOption = None, device: DeviceOption = "auto", iterations: IterationsOption = None,
    guided: GuidedOption = False, guide_organs: GuideOrgansOption = None,
    segmentation_weight: SegmentationWeightOption = None, setup_correction: SetupCorrectionOption = None,
    progress: ProgressOption = ProgressMode.bar,
):
    """Per-organ Dice, mean surface distance and HD95 (mm), and folding, of propagated contours."""
    from synthlab.crossstitch.commands import run_evaluate

    with ProgressReporter(progress.value) as reporter:
        summary = run_evaluate(datalist, report, split, model, device, iterations,
                               reporter.stage("evaluate contour", 0.0, 1.0), guided, parse_organ_list(guide_organs),
                               segmentation_weight, setup_correction)
        reporter.update("done", 1.0, f"wrote {report}", result={"report": str(report)})
    typer.echo(json.dumps(summary, indent=2), err=progress.value == "json")


@evaluate_app.command("tumour")
def evaluate_tumour(
    datalist: DatalistOption,
    report: Annotated[Path, typer.Option("--report", help="JSON report: per case and mean.")],
    split: Annotated[str, typer.Option("--split", help="Datalist section to score.")] = "test",
    model: ModelOption = None, device: DeviceOption = "auto", mirror: MirrorOption = True,
    progress: ProgressOption = ProgressMode.bar,
):
    """Whole-tumour Dice and HD95 (mm) of the model and of a FLAIR intensity baseline on labelled test cases."""
    from synthlab.synthtumour.commands import run_evaluate

    with ProgressReporter(progress.value) as reporter:
        summary = run_evaluate(datalist, report, split, model, device, mirror,
                               reporter.stage("evaluate tumour", 0.0, 1.0))
        reporter.update("done", 1.0, f"wrote {report}", result={"report": str(report)})
    typer.echo(json.dumps(summary, indent=2), err=progress.value == "json")


@evaluate_app.command("cbv")
def evaluate_cbv(
    datalist: DatalistOption,
    report: Annotated[Path, typer.Option("--report", help="JSON report: per case and mean, per model.")],
    split: Annotated[str, typer.Option("--split", help="Datalist section to score.")] = "test",
    models: Annotated[list[str] | None, typer.Option("--model", help="Registered model id; repeat to compare "
                                                      "several (default: the task's default model).")] = None,
    device: DeviceOption = "auto", mirror: MirrorOption = True, progress: ProgressOption = ProgressMode.bar,
):
    """PSNR, MAE, SSIM over the brain and SSIM in the tumour ROI of synthetic against true CBV."""
    from synthlab.hiersynth.commands import run_evaluate

    with ProgressReporter(progress.value) as reporter:
        summary = run_evaluate(datalist, report, split, models or [None], device, mirror,
                               reporter.stage("evaluate cbv", 0.0, 1.0))
        reporter.update("done", 1.0, f"wrote {report}", result={"report": str(report)})
    typer.echo(json.dumps(summary, indent=2), err=progress.value == "json")


train_app = typer.Typer(no_args_is_help=True, help="Train a model from a datalist (resumable; safetensors + card).")
app.add_typer(train_app, name="train")

Configuration = enum.Enum("Configuration", {c: c for c in ("crossstitch", "loss-joined", "registration-only",
                                                          "segmentation-only")}, type=str)
Photometric = enum.Enum("Photometric", {"ncc": "ncc", "l2": "l2"}, type=str)


@train_app.command("crossstitch")
def train_crossstitch(
    datalist: DatalistOption, out: TrainOutOption,
    configuration: Annotated[Configuration, typer.Option("--configuration", help="crossstitch (the method), "
                             "loss-joined, registration-only or segmentation-only.")] = Configuration.crossstitch,
    steps: StepsOption = 400, minutes: MinutesOption = None,
    spacing: Annotated[float, typer.Option("--spacing", help="Model grid spacing (mm).")] = 3.0,
    patch: Annotated[int, typer.Option("--patch", help="In-plane patch side (voxels, multiple of 4).")] = 48,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 2,
    learned_weights: Annotated[bool, typer.Option("--learned-weights", help="Learn the task weights "
                                                  "(homoscedastic uncertainty) instead of equal ones.")] = False,
    diffeomorphic: Annotated[bool, typer.Option("--diffeomorphic", help="Integrate a velocity field "
                                                "(scaling and squaring).")] = False,
    learning_rate: Annotated[float, typer.Option("--learning-rate", help="RAdam step size.")] = 5e-4,
    start_from: Annotated[list[Path] | None, typer.Option("--start-from", help="A registration-only or "
                          "segmentation-only model (.safetensors) whose branch starts this one; repeat for "
                          "both. A joint model starts both branches (and its cross-stitch units).")] = None,
    field_of_view_cuts: Annotated[float, typer.Option("--field-of-view-cuts", help="Share (0-1) of training "
                                  "patches whose daily CT is cut short, as a cone-beam CT's field of view.")] = 0.0,
    stitch_rate_scale: Annotated[float, typer.Option("--stitch-rate-scale", help="The cross-stitch units' "
                                                     "step size as a multiple of --learning-rate.")] = 1.0,
    devices: DevicesOption = 1, accelerator: AcceleratorOption = "auto", seed: int = 0,
    model_id: ModelIdOption = None, workers: LoaderWorkersOption = 0, cache: CacheOption = None,
    progress: ProgressOption = ProgressMode.bar,
):
    """Train the joint registration + segmentation model on CT pairs with contours (pelvis)."""
    from synthlab.crossstitch.fit import FitOptions, fit

    for name, value in (("--steps", steps), ("--batch-size", batch_size), ("--devices", devices)):
        _positive(name, value)
    missing = [path for path in start_from or [] if not path.is_file()]
    if missing:
        raise InputError("--start-from", f"no model file {missing[0]}")
    if stitch_rate_scale <= 0:
        raise InputError("--stitch-rate-scale", f"must be above 0 (got {stitch_rate_scale:g})")
    if not 0 <= field_of_view_cuts <= 1:
        raise InputError("--field-of-view-cuts", f"must be between 0 and 1 (got {field_of_view_cuts:g})")
    options = FitOptions("contour", configuration.value, 3, spacing, patch, batch_size, steps, minutes,
                         learned_weights, diffeomorphic, "ncc", True, devices, accelerator, seed, model_id,
                         learning_rate=learning_rate, start_from=tuple(start_from or ()),
                         stitch_rate_scale=stitch_rate_scale, workers=_loader_workers(workers),
                         field_of_view_cuts=field_of_view_cuts, cache=cache)
    with ProgressReporter(progress.value) as reporter:
        result = fit(datalist, out, options, reporter.stage("train crossstitch", 0.0, 1.0))
        if result:
            reporter.update("done", 1.0, f"wrote {result['weights']}", result=result)


Variant = enum.Enum("Variant", {v: v for v in ("hiersynth", "gsm-lsm", "gsm", "unet", "pix2pix")}, type=str)
RateSchedule = enum.Enum("RateSchedule", {s: s for s in ("constant", "cosine")}, type=str)
RateScheduleOption = Annotated[RateSchedule, typer.Option("--rate-schedule", help="constant, or cosine: each "
                                                        "stage's rate annealed to zero over its steps (such a run "
                                                        "resumes only with the same steps).")]


@train_app.command("hiersynth")
def train_hiersynth(
    datalist: Annotated[Path, typer.Option("--datalist", help="Datalist of cases with contrasts, cbv, mask and "
                                                              "optional tumour label.")],
    out: TrainOutOption,
    variant: Annotated[Variant, typer.Option("--variant", help="HierSynth or a baseline trained with the same "
                                                               "budget.")] = Variant.hiersynth,
    contrasts: Annotated[str, typer.Option("--contrasts", help="Input contrasts, e.g. t1,t2,flair,adc.")] =
    "t1,t2,flair,adc",
    steps: Annotated[int, typer.Option("--steps", help="Generator updates over all stages.")] = 2000,
    global_fraction: Annotated[float, typer.Option("--global-fraction", help="Share of --steps for the "
                                                   "GSM stage (two-stage variants).")] = 0.5,
    joint_steps: Annotated[int, typer.Option("--joint-steps", help="Joint fine-tuning updates after the "
                                             "LSM stage.")] = 0,
    tumour_share: Annotated[float, typer.Option("--tumour-share", help="Share of the first stage's slices (the "
                                                "GSM, or a baseline U-Net) drawn from slices with a labelled "
                                                "tumour.")] = 0.0,
    local_tumour_share: Annotated[float, typer.Option("--local-tumour-share", help="Share of the local and "
                                                      "joint stages' slices drawn from slices with a labelled "
                                                      "tumour.")] = 0.0,
    minutes: Annotated[float | None, typer.Option("--minutes", help="Stop after this many minutes of "
                                                  "this run, shared by the stages in proportion to their steps.")] = None,
    spacing: Annotated[float, typer.Option("--spacing", help="Model spacing (mm).")] = 2.0,
    neighbours: Annotated[int, typer.Option("--neighbours", help="Slices on each side in a 2.5D input.")] = 1,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 8,
    learning_rate: Annotated[float, typer.Option("--learning-rate")] = 2e-4,
    rate_schedule: RateScheduleOption = RateSchedule.constant,
    devices: DevicesOption = 1, accelerator: AcceleratorOption = "auto", seed: int = 0,
    model_id: Annotated[str | None, typer.Option("--model-id", help="Name of the exported model "
                                                 "(default: the variant).")] = None,
    validation_cases: Annotated[int, typer.Option("--validation-cases", help="Cases from the datalist's "
                                                  "validation split that score each checkpoint to pick the "
                                                  "best (more: a steadier pick, slower validation).")] = 4,
    workers: LoaderWorkersOption = 0, cache: CacheOption = None,
    progress: ProgressOption = ProgressMode.bar,
):
    """Train HierSynth (GSM, then LSM with PaC) or one of its baselines for CBV synthesis."""
    from synthlab.brain import CONTRASTS

    for name, value in (("--steps", steps), ("--batch-size", batch_size), ("--devices", devices),
                        ("--validation-cases", validation_cases)):
        _positive(name, value)
    names = tuple(name.strip().lower() for name in contrasts.split(",") if name.strip())
    if not names or not set(names) <= set(CONTRASTS) or len(set(names)) != len(names):
        raise InputError("--contrasts", f"'{contrasts}': any of {', '.join(CONTRASTS)}, each once")
    if not 0 < global_fraction < 1:
        raise InputError("--global-fraction", "must be between 0 and 1")
    for name, share in (("--tumour-share", tumour_share), ("--local-tumour-share", local_tumour_share)):
        if not 0 <= share <= 1:
            raise InputError(name, "must be between 0 and 1")
    if neighbours < 0 or joint_steps < 0:
        raise InputError("--neighbours" if neighbours < 0 else "--joint-steps", "must not be negative")
    from synthlab.hiersynth.fit import CBVFitOptions, fit_hiersynth

    options = CBVFitOptions(variant.value, names, spacing, neighbours, steps, global_fraction, joint_steps,
                            batch_size, local_tumour_share, learning_rate, rate_schedule.value, minutes,
                            devices, accelerator, seed, model_id or variant.value, _loader_workers(workers),
                            validation_cases, tumour_share, cache)
    with ProgressReporter(progress.value) as reporter:
        result = fit_hiersynth(datalist, out, options, reporter.stage("train hiersynth", 0.0, 1.0))
        if result:
            reporter.update("done", 1.0, f"wrote {result['weights']}", result=result)


PseudoLabelEdges = enum.Enum("PseudoLabelEdges", {e: e for e in ("model", "half-contrast")}, type=str)


@train_app.command("synthtumour")
def train_synthtumour(
    healthy: Annotated[Path, typer.Option("--healthy", help="Datalist of healthy brains (flair, optional t1/t2, "
                                                            "mask).")],
    unlabelled: Annotated[Path, typer.Option("--unlabelled", help="Datalist of tumour images without labels.")],
    out: TrainOutOption,
    channels: Annotated[str, typer.Option("--channels", help="Input channels, FLAIR first, e.g. flair,t2.")] = "flair",
    junior_steps: Annotated[int, typer.Option("--junior-steps", help="Stage-1 optimiser steps.")] = 400,
    senior_steps: Annotated[int, typer.Option("--senior-steps", help="Stage-2 optimiser steps.")] = 400,
    minutes: Annotated[float | None, typer.Option("--minutes", help="Stop each stage after this many "
                                                  "minutes of this run.")] = None,
    spacing: Annotated[float, typer.Option("--spacing", help="Model spacing (mm).")] = 2.0,
    patch: Annotated[int, typer.Option("--patch", help="Patch side (voxels, multiple of 8).")] = 64,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 2,
    learning_rate: Annotated[float, typer.Option("--learning-rate")] = 1e-3,
    rate_schedule: RateScheduleOption = RateSchedule.constant,
    filters: Annotated[str, typer.Option("--filters", help="DynUNet filters per level.")] = "16,32,64,128",
    devices: DevicesOption = 1, accelerator: AcceleratorOption = "auto", seed: int = 0,
    model_id: Annotated[str, typer.Option("--model-id", help="Name of the exported senior.")] = "synthtumour-senior",
    bias_correction: Annotated[bool, typer.Option(help="Remove the receive bias field (N4) before scaling; "
                                                       "the card records it and inference does the same.")] = True,
    bias_fit_levels: Annotated[int, typer.Option("--bias-fit-levels", help="N4's fitting levels (1-4); fewer give "
                                                 "a smoother field that flattens less of a large, faint "
                                                 "tumour.")] = 3,
    senior_from_junior: Annotated[bool, typer.Option(help="Start the senior from the junior's weights "
                                                          "instead of from scratch.")] = False,
    senior_augmentation: Annotated[bool, typer.Option(help="Augment the senior's patches (flips, rotations, "
                                                           "scaling, gamma, noise).")] = False,
    senior_stage1: Annotated[float, typer.Option("--senior-stage1", help="Share of the senior's examples that are "
                                                 "stage-1 synthetic tumours, as the junior's (0: the paper's "
                                                 "senior).")] = 0.0,
    senior_tumour_free: Annotated[float, typer.Option("--senior-tumour-free", help="Share of the senior's "
                                                      "examples that are healthy brains with no tumour and an "
                                                      "empty label (0: the paper's senior).")] = 0.0,
    senior_ema: Annotated[float, typer.Option("--senior-ema", help="Validate, keep and export an exponential "
                                              "moving average of the senior's weights with this decay per "
                                              "step, e.g. 0.99 (0: the trained weights).")] = 0.0,
    senior_real_share: Annotated[float, typer.Option("--senior-real-share", help="Share of the senior's tumour "
                                                     "examples that are the real pseudo-labelled images; the rest "
                                                     "carve the pseudo-labelled tumour into a healthy brain (0.5: "
                                                     "half and half).")] = 0.5,
    senior_pick_from: Annotated[float, typer.Option("--senior-pick-from", help="Choose the senior's checkpoint "
                                                    "only among validations from this share of its steps on, "
                                                    "e.g. 0.75 with a cosine rate: the settled weights, not an "
                                                    "early peak (0: every validation).")] = 0.0,
    senior_rounds: Annotated[int, typer.Option("--senior-rounds", help="Run stage 2 this many times: each later "
                                               "senior is trained afresh on the previous senior's pseudo labels "
                                               "(1: the paper's two stages).")] = 1,
    pseudo_label_edges: Annotated[PseudoLabelEdges, typer.Option("--pseudo-label-edges", help="model: the "
                                  "labeller's outline (the paper); half-contrast: each outline moved, at most "
                                  "one voxel, to where FLAIR is halfway between the tumour and the brain around "
                                  "it.")] = PseudoLabelEdges.model,
    labeller: Annotated[Path | None, typer.Option("--labeller", help="Skip stage 1: an earlier tumour model "
                                                  "(e.g. a senior) labels the unlabelled images instead of a "
                                                  "new junior; --junior-steps is then unused.")] = None,
    workers: LoaderWorkersOption = 0, cache: CacheOption = None, progress: ProgressOption = ProgressMode.bar,
):
    """Train the tumour segmenter by two-stage synthesis: junior, pseudo labels, senior (no expert labels)."""
    from synthlab.synthtumour.fit import TumourFitOptions, fit_synthtumour

    for name, value in (("--junior-steps", junior_steps), ("--senior-steps", senior_steps),
                        ("--batch-size", batch_size), ("--devices", devices), ("--senior-rounds", senior_rounds)):
        _positive(name, value)
    names = tuple(name.strip().lower() for name in channels.split(",") if name.strip())
    if not names or names[0] != "flair" or not set(names) <= {"flair", "t1", "t2"} or len(set(names)) != len(names):
        raise InputError("--channels", f"'{channels}': FLAIR first, then any of t1, t2 (e.g. flair,t2)")
    if patch % 8:
        raise InputError("--patch", "must be a multiple of 8")
    if not 1 <= bias_fit_levels <= 4:
        raise InputError("--bias-fit-levels", f"must be 1 to 4 (got {bias_fit_levels})")
    for name, value in (("--senior-stage1", senior_stage1), ("--senior-tumour-free", senior_tumour_free),
                        ("--senior-ema", senior_ema), ("--senior-pick-from", senior_pick_from)):
        if not 0 <= value < 1:
            raise InputError(name, f"must be at least 0 and below 1 (got {value})")
    if not 0 <= senior_real_share <= 1:
        raise InputError("--senior-real-share", f"must be 0 to 1 (got {senior_real_share})")
    try:
        levels = tuple(int(value) for value in filters.split(","))
    except ValueError:
        levels = ()
    if len(levels) < 2 or min(levels) < 1:
        raise InputError("--filters", f"'{filters}': give at least two positive counts, e.g. 16,32,64,128")
    options = TumourFitOptions(names, spacing, patch, batch_size, junior_steps, senior_steps, minutes,
                               learning_rate, levels, devices=devices, accelerator=accelerator, seed=seed,
                               model_id=model_id, bias_fit_levels=bias_fit_levels if bias_correction else 0,
                               senior_from_junior=senior_from_junior, senior_augmentation=senior_augmentation,
                               senior_stage1_fraction=senior_stage1,
                               senior_tumour_free_fraction=senior_tumour_free, senior_ema_decay=senior_ema,
                               senior_real_share=senior_real_share, rate_schedule=rate_schedule.value,
                               senior_pick_from=senior_pick_from, senior_rounds=senior_rounds,
                               workers=_loader_workers(workers), cache=cache,
                               pseudo_label_edges=pseudo_label_edges.value, labeller=labeller)
    with ProgressReporter(progress.value) as reporter:
        result = fit_synthtumour(healthy, unlabelled, out, options, reporter.stage("train synthtumour", 0.0, 1.0))
        if result:
            reporter.update("done", 1.0, f"wrote {result['weights']}", result=result)


@train_app.command("register")
def train_register(
    datalist: DatalistOption, out: TrainOutOption,
    steps: StepsOption = 400, minutes: MinutesOption = None,
    spacing: Annotated[float, typer.Option("--spacing", help="Model grid spacing (mm).")] = 3.0,
    patch: Annotated[int, typer.Option("--patch", help="Patch side (voxels, multiple of 4).")] = 48,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 2,
    photometric: Annotated[Photometric, typer.Option("--photometric", help="Image dissimilarity: local NCC "
                                                     "or L2.")] = Photometric.ncc,
    diffeomorphic: Annotated[bool, typer.Option("--diffeomorphic")] = False,
    devices: DevicesOption = 1, accelerator: AcceleratorOption = "auto", seed: int = 0,
    model_id: ModelIdOption = None, workers: LoaderWorkersOption = 0, cache: CacheOption = None,
    progress: ProgressOption = ProgressMode.bar,
):
    """Train the unsupervised registration core (no labels) on 2D or 3D image pairs."""
    from synthlab.crossstitch.fit import FitOptions, fit

    for name, value in (("--steps", steps), ("--batch-size", batch_size), ("--devices", devices)):
        _positive(name, value)
    options = FitOptions("register", "registration-only", spacing=spacing, patch=patch, batch_size=batch_size,
                         steps=steps, max_minutes=minutes, diffeomorphic=diffeomorphic,
                         photometric=photometric.value, devices=devices, accelerator=accelerator, seed=seed,
                         model_id=model_id, workers=_loader_workers(workers), cache=cache)
    with ProgressReporter(progress.value) as reporter:
        result = fit(datalist, out, options, reporter.stage("train register", 0.0, 1.0))
        if result:
            reporter.update("done", 1.0, f"wrote {result['weights']}", result=result)


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the demo's volumes, figures and metrics.")] = Path(
        "synthlab-demo"),
    progress: ProgressOption = ProgressMode.bar,
):
    """Run every available pipeline on built-in data; write volumes Slicer opens, a PNG overview and metrics."""
    from synthlab.demo import run_demo

    with ProgressReporter(progress.value) as reporter:
        summary = run_demo(out, reporter)
    typer.echo(f"Demo written to {out.resolve()}")
    typer.echo(f"  overview: {summary['overview']}")
    typer.echo(f"  metrics:  {summary['metrics']}")


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on (0.0.0.0: every interface; then "
                                                     "a token is required).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8890,
    token: Annotated[str | None, typer.Option("--token", envvar="SYNTHLAB_TOKEN", help="Bearer token clients "
                                              "must send (or set SYNTHLAB_TOKEN).")] = None,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", help="Largest request body.")] = 1024,
    queue: Annotated[int, typer.Option("--queue", help="Jobs that may wait for a free device; more get 503 "
                                                       "with Retry-After.")] = 8,
    device: DeviceOption = "auto",
    workers: Annotated[int | None, typer.Option("--workers", help="Jobs run at once (default: one per GPU, "
                                                                  "else one).")] = None,
    session_minutes: Annotated[float, typer.Option("--session-minutes", help="Sessions expire after this "
                                                   "long unused.")] = 60,
):
    """Serve every pipeline over HTTP (MONAI Label-style paths) for remote Slicer modules."""
    import uvicorn

    from synthlab.server import ServerSettings, create_app, is_loopback

    if not is_loopback(host) and not token:
        raise InputError("--token", f"required when listening on {host} (anything but loopback)")
    for name, value in (("--queue", queue), ("--max-upload-mb", max_upload_mb), ("--session-minutes",
                                                                                 session_minutes)):
        if value <= 0:
            raise InputError(name, "must be positive")
    settings = ServerSettings(token=token, max_upload_bytes=int(max_upload_mb * 2**20), queue_limit=queue,
                              device=device, workers=workers, session_seconds=session_minutes * 60)
    typer.echo(f"SynthLab {__version__} serving on http://{host}:{port} "
               f"({'token required' if token else 'no token: loopback only'})", err=True)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")


def _exit_on_sigterm(signal_number, frame):
    """Turn SIGTERM (a cancel) into SystemExit so that temporary outputs are cleaned up."""
    sys.exit(128 + signal_number)


def _failed(message: str, code: int) -> int:
    print(f"synthlab: error: {message}", file=sys.stderr)
    return code


def run(argv: list[str] | None = None) -> int:
    """Run one command line in this process and return its exit status (errors go to stderr)."""
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="synthlab", standalone_mode=False)
    except typer.Abort:
        return _failed("interrupted", 130)
    except ClickException as error:
        return _failed(error.format_message().replace("\n", " "), EXIT_BAD_INPUT)
    except InputError as error:
        return _failed(str(error), EXIT_BAD_INPUT)
    except RuntimeError as error:
        from synthlab.device import OUT_OF_MEMORY_ADVICE, is_out_of_memory

        if not is_out_of_memory(error):
            raise
        return _failed(OUT_OF_MEMORY_ADVICE, EXIT_OUT_OF_MEMORY)
    return code if isinstance(code, int) else 0


def main(argv: list[str] | None = None) -> None:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    if hasattr(signal, "SIGUSR1"):  # `kill -USR1 PID` prints where a stuck run is, in every thread, to the
        faulthandler.register(signal.SIGUSR1, file=sys.__stderr__, all_threads=True)  # process's own stderr
    sys.exit(run(argv))


if __name__ == "__main__":
    main()
