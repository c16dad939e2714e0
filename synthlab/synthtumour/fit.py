"""``synthlab train synthtumour``: junior (stage 1) → pseudo labels → senior (stage 2), each stage resumable.

``out/junior`` and ``out/senior`` hold each stage's Lightning checkpoints; a stage whose
exported weights already have the asked-for steps is not trained again (more steps resume
it from ``last.ckpt``; ``--minutes`` limits each stage in this run only), and pseudo labels
are kept in ``out/pseudo_labels`` for as long as the junior is the same (those of the held-out tumour
images, which choose the senior's checkpoint, in ``out/pseudo_labels_validation``). A pseudo label is what
inference would keep of the junior's tumour (no component under 0.5 ml), with the holes it leaves
in a tumour filled slice by slice: a whole-tumour label includes the core. A folder keeps one
image preparation (channels, spacing, bias correction). With ``senior_rounds`` N > 1, stage 2 runs N
times: round r (``out/senior_round<r>``, labels in ``out/pseudo_labels_round<r>``) trains a new senior on
the previous senior's pseudo labels. With a ``labeller`` (an earlier run's senior, say) no junior is
trained: that model's pseudo labels start stage 2. The last senior is exported as ``<model_id>`` with its card.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from scipy import ndimage
from torch.utils.data import DataLoader

from synthlab import __version__
from synthlab.brain import BIAS_FIT_LEVELS, CANVAS_MM, BrainArrays, read_entry
from synthlab.datalist import read_datalist
from synthlab.errors import InputError
from synthlab.progress import StageProgress
from synthlab.registry import save_model, sha256_of
from synthlab.synthtumour.edges import half_contrast_edges
from synthlab.synthtumour.inference import MIN_COMPONENT_ML, TumourModel, remove_small_components
from synthlab.synthtumour.network import FILTERS, exportable, load_weights
from synthlab.synthtumour.training import (
    MixedTumours,
    SyntheticTumours,
    TumourSegModule,
    carved_validation_cases,
    score_of_pick,
    validation_cases,
)
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
from synthlab.volume import atomic_output

PSEUDO_LABEL_RULE = (f"junior probability > 0.5, components under {MIN_COMPONENT_ML:g} ml removed, "
                     "holes filled in every slice")
HALF_CONTRAST_RULE = "each outline moved to FLAIR's half-contrast edge, at most one voxel"


@dataclass
class TumourFitOptions:
    channels: tuple[str, ...] = ("flair",)
    spacing: float = 2.0
    patch: int = 64
    batch_size: int = 2
    junior_steps: int = 400
    senior_steps: int = 400
    max_minutes: float | None = None  # per stage
    learning_rate: float = 1e-3
    filters: tuple[int, ...] = FILTERS
    devices: int = 1
    accelerator: str = "auto"
    seed: int = 0
    model_id: str = "synthtumour-senior"
    bias_fit_levels: int = BIAS_FIT_LEVELS  # N4 before scaling, its fitting levels (0: none; see synthlab.brain)
    senior_from_junior: bool = False  # the senior starts from the junior's weights instead of from scratch
    senior_augmentation: bool = False  # nnU-Net-like augmentation of the senior's patches
    senior_stage1_fraction: float = 0.0  # share of the senior's examples that are stage-1 synthetic tumours
    senior_tumour_free_fraction: float = 0.0  # share of the senior's examples that are healthy brains, no tumour
    senior_ema_decay: float = 0.0  # the senior exports an exponential moving average of its weights (0: none)
    senior_real_share: float = 0.5  # share of the senior's tumour examples that are real images, not carved mixes
    rate_schedule: str = "constant"  # or "cosine": each stage's rate annealed to zero over its steps
    senior_pick_from: float = 0.0  # the senior's checkpoint is chosen among validations from this share of its steps on
    senior_rounds: int = 1  # stage 2 repeated: each later senior learns from the previous senior's pseudo labels
    workers: int = 0  # background processes making training patches
    cache: Path | None = None  # folder keeping the prepared images for later runs on the same images
    pseudo_label_edges: str = "model"  # or "half-contrast": outlines moved to FLAIR's half-contrast edge
    labeller: Path | None = None  # a trained tumour model whose pseudo labels start stage 2: no junior is trained

    @property
    def moves_pseudo_label_edges(self) -> bool:
        return self.pseudo_label_edges == "half-contrast"


def pseudo_label_rule(options: TumourFitOptions) -> str:
    """``PSEUDO_LABEL_RULE`` and, with ``--pseudo-label-edges half-contrast``, the outline's move."""
    return PSEUDO_LABEL_RULE + (f", {HALF_CONTRAST_RULE}" if options.moves_pseudo_label_edges else "")


