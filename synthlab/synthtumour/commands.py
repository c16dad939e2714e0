"""What ``synthlab tumour`` and ``evaluate tumour`` do, file to file (inputs checked before anything is written)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from synthlab import volume
from synthlab.datalist import read_datalist
from synthlab.errors import InputError
from synthlab.labels import write_labels
from synthlab.progress import StageProgress
from synthlab.synthtumour.evaluation import baseline_mask, choose_threshold, evaluate, model_mask
from synthlab.synthtumour.inference import TumourModel, segment_tumour


def run_tumour(flair: Path, t1: Path | None, t2: Path | None, mask: Path | None, out: Path,
               probability: Path | None, model_id: str | None, device: str, min_component_ml: float,
               mirror: bool, progress: StageProgress) -> dict:
    volume.check_outputs({"--flair": flair, "--t1": t1, "--t2": t2, "--mask": mask},
                         {"--out": out, "--probability": probability})
    model = TumourModel.registered(model_id, device, mirror=mirror)
    started = time.perf_counter()
    result = segment_tumour(model, {"flair": flair, "t1": t1, "t2": t2}, mask, min_component_ml, progress)
    seconds = time.perf_counter() - started
    progress(0.95, "writing outputs")
    written = {"out": str(write_labels(result.labels, out))}
    if probability is not None:
        written["probability"] = str(volume.write_image(result.probability, probability))
    found = result.volume_ml > 0
    summary = (f"Tumour: {result.volume_ml:.1f} ml" if found
               else "No tumour found: the segmentation is empty")
    return {**written, "model": model.model_id, "seconds": round(seconds, 2), "volume_ml": round(result.volume_ml, 2),
            "tumour_found": found, "small_components_removed": result.components_removed, "summary": [summary]}


def run_evaluate(datalist: Path, report: Path, split: str, model_id: str | None, device: str, mirror: bool,
                 progress: StageProgress) -> dict:
    """Score the model and the intensity baseline on a split's labelled tumours (the baseline's threshold is
    chosen on the validation split, or on training when validation is the one scored), and on its healthy
    brains the tumour each one finds there."""
    splits = read_datalist(datalist)
    model = TumourModel.registered(model_id, device, mirror=mirror)

    def labelled(split: str) -> list:
        entries = [e for e in splits[split] if e.get("label") and e.get("tumour", True)]
        cases = [model.read_entry(e, with_label=True) for e in entries]
        return [case for case in cases if case.label.any()]

    if split not in splits:
        raise InputError("--split", f"unknown split '{split}' (use {', '.join(splits)})")
    tuning_split = "training" if split == "validation" else "validation"
    test, tuning = labelled(split), labelled(tuning_split)
    if not test:
        raise InputError("--datalist", f"has no labelled tumour cases in its {split} split")
    threshold = choose_threshold(tuning or test, model.spacing)
    healthy = [model.read_entry(e) for e in splits[split] if not e.get("tumour", True)]
    result = evaluate({model.model_id: lambda case: model_mask(model, case, model.spacing),
                       "intensity baseline": lambda case: baseline_mask(case, threshold, model.spacing)},
                      test, model.spacing, progress, healthy)
    result["baseline_threshold"], result["mirror"] = threshold, mirror
    result["threshold_chosen_on"] = tuning_split if tuning else f"{split} (no labelled {tuning_split} cases)"
    with volume.atomic_output(report) as temporary:
        temporary.write_text(json.dumps(result, indent=2) + "\n")
    return result["summary"]
