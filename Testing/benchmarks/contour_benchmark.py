"""Contour propagation on held-out phantom patients: baselines and trained models, same pairs, same CPU.

Methods: identity (planning contours left in place), rigid (SimpleITK Euler3D, Mattes MI),
SimpleITK deformable (rigid, then a B-spline on a 40 mm grid, LBFGSB, 3 levels), and every
model given with --model (an exported <id>.safetensors with its card beside it); a joint model is
scored twice: its propagated contours and its own segmentation of the daily CT. Each model runs with its
card's inference (instance-optimisation steps, guided organs, segmentation weights and the two limits that
set an organ's own segmentation aside, the set-up correction) unless an option here says otherwise.
Per organ: Dice, MSD, HD95 (mm); folding fraction; seconds a pair, and the ratio of the
SimpleITK deformable baseline's time to each method's.

To see how much the methods depend on the phantom's own acquisition, score them on a copy of the pairs
made by ``changed_ct.py`` (another scanner's HU calibration, noise, blur, slices or voxel orientation, a
cone-beam CT's cupping, a contrast-filled bladder).

The report holds each method's summary under "methods" and its per-pair rows under "cases" (one row a
pair: "<organ> dice|msd_mm|hd95_mm", "folding_fraction" and, where a model weighed in its own segmentation,
"<organ> own_segmentation_distance_mm" and "..._band_mm"), which ``paired_reports.py --metric`` compares.

    .venv/bin/python Testing/benchmarks/contour_benchmark.py --datalist D/datalist.json \
        --model out/contour-crossstitch-3d.safetensors --pairs 5 --report report.json
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from synthlab import volume
from synthlab.crossstitch.commands import guidance
from synthlab.crossstitch.evaluation import contour_metrics, summarise
from synthlab.crossstitch.geometry import warp_labels
from synthlab.crossstitch.inference import LoadedModel, propagate_contours
from synthlab.datalist import read_datalist
from synthlab.errors import InputError
from synthlab.labels import LabelMap, parse_organ_list, parse_organ_weights, read_labels

warnings.filterwarnings("ignore")


def _soft_tissue(image: sitk.Image) -> sitk.Image:
    return sitk.Clamp(sitk.Cast(image, sitk.sitkFloat32), sitk.sitkFloat32, -250.0, 350.0)


def rigid(fixed: sitk.Image, moving: sitk.Image) -> sitk.Transform:
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(32)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(0.1, seed=1)
    method.SetOptimizerAsRegularStepGradientDescent(1.0, 1e-3, 150)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([4, 2, 1])
    method.SetSmoothingSigmasPerLevel([2, 1, 0])
    method.SetInterpolator(sitk.sitkLinear)
    initial = sitk.CenteredTransformInitializer(fixed, moving, sitk.Euler3DTransform(),
                                                sitk.CenteredTransformInitializerFilter.GEOMETRY)
    method.SetInitialTransform(initial, inPlace=False)
    return method.Execute(_soft_tissue(fixed), _soft_tissue(moving))


def bspline(fixed: sitk.Image, moving: sitk.Image) -> sitk.Transform:
    """Rigid, then a B-spline deformation (40 mm control grid) with LBFGSB on a 3-level pyramid."""
    initial = rigid(fixed, moving)
    extent = np.array(fixed.GetSize()) * np.array(fixed.GetSpacing())
    mesh = [max(1, int(round(e / 40.0))) for e in extent]
    transform = sitk.BSplineTransformInitializer(fixed, mesh)
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(32)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(0.1, seed=1)
    method.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=60)
    method.SetShrinkFactorsPerLevel([4, 2, 1])
    method.SetSmoothingSigmasPerLevel([2, 1, 0])
    method.SetInterpolator(sitk.sitkLinear)
    method.SetMovingInitialTransform(initial)
    method.SetInitialTransform(transform, inPlace=True)
    method.Execute(_soft_tissue(fixed), _soft_tissue(moving))
    return sitk.CompositeTransform([initial, transform])


def transform_field(transform: sitk.Transform, fixed: sitk.Image) -> sitk.Image:
    converter = sitk.TransformToDisplacementFieldFilter()
    converter.SetReferenceImage(fixed)
    converter.SetOutputPixelType(sitk.sitkVectorFloat64)
    return converter.Execute(transform)


def run_baseline(name: str, fixed, moving, labels: LabelMap) -> tuple[LabelMap, sitk.Image | None]:
    if name == "identity":
        return LabelMap(volume.resample(labels.image, fixed, is_label=True), labels.segments), None
    field = transform_field((rigid if name == "rigid (SimpleITK)" else bspline)(fixed, moving), fixed)
    values = [s.value for s in labels.segments]
    return LabelMap(warp_labels(labels.image, values, fixed, field), labels.segments), field


def case_row(report: dict) -> dict:
    """One pair's metrics as flat keys, "<organ> <metric>", "folding_fraction" and, for a model that weighed in its
    own segmentation, "<organ> own_segmentation_distance_mm" (from the warped contour) and
    "<organ> own_segmentation_band_mm" (the width of its unsure band)."""
    row = {f"{organ} {key}": value for organ, metrics in report["organs"].items() for key, value in metrics.items()}
    for key, name in (("segmentation_disagreement_mm", "own_segmentation_distance_mm"),
                      ("segmentation_uncertain_band_mm", "own_segmentation_band_mm")):
        row.update({f"{organ} {name}": value for organ, value in report.get(key, {}).items()})
    if "folding_fraction" in report:
        row["folding_fraction"] = report["folding_fraction"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datalist", type=Path, required=True)
    parser.add_argument("--model", type=Path, action="append", default=[], help="exported weights (repeatable)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--pairs", type=int, default=None, help="score only the first N pairs")
    parser.add_argument("--iterations", type=int, default=None,
                        help="instance optimisation steps for the models; default: each model card's")
    parser.add_argument("--guided", action="store_true",
                        help="instance optimisation guided by the joint model's own segmentation, every organ")
    parser.add_argument("--guide-organs", default=None,
                        help="guide only these organs (comma-separated, or 'none'); default: the model card's")
    parser.add_argument("--segmentation-weight", default=None,
                        help="weight of the joint model's own segmentation in its contours: one number for every "
                             "organ, ORGAN=WEIGHT pairs, or 'none'; default: the model card's")
    parser.add_argument("--disagreement-limit-mm", type=float, default=None,
                        help="set an organ's own segmentation aside beyond this distance from its warped contour; "
                             "default: the model card's")
    parser.add_argument("--uncertain-band-limit-mm", type=float, default=None,
                        help="set an organ's own segmentation aside when its unsure band is wider than this; "
                             "default: the model card's")
    parser.add_argument("--setup-correction", action=argparse.BooleanOptionalAction, default=None,
                        help="match the two CTs' bone rigidly before the network (the patient's set-up); default: "
                             "the model card's")
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--report", type=Path, required=True)
    arguments = parser.parse_args()

    entries = read_datalist(arguments.datalist)[arguments.split][: arguments.pairs]
    methods = [] if arguments.no_baselines else ["identity", "rigid (SimpleITK)", "deformable (SimpleITK B-spline)"]
    loaded = [LoadedModel.from_files(path, "cpu") for path in arguments.model]
    models = {f"{model.card['configuration']} ({path.stem})": model for model, path in
              zip(loaded, arguments.model, strict=True)}
    for key, limit in (("segmentation_disagreement_mm", arguments.disagreement_limit_mm),
                       ("segmentation_uncertain_band_mm", arguments.uncertain_band_limit_mm)):
        for model in loaded if limit is not None else []:
            model.card.setdefault("inference", {})[key] = limit
    try:  # read once, before any pair is scored
        options = {name: {"guide_organs": guidance(model, arguments.guided, parse_organ_list(arguments.guide_organs)),
                          "segmentation_weights": model.segmentation_weights(
                              parse_organ_weights(arguments.segmentation_weight, model.card["organs"]))}
                   for name, model in models.items()}
    except InputError as error:
        parser.error(str(error))
    reports: dict[str, list] = {name: [] for name in methods + list(models)}
    case_ids = [str(entry["fixed"]) for entry in entries]  # the daily CT names the pair
    seconds: dict[str, list] = {name: [] for name in reports}
    for index, entry in enumerate(entries):
        fixed, moving = volume.read_image(entry["fixed"]), volume.read_image(entry["moving"])
        labels, truth = read_labels(entry["moving_labels"]), read_labels(entry["fixed_labels"])
        for name in methods + list(models):
            started = time.perf_counter()
            if name in models:
                result = propagate_contours(models[name], fixed, moving, labels, iterations=arguments.iterations,
                                            setup_correction=arguments.setup_correction, **options[name])
                contours, field = result.contours, result.field
            else:
                contours, field = run_baseline(name, fixed, moving, labels)
            seconds[name].append(time.perf_counter() - started)
            reports[name].append(contour_metrics(contours, truth, field))
            if name in models:
                reports[name][-1].update(segmentation_disagreement_mm=result.segmentation_disagreement_mm,
                                         segmentation_uncertain_band_mm=result.segmentation_uncertain_band_mm)
            if name in models and field is not None and result.segmentation is not None:  # a joint model's other output
                seconds.setdefault(f"{name}, own segmentation", []).append(seconds[name][-1])
                reports.setdefault(f"{name}, own segmentation", []).append(
                    contour_metrics(result.segmentation, truth, None))
        print(f"pair {index + 1}/{len(entries)} done", flush=True)
    reference_time = np.median(seconds.get("deformable (SimpleITK B-spline)", [np.nan]))
    results = {}
    for name, method_reports in reports.items():
        summary = summarise(method_reports)
        summary["seconds_per_pair"] = round(float(np.median(seconds[name])), 3)
        summary["speed_vs_simpleitk_deformable"] = round(float(reference_time / np.median(seconds[name])), 1)
        results[name] = summary
    cases = {name: [{"case": case_id, **case_row(report)}
                    for case_id, report in zip(case_ids, method_reports, strict=True)]
             for name, method_reports in reports.items()}
    arguments.report.write_text(json.dumps({"methods": results, "cases": cases}, indent=2) + "\n")
    organs = sorted({o for r in results.values() for o in r["organs"]})
    print("| method | " + " | ".join(f"{o} Dice / MSD / HD95" for o in organs) + " | folding | s/pair | speed-up |")
    print("|---" * (len(organs) + 4) + "|")
    for name, summary in results.items():
        cells = [f"{summary['organs'][o]['dice']['mean']:.3f} / {summary['organs'][o]['msd_mm']['mean']:.2f} / "
                 f"{summary['organs'][o]['hd95_mm']['mean']:.2f}" for o in organs]
        folding = summary.get("folding_fraction", {}).get("mean")
        print(f"| {name} | " + " | ".join(cells) + f" | {'—' if folding is None else f'{folding:.4%}'} | "
              f"{summary['seconds_per_pair']} | {summary['speed_vs_simpleitk_deformable']}× |")


if __name__ == "__main__":
    main()