def pseudo_label_edges_named_in(card: dict) -> str:
    """The ``--pseudo-label-edges`` whose rule a model card's ``pseudo_labels`` names (``model`` when none)."""
    return "half-contrast" if HALF_CONTRAST_RULE in card.get("pseudo_labels", "") else "model"


def card_for(options: TumourFitOptions, stage: str) -> dict:
    return {"task": "tumour", "version": __version__, "stage": stage,
            "method": "SynthTumour two-stage synthesis, no expert labels (METHODS.md §2)",
            "inputs": list(options.channels), "spacing": [options.spacing] * 3, "canvas_mm": CANVAS_MM,
            "patch": [options.patch] * 3, "filters": list(options.filters),
            "intensity": {"kind": "brain z-score", "scale": "99th percentile inside the brain",
                          "bias_correction": "N4" if options.bias_fit_levels else None,
                          "bias_fit_levels": options.bias_fit_levels},
            "labels": {"1": "Tumour"}}


def _preparation_differences(card: dict, options: TumourFitOptions) -> list[str]:
    """What of a model card's image preparation (channels, spacing, bias correction) differs from this run's."""
    now = card_for(options, "junior")
    return [key for key in ("inputs", "spacing", "intensity") if card.get(key) != now[key]]


def _require_same_preprocessing(out: Path, options: TumourFitOptions) -> None:
    """Refuse to resume a run whose images were prepared otherwise (channels, spacing, bias correction)."""
    exported = out / "junior" / "junior.json"
    if not exported.is_file():
        return
    differing = _preparation_differences(json.loads(exported.read_text()), options)
    if differing:
        raise InputError("--out", f"holds a run whose images were prepared with other {', '.join(differing)}; "
                                  "resume with the same settings or use a new folder")


def _require_labeller_preparation(labeller: Path, options: TumourFitOptions) -> None:
    """Refuse a labeller whose card prepares images otherwise than this run (channels, spacing, bias correction)."""
    card_path = labeller.with_suffix(".json")
    if not labeller.is_file() or not card_path.is_file():
        raise InputError("--labeller", f"{labeller}: give a tumour model's weights with its card ({card_path.name}) "
                                       "beside them")
    differing = _preparation_differences(json.loads(card_path.read_text()), options)
    if differing:
        raise InputError("--labeller", f"was trained on images prepared with other {', '.join(differing)} than "
                                       "this run's; give the same --channels, --spacing and --bias-fit-levels")


def _read_split(entries: list[dict], options: TumourFitOptions, progress: StageProgress, what: str
                ) -> list[BrainArrays]:
    """The entries' channels on the canvas, bias removed."""
    read = partial(read_entry, channels=options.channels, spacing=options.spacing,
                   bias_levels=options.bias_fit_levels)
    return read_cases(read, entries, progress, what, options.workers, options.cache)


STAGE1_VALIDATION = ("Dice pooled over held-out healthy brains with a shifted-intensity tumour and the same brains "
                     "without one")
CARVED_VALIDATION = ("Dice pooled over held-out tumour images, pseudo-labelled as the training images were (by the "
                     "junior or the --labeller model, or in a later round the previous senior) and carved "
                     "into held-out healthy brains, and the same brains without one")


