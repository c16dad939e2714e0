"""What ``synthlab cbv`` and ``evaluate cbv`` do, file to file (inputs checked before anything is written)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from synthlab import volume
from synthlab.datalist import read_datalist
from synthlab.errors import InputError
from synthlab.hiersynth.data import CBVCase, read_entry
from synthlab.hiersynth.evaluation import cbv_metrics
from synthlab.hiersynth.inference import CBVModel, mean_rcbv, normal_white_matter, synthesise_cbv
from synthlab.progress import StageProgress
from synthlab.volume import atomic_output

SYNTHETIC_WARNING = "synthetic CBV, not for diagnosis"
HIGH_GRADE_RCBV = 1.75  # the tumour rCBV above which gliomas are commonly read as high grade (Law et al., 2003)


def run_cbv(contrasts: dict[str, Path | None], mask: Path | None, tumour: Path | None, out: Path,
            rcbv: Path | None, model_id: str | None, device: str, mirror: bool, progress: StageProgress) -> dict:
    volume.check_outputs({f"--{name}": path for name, path in contrasts.items()} | {"--mask": mask, "--tumour": tumour},
                         {"--out": out, "--rcbv": rcbv})
    model = CBVModel.registered(model_id, device, mirror=mirror)
    started = time.perf_counter()
    result = synthesise_cbv(model, {name: str(path) if path else None for name, path in contrasts.items()},
                            str(mask) if mask else None, str(tumour) if tumour else None, rcbv is not None, progress)
    seconds = time.perf_counter() - started
    progress(0.95, "writing outputs")
    written = {"out": str(volume.write_image(result.cbv, out))}
    if rcbv is not None:
        written["rcbv"] = str(volume.write_image(result.rcbv, rcbv))
    summary = [f"Synthetic CBV ({SYNTHETIC_WARNING}) from {', '.join(model.contrasts)} in {seconds:.1f} s"]
    bias_fields = {}
    if result.tumour_rcbv is not None:
        summary.append(f"Tumour mean rCBV: {result.tumour_rcbv:.2f} (normal-appearing white matter = 1)")
        if bias := model.tumour_rcbv_bias:
            summary.append(rcbv_bias_sentence(bias["mean_error"], bias["measured_on"]))
            bias_fields = {"tumour_rcbv_bias": bias["mean_error"], "tumour_rcbv_bias_measured_on": bias["measured_on"]}
    return {**written, "model": model.model_id, "seconds": round(seconds, 2), "warning": SYNTHETIC_WARNING,
            "white_matter_cbv": result.white_matter_cbv, "tumour_rcbv": result.tumour_rcbv, **bias_fields,
            "summary": summary}


def rcbv_bias_sentence(mean_error: float, measured_on: str) -> str:
    """How far this model's tumour rCBV was from the truth on average, in words, for the command and the panel."""
    direction = "below" if mean_error < 0 else "above"
    return f"On {measured_on} this model read tumour rCBV {abs(mean_error):.2f} {direction} the true value on average"


def tumour_rcbv_metrics(predicted: np.ndarray, case: CBVCase, model: CBVModel) -> dict[str, float]:
    """The tumour's mean rCBV (what the module's panel shows) from the synthetic and from the true CBV, both over
    the same normal-appearing white matter, and the error; nothing without a tumour or the model's T1."""
    if case.tumour is None or not case.tumour.any() or "t1" not in model.contrasts:
        return {}
    nawm = normal_white_matter(case, model.contrasts, case.tumour, model.spacing)
    tumour = case.tumour & case.brain.mask
    synthetic, true = mean_rcbv(predicted, nawm, tumour), mean_rcbv(case.cbv, nawm, tumour)
    return {"tumour_rcbv": synthetic, "true_tumour_rcbv": true, "tumour_rcbv_error": synthetic - true,
            "tumour_rcbv_abs_error": abs(synthetic - true)}


def evaluate_models(models: dict[str, CBVModel], entries: list[dict], progress: StageProgress) -> dict:
    """PSNR, MAE, SSIM (brain), SSIM (tumour ROI) and the tumour's rCBV error per case and on average, for each
    model."""
    per_case: dict[str, list[dict]] = {name: [] for name in models}
    for index, entry in enumerate(entries):
        progress(index / len(entries), f"case {index + 1}/{len(entries)}")
        cases = {}  # models that read the same contrasts at the same spacing share one read of the case
        for name, model in models.items():
            key = (tuple(model.contrasts), model.spacing)
            case = cases[key] = cases.get(key) or read_entry(entry, model.contrasts, model.spacing)
            started = time.perf_counter()
            predicted = model.synthesise_canvas(case)
            seconds = time.perf_counter() - started
            metrics = cbv_metrics(predicted, case.cbv, case.brain.mask, case.tumour) | tumour_rcbv_metrics(
                predicted, case, model)
            per_case[name].append({"case": entry.get("case", str(index)), **metrics, "seconds": seconds})
    summary = {}
    for name, rows in per_case.items():
        keys = ("psnr", "mae", "ssim_brain", "ssim_tumour", "tumour_rcbv_error", "tumour_rcbv_abs_error", "seconds")
        summary[name] = {key: float(np.mean([row[key] for row in rows if key in row]))
                         for key in keys if any(key in row for row in rows)}
        summary[name]["tumour_cases"] = sum("ssim_tumour" in row for row in rows)
        summary[name]["rcbv_cases"] = sum("tumour_rcbv" in row for row in rows)
        summary[name] |= high_rcbv_counts(rows)
    return {"summary": summary, "cases": per_case}


def high_rcbv_counts(rows: list[dict]) -> dict[str, int]:
    """Of the tumours whose true rCBV is above the high-grade cut, how many the synthetic CBV puts above it too;
    and how many it puts above the cut whose true rCBV is not."""
    scored = [(row["tumour_rcbv"] > HIGH_GRADE_RCBV, row["true_tumour_rcbv"] > HIGH_GRADE_RCBV)
              for row in rows if "tumour_rcbv" in row]
    return {"high_rcbv_tumours": sum(true for _, true in scored),
            "high_rcbv_found": sum(synthetic and true for synthetic, true in scored),
            "high_rcbv_false": sum(synthetic and not true for synthetic, true in scored)}


def run_evaluate(datalist: Path, report: Path, split: str, model_ids: list[str | None], device: str, mirror: bool,
                 progress: StageProgress) -> dict:
    splits = read_datalist(datalist)
    if split not in splits:
        raise InputError("--split", f"unknown split '{split}' (use {', '.join(splits)})")
    entries = [entry for entry in splits[split] if entry.get("cbv")]
    if not entries:
        raise InputError("--datalist", f"has no cases with a CBV image in its {split} split")
    models = {model.model_id: model for model in (CBVModel.registered(i, device, mirror=mirror)
                                                  for i in model_ids or [None])}
    result = evaluate_models(models, entries, progress) | {"mirror": mirror}
    with atomic_output(report) as temporary:
        temporary.write_text(json.dumps(result, indent=2) + "\n")
    return result["summary"]
