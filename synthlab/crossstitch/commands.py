"""What ``synthlab contour``, ``register`` and ``evaluate contour`` do, file to file.

Every input is read and checked and every result computed before the first
output is written, so a bad input leaves no output behind; no output may
overwrite an input.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from synthlab import volume
from synthlab.crossstitch.evaluation import contour_metrics, summarise
from synthlab.crossstitch.inference import (
    OPTIMISATION_ONLY,
    LoadedModel,
    load_model,
    propagate_contours,
    register_by_optimisation,
    register_images,
)
from synthlab.datalist import read_datalist
from synthlab.errors import InputError
from synthlab.labels import parse_organ_weights, read_labels, write_labels
from synthlab.progress import StageProgress
from synthlab.registry import Registry


def guidance(model: LoadedModel, guided: bool, organs: Sequence[str] | None) -> Sequence[str] | None:
    """The organs to guide: those named, else every organ with ``--guided``, else None (the card's default)."""
    if organs is not None:
        return organs
    return list(model.card.get("organs", [])) if guided else None


def run_contour(fixed_path: Path, moving_path: Path, labels_path: Path, out_labels: Path, out_field: Path | None,
                out_warped: Path | None, out_segmentation: Path | None, reference_path: Path | None,
                out_metrics: Path | None, organ_map: Mapping[str, str], model_id: str | None, device: str,
                iterations: int | None, window: int | None, progress: StageProgress, guided: bool = False,
                guide_organs: Sequence[str] | None = None, segmentation_weight: str | None = None,
                setup_correction: bool | None = None) -> dict:
    volume.check_outputs({"--fixed": fixed_path, "--moving": moving_path, "--moving-labels": labels_path,
                    "--reference-labels": reference_path},
                   {"--out-labels": out_labels, "--out-field": out_field, "--out-warped": out_warped,
                    "--out-segmentation": out_segmentation})
    if out_metrics is not None and reference_path is None:
        raise InputError("--out-metrics", "needs --reference-labels to compare with")
    progress(0.0, "reading inputs")
    fixed = volume.read_image(fixed_path, "--fixed", dimension=(2, 3))
    moving = volume.read_image(moving_path, "--moving", dimension=(2, 3))
    labels = read_labels(labels_path, "--moving-labels", dimension=None)
    reference = read_labels(reference_path, "--reference-labels", dimension=None) if reference_path else None
    model = load_model("contour", model_id, device)
    if out_field is not None and not model.network.predicts_field:
        raise InputError("--out-field", f"model '{model.model_id}' predicts no displacement field")
    started = time.perf_counter()
    result = propagate_contours(model, fixed, moving, labels, organ_map, iterations, window,
                                warp_ct=out_warped is not None, guide_organs=guidance(model, guided, guide_organs),
                                segmentation_weights=parse_organ_weights(segmentation_weight, model.card["organs"]),
                                setup_correction=setup_correction, progress=progress)
    seconds = time.perf_counter() - started
    metrics = contour_metrics(result.contours, reference, result.field, organ_map) if reference is not None else None
    progress(0.95, "writing outputs")
    write_labels(result.contours, out_labels)
    written = {"out_labels": str(out_labels)}
    if out_field is not None:
        written["out_field"] = str(volume.write_image(result.field, out_field))
    if out_warped is not None:
        written["out_warped"] = str(volume.write_image(result.warped, out_warped))
    if out_segmentation is not None and result.segmentation is not None:
        written["out_segmentation"] = str(write_labels(result.segmentation, out_segmentation))
    summary = [f"{s.name}: {result.contours.volume_ml(s.name):.1f} ml" for s in result.contours.segments]
    output = {**written, "model": model.model_id, "seconds": round(seconds, 2), "summary": summary,
              **result.inference_summary()}
    if result.setup is not None:
        summary.append(f"set-up correction: {result.setup.describe()}")
    if metrics is not None:
        output["metrics"] = metrics
        summary += [f"{name}: Dice {m['dice']:.3f}, MSD {m['msd_mm']:.2f} mm, HD95 {m['hd95_mm']:.2f} mm"
                    for name, m in metrics["organs"].items()]
        if out_metrics is not None:
            with volume.atomic_output(out_metrics) as temporary:
                temporary.write_text(json.dumps(metrics, indent=2) + "\n")
            output["out_metrics"] = str(out_metrics)
    return output


def run_register(fixed_path: Path, moving_path: Path, out_warped: Path, out_field: Path | None,
                 model_id: str | None, device: str, iterations: int | None, window: int | None,
                 progress: StageProgress) -> dict:
    volume.check_outputs({"--fixed": fixed_path, "--moving": moving_path},
                   {"--out-warped": out_warped, "--out-field": out_field})
    if out_field is not None and volume.suffix_of(out_field) == ".png":
        raise InputError("--out-field", "a displacement field needs .nrrd, .nii.gz or .mha (not .png)")
    progress(0.0, "reading inputs")
    fixed = volume.read_image(fixed_path, "--fixed", dimension=(2, 3))
    moving = volume.read_image(moving_path, "--moving", dimension=(2, 3))
    started = time.perf_counter()
    if model_id == OPTIMISATION_ONLY or (model_id is None and not Registry().for_task("register")):
        progress(0.05, "no network: instance optimisation alone" if model_id else
                 "no register model is registered: instance optimisation alone")
        model_name = OPTIMISATION_ONLY
        result = register_by_optimisation(fixed, moving, iterations, device, progress)
    else:
        model = load_model("register", model_id, device)
        model_name = model.model_id
        result = register_images(model, fixed, moving, iterations, window, progress)
    seconds = time.perf_counter() - started
    volume.write_image(result.warped, out_warped)
    written = {"out_warped": str(out_warped)}
    if out_field is not None:
        written["out_field"] = str(volume.write_image(result.field, out_field))
    return {**written, "model": model_name, "seconds": round(seconds, 2)}


def evaluate_pairs(model: LoadedModel, entries: list[dict], iterations: int | None, progress: StageProgress,
                   guide_organs: Sequence[str] | None = None,
                   segmentation_weights: Mapping[str, float] | None = None,
                   setup_correction: bool | None = None) -> dict:
    """Propagate and score every (fixed, moving) pair; per-pair reports and their summary."""
    reports = []
    for index, entry in enumerate(entries):
        progress(index / len(entries), f"pair {index + 1}/{len(entries)}")
        fixed = volume.read_image(entry["fixed"], "fixed")
        moving = volume.read_image(entry["moving"], "moving")
        labels = read_labels(entry["moving_labels"], "moving_labels")
        started = time.perf_counter()
        result = propagate_contours(model, fixed, moving, labels, iterations=iterations, guide_organs=guide_organs,
                                    segmentation_weights=segmentation_weights, setup_correction=setup_correction)
        seconds = time.perf_counter() - started
        report = contour_metrics(result.contours, read_labels(entry["fixed_labels"], "fixed_labels"), result.field)
        reports.append({"fixed": entry["fixed"], "seconds": round(seconds, 3), **report,
                        "setup_correction": result.setup.summary() if result.setup else None})
    summary = summarise(reports)
    summary["seconds_per_pair"] = round(sum(r["seconds"] for r in reports) / max(1, len(reports)), 3)
    return {"model": model.model_id, "summary": summary, "pairs": reports}


def run_evaluate(datalist: Path, report: Path, split: str, model_id: str | None, device: str, iterations: int | None,
                 progress: StageProgress, guided: bool = False, guide_organs: Sequence[str] | None = None,
                 segmentation_weight: str | None = None, setup_correction: bool | None = None) -> dict:
    entries = read_datalist(datalist).get(split)
    if not entries:
        raise InputError("--split", f"the datalist has no '{split}' pairs")
    missing = [key for key in ("fixed", "moving", "moving_labels", "fixed_labels") if key not in entries[0]]
    if missing:
        raise InputError("--datalist", f"contour evaluation needs {', '.join(missing)} in every pair")
    model = load_model("contour", model_id, device)
    result = evaluate_pairs(model, entries, iterations, progress, guidance(model, guided, guide_organs),
                            parse_organ_weights(segmentation_weight, model.card["organs"]), setup_correction)
    with volume.atomic_output(report) as temporary:
        temporary.write_text(json.dumps(result, indent=2) + "\n")
    return result["summary"]