def _train_stage(stage: str, out: Path, dataset, validation: list, options: TumourFitOptions, steps: int,
                 progress: StageProgress, start_from: Path | None = None, ema_decay: float = 0.0,
                 validation_kind: str = STAGE1_VALIDATION, pick_from: float = 0.0) -> Path:
    """Train one stage in ``out/<stage>`` (resuming, else starting from ``start_from``'s weights when given),
    export its best weights (by ``validation``, described by ``validation_kind``, among the validations from
    ``pick_from`` of its steps on); return the weights path."""
    folder = out / stage
    weights = folder / f"{stage}.safetensors"
    if weights.is_file() and exported_steps(weights) >= steps:
        progress(1.0, f"{stage} already trained ({weights})")
        return weights
    folder.mkdir(parents=True, exist_ok=True)
    pick_from_step = round(pick_from * steps)
    module = TumourSegModule(len(options.channels), options.filters, options.learning_rate,
                             cosine_steps=steps if options.rate_schedule == "cosine" else 0,
                             pick_from_step=pick_from_step)
    trainer, best = make_trainer(folder, steps, options.max_minutes, options.devices, options.accelerator,
                                 monitor="val_pick" if pick_from_step else "val_score", progress_bar=False,
                                 ema_decay=ema_decay)
    loader = training_loader(dataset, options.batch_size, options.workers)
    resume = resume_point(folder)
    require_same_settings(resume, module.hparams)
    if start_from is not None and resume is None:
        load_weights(module.network, load_file(str(start_from)))
    progress(0.0, f"training the {stage}" + (f" (resuming from {resume})" if resume else ""))
    trainer.fit(module, loader, DataLoader(validation, batch_size=1), ckpt_path=str(resume) if resume else None)
    if trainer.global_rank == 0:
        card = {**card_for(options, stage), "training": {"steps": int(trainer.global_step),
                                                         "started_from": str(start_from) if start_from else None,
                                                         "augmented": dataset.augment is not None,
                                                         "stage1_fraction": dataset.stage1_fraction,
                                                         "tumour_free_fraction": dataset.tumour_free_fraction,
                                                         "real_share": dataset.real_share,
                                                         "rate_schedule": options.rate_schedule,
                                                         "ema_decay": ema_decay,
                                                         "picked_from_step": pick_from_step},
                "metrics": {"validation_dice": None if best.best_model_score is None
                            else score_of_pick(float(best.best_model_score)), "validation": validation_kind}}
        save_model(exportable(best_network_weights(best, folder)), card, folder, stage)
    trainer.strategy.barrier("exported")  # other DDP ranks read these weights next (pseudo labels)
    return weights


def pseudo_label(probability: np.ndarray, spacing: float, edges_of: BrainArrays | None = None) -> np.ndarray:
    """The junior's tumour as a training label (``PSEUDO_LABEL_RULE``): the components inference would keep,
    and every hole they enclose in an axial, coronal or sagittal slice (a core the junior left out); with
    ``edges_of`` (the labelled case), each outline moved to its FLAIR's half-contrast edge."""
    label, _ = remove_small_components(probability > 0.5, [spacing] * 3, MIN_COMPONENT_ML)
    for axis in range(3):
        slices = np.moveaxis(label, axis, 0)
        label |= np.moveaxis(np.stack([ndimage.binary_fill_holes(one) for one in slices]), 0, axis)
    return label if edges_of is None else half_contrast_edges(label, edges_of.image[0], edges_of.mask)


def _pseudo_labels(labeller: Path, cases: list[BrainArrays], out: Path, options: TumourFitOptions,
                   progress: StageProgress) -> None:
    """Label each unlabelled tumour case with ``labeller`` (the junior, or the previous round's senior), kept in
    ``out`` so a rerun with the same labeller and rule reuses them; another labeller or rule labels them again."""
    out.mkdir(parents=True, exist_ok=True)
    made_by, maker = out / "labeller.sha256", f"{sha256_of(labeller)}\n{pseudo_label_rule(options)}"
    if not made_by.is_file() or made_by.read_text() != maker:
        for old in out.glob("case_*.npz"):
            old.unlink()
        made_by.write_text(maker)
    model = None
    for index, case in enumerate(cases):
        path = out / f"case_{index:04d}.npz"
        if path.is_file():
            case.label = np.load(path)["label"]
            continue
        if model is None:
            model = TumourModel.from_files(labeller, "auto", mirror=False)  # the rule's single pass
        progress(index / max(1, len(cases)), f"pseudo labels {index + 1}/{len(cases)}")
        edges_of = case if options.moves_pseudo_label_edges else None
        case.label = pseudo_label(model.segment_canvas(case), options.spacing, edges_of)
        with atomic_output(path) as temporary:  # DDP ranks may write the same file
            np.savez_compressed(temporary, label=case.label)


def _senior_recipe(options: TumourFitOptions, start_from: Path | None, held_out: list) -> list[str]:
    """How the senior is trained, in words; a senior trained another way starts again from scratch."""
    return [words for words, chosen in (
        ("from the --labeller model" if options.labeller else "from the junior", start_from),
        ("augmented", options.senior_augmentation),
        (f"{options.senior_stage1_fraction:.0%} stage-1 examples", options.senior_stage1_fraction),
        (f"{options.senior_tumour_free_fraction:.0%} tumour-free brains", options.senior_tumour_free_fraction),
        (f"weights averaged with EMA decay {options.senior_ema_decay}", options.senior_ema_decay),
        (f"{options.senior_real_share:.0%} real images",
         options.senior_real_share != TumourFitOptions.senior_real_share),
        ("chosen on carved held-out tumours", held_out),
        (f"chosen from {options.senior_pick_from:.0%} of its steps on", options.senior_pick_from)) if chosen]


