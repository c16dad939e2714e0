"""What ``synthlab tumour`` and ``evaluate tumour`` do, file to file (inputs checked before anything is written)."""

from __future__ import annotations

import time
from pathlib import Path

from synthlab import volume
from synthlab.labels import write_labels
from synthlab.progress import StageProgress
from synthlab.synthtumour.inference import TumourModel, segment_tumour


def run_tumour(flair: Path, t1: Path | None, t2: Path | None, mask: Path | None, out: Path,
               probability: Path | None, model_id: str | None, device: str, min_component_ml: float,
               progress: StageProgress) -> dict:
    volume.check_outputs({"--flair": flair, "--t1": t1, "--t2": t2, "--mask": mask},
                         {"--out": out, "--probability": probability})
    model = TumourModel.registered(model_id, device)
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
