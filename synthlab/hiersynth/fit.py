"""``synthlab train hiersynth``: HierSynth's stages, or one baseline, on a CBV datalist; every stage resumable.

``--steps`` is the variant's whole budget in generator updates: a two-stage variant gives
``--global-fraction`` of it to the GSM and the rest to the LSM, a one-stage variant all
of it, so HierSynth and the baselines train for the same number of updates.
``--joint-steps`` adds a joint fine-tuning stage (HierSynth and gsm-lsm only).
Each stage trains in ``out/<stage>`` from the previous stage's exported weights; a stage
whose weights already have the asked-for steps is skipped, one whose source (or tumour
share) changed is trained again. ``--minutes`` is shared among the stages in proportion to their steps.
``--rate-schedule cosine`` anneals each stage's rate to zero over its steps: such a run resumes only
with the same steps, while a constant-rate run can be resumed to train longer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader

from synthlab import __version__
from synthlab.brain import CANVAS_MM, CONTRASTS
from synthlab.datalist import read_datalist
from synthlab.errors import InputError
from synthlab.hiersynth.data import CBV_SCALE, CBVCase, SliceDataset, read_entry, validation_volume
from synthlab.hiersynth.training import CBVSynthModule
from synthlab.hiersynth.variants import VARIANTS
from synthlab.progress import StageProgress
from synthlab.registry import save_model
from synthlab.trainer import (
    best_network_weights,
    exported_steps,
    forget_run_of_another_source,
    make_trainer,
    read_cases,
    require_same_settings,
    resume_point,
    training_loader,
)

EPOCH_STEPS = 100


@dataclass
class CBVFitOptions:
    variant: str = "hiersynth"
    contrasts: tuple[str, ...] = CONTRASTS
    spacing: float = 2.0
    neighbours: int = 1
    steps: int = 2000
    global_fraction: float = 0.5
    joint_steps: int = 0
    batch_size: int = 8
    local_tumour_share: float = 0.0
    learning_rate: float = 2e-4
    rate_schedule: str = "constant"
    max_minutes: float | None = None
    devices: int = 1
    accelerator: str = "auto"
    seed: int = 0
    model_id: str = "hiersynth"
    workers: int = 0  # background processes making training slices
    validation_cases: int = 4  # the first of the validation split; they score each checkpoint
    tumour_share: float = 0.0  # the first stage's (GSM or monolithic U-Net) share of tumour slices
    cache: Path | None = None  # folder keeping the prepared cases for later runs on the same images


def stage_budget(options: CBVFitOptions) -> dict[str, int]:
    """Generator updates per stage, in training order."""
    stages = VARIANTS[options.variant].stages
    if len(stages) == 1:
        budget = {stages[0]: options.steps}
    else:
        first = max(1, round(options.steps * options.global_fraction))
        budget = {"global": first, "local": max(1, options.steps - first)}
    if options.joint_steps:
        if len(stages) == 1:
            raise InputError("--joint-steps", f"only for two-stage variants, not {options.variant}")
        budget["joint"] = options.joint_steps
    return budget


def card_for(options: CBVFitOptions) -> dict:
    return {"task": "cbv", "version": __version__, "variant": options.variant,
            "method": "HierSynth: GSM + residual LSM + PaC (METHODS.md §1)" if options.variant == "hiersynth"
            else f"baseline: {options.variant}",
            "inputs": list(options.contrasts), "spacing": [options.spacing] * 3, "canvas_mm": CANVAS_MM,
            "neighbours": options.neighbours, "in_channels": len(options.contrasts) * (2 * options.neighbours + 1),
            "cbv_scale": CBV_SCALE, "cbv_unit": "as the training CBV (phantom: ml/100 g)",
            "intensity": {"kind": "divided by the 99th percentile inside the brain"},
            "synthetic": "synthetic CBV, not for diagnosis"}


def start_from(module: CBVSynthModule, weights: dict[str, torch.Tensor]) -> None:
    """Load the previous stage's weights. The local stage takes only the GSM: the LSM in the global stage's
    export never trained, and a new LSM starts from its own initialisation (a zero residual)."""
    if module.hparams.stage == "local":
        module.network.gsm.load_state_dict({key.removeprefix("gsm."): value for key, value in weights.items()
                                            if key.startswith("gsm.")})
    else:
        module.network.load_state_dict(weights)


def _train_stage(stage: str, out: Path, source: Path | None, data: tuple, options: CBVFitOptions, steps: int,
                 minutes: float | None, progress: StageProgress) -> Path:
    folder = out / stage
    tumour_share = options.local_tumour_share if stage in ("local", "joint") else options.tumour_share
    if source is not None:  # another GSM, or another tumour share, trains this stage again
        forget_run_of_another_source(folder, source, f"tumour share {tumour_share:g}" if tumour_share else "")
    weights = folder / f"{stage}.safetensors"
    if exported_steps(weights) >= steps:
        progress(1.0, f"{stage} stage already trained ({weights})")
        return weights
    folder.mkdir(parents=True, exist_ok=True)
    in_channels = len(options.contrasts) * (2 * options.neighbours + 1)
    module = CBVSynthModule(options.variant, stage, in_channels, options.learning_rate,
                            cosine_steps=steps if options.rate_schedule == "cosine" else 0, tumour_share=tumour_share)
    if source is not None:
        start_from(module, load_file(str(source)))
    trainer, best = make_trainer(folder, steps * module.optimisers_per_batch, minutes, options.devices,
                                 options.accelerator, progress_bar=False, some_parameters_idle=True)
    training, validation = data
    samples = options.batch_size * options.devices * min(EPOCH_STEPS, steps)  # DDP splits them among ranks
    loader = training_loader(SliceDataset(training, options.neighbours, samples, options.seed + len(stage),
                                          tumour_share), options.batch_size, options.workers)
    resume = resume_point(folder)
    require_same_settings(resume, module.hparams)
    progress(0.0, f"training the {stage} stage of {options.variant}" + (f" (resuming from {resume})" if resume else ""))
    trainer.fit(module, loader, DataLoader(validation, batch_size=1), ckpt_path=str(resume) if resume else None)
    if trainer.global_rank == 0:
        card = {**card_for(options), "stage": stage,
                "training": {"steps": int(trainer.global_step) // module.optimisers_per_batch,
                             "tumour_share": tumour_share, "rate_schedule": options.rate_schedule},
                "metrics": {"validation_score": float(best.best_model_score)
                            if best.best_model_score is not None else None, "validation_cases": len(validation)}}
        save_model(best_network_weights(best, folder), card, folder, stage)
    trainer.strategy.barrier("exported")
    return weights


def _read(entries: list[dict], options: CBVFitOptions, progress: StageProgress, what: str) -> list[CBVCase]:
    read = partial(read_entry, contrasts=options.contrasts, spacing=options.spacing)
    return read_cases(read, entries, progress, what, options.workers, options.cache)


def fit_hiersynth(datalist: Path, out: Path, options: CBVFitOptions, progress: StageProgress) -> dict:
    """Train ``options.variant`` stage by stage; export ``out/<model_id>.safetensors`` and its card."""
    torch.manual_seed(options.seed)
    budget = stage_budget(options)
    splits = read_datalist(datalist)
    if not splits["training"]:
        raise InputError("--datalist", "has no training cases")
    validation_entries = (splits["validation"] or splits["training"][-1:])[:options.validation_cases]
    training = _read(splits["training"], options, progress, "training cases")
    validation = [validation_volume(case, options.neighbours)
                  for case in _read(validation_entries, options, progress, "validation cases")]
    total = sum(budget.values())
    source = None
    for stage, steps in budget.items():
        minutes = options.max_minutes * steps / total if options.max_minutes else None
        source = _train_stage(stage, out, source, (training, validation), options, steps, minutes, progress)
    if torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
        return {}
    stage_cards = {stage: exported_steps(out / stage / f"{stage}.safetensors") for stage in budget}
    final = json.loads(source.with_suffix(".json").read_text())
    card = {**card_for(options), "training": {"steps": sum(stage_cards.values()), "stages": stage_cards,
                                               "tumour_share": options.tumour_share,
                                               "local_tumour_share": options.local_tumour_share,
                                               "rate_schedule": options.rate_schedule},
            "metrics": final.get("metrics", {}), "training_data": str(datalist)}
    weights_path, card_path = save_model(load_file(str(source)), card, out, options.model_id)
    progress(1.0, f"wrote {weights_path.name}")
    return {"weights": str(weights_path), "card": str(card_path), "model_id": options.model_id,
            "steps": card["training"]}