def fit_synthtumour(healthy_datalist: Path, unlabelled_datalist: Path, out: Path, options: TumourFitOptions,
                    progress: StageProgress) -> dict:
    torch.manual_seed(options.seed)
    healthy_splits, unlabelled_splits = read_datalist(healthy_datalist), read_datalist(unlabelled_datalist)
    healthy_entries = healthy_splits["training"]
    unlabelled_entries = unlabelled_splits["training"]
    if not healthy_entries:
        raise InputError("--healthy", "has no training cases")
    if not unlabelled_entries:
        raise InputError("--unlabelled", "has no training cases")
    _require_same_preprocessing(out, options)
    if options.labeller is not None:
        _require_labeller_preparation(options.labeller, options)
    validation_entries = healthy_splits["validation"] or healthy_entries[-max(1, len(healthy_entries) // 5):]
    healthy = _read_split(healthy_entries, options, progress, "healthy brains")
    validation_brains = _read_split(validation_entries, options, progress, "validation brains")
    validation = validation_cases(validation_brains, options.channels, options.spacing)
    patch = [options.patch] * 3
    samples = max(16 * options.batch_size, len(healthy))

    def stage1(seed: int) -> SyntheticTumours:
        return SyntheticTumours(healthy, options.channels, options.spacing, patch, samples, seed)

    junior = options.labeller or _train_stage("junior", out, stage1(options.seed), validation, options,
                                              options.junior_steps, progress)
    tumours = _read_split(unlabelled_entries, options, progress, "unlabelled tumour images")
    held_out = (_read_split(unlabelled_splits["validation"], options, progress, "held-out tumour images")
                if unlabelled_splits["validation"] else [])  # they choose the senior's checkpoint
    if not held_out:
        progress(0.0, "no held-out tumour images (the unlabelled datalist's validation split is empty): the senior "
                      "is chosen on the junior's stage-1 validation")
    start_from = junior if options.senior_from_junior else None
    recipe = ", ".join([*_senior_recipe(options, start_from, held_out), pseudo_label_rule(options)])
    labeller = junior  # the model whose pseudo labels the next senior learns from
    for round_number in range(1, options.senior_rounds + 1):
        stage = "senior" if round_number == 1 else f"senior_round{round_number}"
        suffix = "" if round_number == 1 else f"_round{round_number}"
        _pseudo_labels(labeller, tumours, out / f"pseudo_labels{suffix}", options, progress)
        senior_validation, validation_kind = validation, STAGE1_VALIDATION
        if held_out:
            _pseudo_labels(labeller, held_out, out / f"pseudo_labels_validation{suffix}", options, progress)
            senior_validation, validation_kind = carved_validation_cases(held_out, validation_brains), CARVED_VALIDATION
        forget_run_of_another_source(out / stage, labeller, recipe)
        dataset = MixedTumours(tumours, healthy, patch, samples, options.seed + 1, options.senior_augmentation,
                               stage1(options.seed + 2), options.senior_stage1_fraction,
                               options.senior_tumour_free_fraction, options.senior_real_share)
        senior = _train_stage(stage, out, dataset, senior_validation, options, options.senior_steps, progress,
                              start_from, options.senior_ema_decay, validation_kind, options.senior_pick_from)
        labelled_by, labeller = labeller, senior
    if torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
        return {}
    card = json.loads(senior.with_suffix(".json").read_text())
    card["training"]["senior_rounds"] = options.senior_rounds
    card.update(training_data={"healthy": str(healthy_datalist), "unlabelled": str(unlabelled_datalist)},
                junior_weights=None if options.labeller else str(junior), pseudo_labels=pseudo_label_rule(options),
                pseudo_labels_by=str(labelled_by))
    weights_path, card_path = save_model(load_file(str(senior)), card, out, options.model_id)
    progress(1.0, f"wrote {weights_path.name}")
    return {"weights": str(weights_path), "card": str(card_path), "junior": str(junior), "model_id": options.model_id}
