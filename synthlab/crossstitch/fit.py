"""``synthlab train crossstitch|register``: datalist in, resumable training, safetensors weights and card out."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader

from synthlab import __version__, volume
from synthlab.crossstitch.data import HU_WINDOW, PERCENTILE_RANGE, looks_like_ct, read_pair_entry
from synthlab.crossstitch.networks import FILTERS, start_branches_from
from synthlab.crossstitch.training import PatchDataset, RegistrationModule
from synthlab.datalist import read_datalist
from synthlab.errors import InputError
from synthlab.labels import PELVIS_ORGANS
from synthlab.progress import StageProgress
from synthlab.registry import save_model
from synthlab.trainer import (
    best_network_weights,
    make_trainer,
    read_cases,
    require_same_settings,
    resume_point,
    training_loader,
)


@dataclass
class FitOptions:
    """What ``synthlab train crossstitch`` / ``register`` accept (defaults: the joint model on pelvis CT)."""

    task: str = "contour"  # "contour" (joint model, with contours) or "register" (unsupervised core;
    # its dimension and CT-ness are read from the first training image)
    configuration: str = "crossstitch"
    dimension: int = 3
    spacing: float = 3.0
    patch: int = 48
    batch_size: int = 2
    steps: int = 400
    max_minutes: float | None = None
    learned_task_weights: bool = False
    diffeomorphic: bool = False
    photometric: str = "ncc"
    ct: bool = True
    devices: int = 1
    accelerator: str = "auto"
    seed: int = 0
    model_id: str | None = None
    filters: tuple[int, ...] = FILTERS
    learning_rate: float = 5e-4
    start_from: tuple[Path, ...] = ()  # single-task models whose branches start the joint model
    stitch_rate_scale: float = 1.0  # the cross-stitch units' step size, as a multiple of learning_rate
    workers: int = 0  # background processes making training patches
    field_of_view_cuts: float = 0.0  # share of training patches whose fixed scan is cut short
    cache: Path | None = None  # folder keeping the prepared pairs for later runs on the same images


def patch_shape(options: FitOptions) -> tuple[int, ...]:
    """The training patch (tensor order); 3D CT patches are thinner across slices (z)."""
    if options.dimension == 2:
        return (options.patch, options.patch)
    return (max(8, (options.patch * 5 // 6) // 4 * 4), options.patch, options.patch)


def card_for(options: FitOptions, organs: list[str]) -> dict:
    intensity = ({"kind": "hu-window", "window": list(HU_WINDOW)} if options.ct
                 else {"kind": "percentile", "percentiles": list(PERCENTILE_RANGE)})
    return {
        "task": options.task, "version": __version__, "method": "cross-stitch joint registration + segmentation "
        "(METHODS.md §3)" if options.task == "contour" else "unsupervised deformable registration (METHODS.md §4)",
        "configuration": options.configuration, "spatial_dims": options.dimension, "filters": list(options.filters),
        "spacing": [options.spacing] * options.dimension, "patch": list(patch_shape(options)),
        "inputs": ["fixed", "moving"] + (["moving_labels"] if options.task == "contour" else []),
        "organs": organs, "intensity": intensity, "diffeomorphic": options.diffeomorphic,
        "photometric": options.photometric, "displacement": "ITK convention: LPS mm on the fixed grid, "
        "fixed point -> moving point",
    }


def load_split(entries: list[dict], options: FitOptions, organs: list[str], progress: StageProgress, name: str):
    intensity = card_for(options, organs)["intensity"]
    read = partial(read_pair_entry, spacing=[options.spacing] * options.dimension, intensity=intensity,
                   organs=organs, dimension=options.dimension)
    return read_cases(read, entries, progress, f"{name} pairs", options.workers, options.cache)


def _start_branches(module: RegistrationModule, paths: tuple[Path, ...]) -> dict[Path, str]:
    """Load each single-task model's branch into the joint network (a new run only)."""
    started = {}
    for path in paths:
        try:
            branches = start_branches_from(module.network, load_file(str(path)))
        except (OSError, ValueError, RuntimeError) as error:
            raise InputError("--start-from", f"{path}: {str(error).splitlines()[0]}") from error
        started[path] = " and ".join(branches)
    return started


def fit(datalist: Path, out: Path, options: FitOptions, progress: StageProgress) -> dict:
    """Train (resuming an earlier run in ``out``), then export the best weights and card into ``out``."""
    torch.manual_seed(options.seed)
    splits = read_datalist(datalist)
    if not splits["training"]:
        raise InputError("--datalist", "has no training pairs")
    if not all("fixed" in entry and "moving" in entry for entry in splits["training"]):
        raise InputError("--datalist", "every training pair needs 'fixed' and 'moving' images")
    if options.task == "register":  # the unsupervised core takes 2D or 3D images of any modality
        first = volume.read_image(splits["training"][0]["fixed"], "--datalist", dimension=(2, 3))
        options = replace(options, dimension=first.GetDimension(), ct=looks_like_ct(first))
    labelled = options.task == "contour"
    if labelled and not all("fixed_labels" in e and "moving_labels" in e for e in splits["training"]):
        raise InputError("--datalist", "every training pair needs 'fixed_labels' and 'moving_labels' contours")
    organs = PELVIS_ORGANS if labelled else []
    out.mkdir(parents=True, exist_ok=True)
    train_pairs = load_split(splits["training"], options, organs, progress, "training")
    validation_pairs = load_split(splits["validation"] or splits["training"][:2], options, organs, progress,
                                  "validation")
    module = RegistrationModule(
        options.configuration if labelled else "registration-only", options.dimension, organs,
        diffeomorphic=options.diffeomorphic, photometric=options.photometric,
        regulariser="bending" if labelled else "edge-aware", regulariser_weight=0.5 if labelled else 1.0,
        learned_task_weights=options.learned_task_weights, filters=options.filters,
        learning_rate=options.learning_rate, stitch_rate_scale=options.stitch_rate_scale)
    samples = max(len(train_pairs), 16 * options.batch_size)
    train_loader = training_loader(PatchDataset(train_pairs, patch_shape(options), True, samples, options.seed,
                                                options.field_of_view_cuts),
                                   options.batch_size, options.workers, shuffle=True)
    validation_loader = DataLoader(PatchDataset(validation_pairs, None, False), batch_size=1)
    trainer, best = make_trainer(out, options.steps, options.max_minutes, options.devices, options.accelerator,
                                 progress_bar=False)
    resume = resume_point(out)
    require_same_settings(resume, module.hparams)
    started_from = {} if resume else _start_branches(module, options.start_from)
    progress(0.1, "resuming from " + str(resume) if resume else "training" + "".join(
        f", {branch} branch from {path.name}" for path, branch in started_from.items()))
    started = time.perf_counter()
    trainer.fit(module, train_loader, validation_loader, ckpt_path=str(resume) if resume else None)
    if trainer.global_rank != 0:
        return {}
    weights = best_network_weights(best, out)
    model_id = options.model_id or f"{options.task}-{options.configuration}-{options.dimension}d"
    card = card_for(options, organs)
    card.update(training_data=str(datalist), training={
        "steps": int(trainer.global_step), "seconds_this_run": round(time.perf_counter() - started, 1),
        "patch": list(patch_shape(options)), "batch_size": options.batch_size, "optimiser": f"RAdam lr {options.learning_rate:g}",
        "learned_task_weights": options.learned_task_weights, "training_pairs": len(train_pairs),
        "started_from": [str(path) for path in options.start_from],
        "stitch_rate_scale": options.stitch_rate_scale, "field_of_view_cuts": options.field_of_view_cuts},
        metrics={"validation_score": float(best.best_model_score) if best.best_model_score is not None else None})
    weights_path, card_path = save_model(weights, card, out, model_id)
    progress(1.0, f"wrote {weights_path.name}")
    (out / "training_summary.json").write_text(json.dumps(card, indent=2) + "\n")
    return {"weights": str(weights_path), "card": str(card_path), "model_id": model_id}
