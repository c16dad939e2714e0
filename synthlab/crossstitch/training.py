"""Training the joint model and the unsupervised registration core with PyTorch Lightning.

Pairs are resampled onto their model grid once and kept in memory; each step
takes a random patch, may swap fixed and moving (both have contours), perturbs
intensities, and deforms the moving scan with a random smooth field so the
network sees more motion than the phantom drew. A share of patches may have the
fixed scan cut short (``field_of_view_cuts``: a cone-beam CT's field of view), blank
beyond a random box as the model grid is beyond a daily CT; there the photometric
loss is left out and the segmentation target is background (as a cut scan's
contours are), while the contour overlap keeps the phantom's full truth. Losses
(METHODS.md §3, §4):

- registration: local NCC (window 9) + 0.5·bending energy + Dice(warped moving
  contours, fixed contours); without contours (the core, seed 003): photometric
  (NCC or L2) + edge-aware smoothness;
- segmentation: Dice + cross-entropy (see :func:`losses.segmentation_loss`);
- both at three scales weighted 1/3 each, tasks weighted equally or learned.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from monai.networks.blocks import Warp
from torch.nn import functional

from synthlab.crossstitch import losses
from synthlab.crossstitch.data import PairArrays
from synthlab.crossstitch.networks import FILTERS, JointNetwork
from synthlab.trainer import RandomExamples

SCALE_WEIGHTS = (1 / 3, 1 / 3, 1 / 3)
STITCH_PREFIXES = ("network.stitch_down.", "network.stitch_up.")


class PatchDataset(RandomExamples):
    """Random patches of cached pairs, with augmentation when ``augment`` (training) is on.

    Each item: ``fixed``, ``moving`` (1 channel each) and, for labelled pairs,
    ``moving_organs``/``fixed_organs`` (one channel per organ); with ``field_of_view_cuts`` (the share of
    training patches whose fixed scan is cut short) also ``field_of_view``, 1 where the fixed scan was kept.
    """

    def __init__(self, pairs: Sequence[PairArrays], patch: Sequence[int] | None, augment: bool,
                 samples_per_epoch: int | None = None, seed: int = 0, field_of_view_cuts: float = 0.0):
        super().__init__(seed)
        self.pairs, self.patch, self.augment = list(pairs), patch, augment
        self.length = samples_per_epoch or len(self.pairs)
        self.field_of_view_cuts = field_of_view_cuts if augment else 0.0

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        pair = self.pairs[index % len(self.pairs)]
        arrays = {"fixed": pair.fixed[None], "moving": pair.moving[None]}
        if pair.moving_organs is not None and pair.fixed_organs is not None:
            arrays.update(moving_organs=pair.moving_organs, fixed_organs=pair.fixed_organs)
        if self.augment and "fixed_organs" in arrays and self.rng.random() < 0.5:
            arrays = {"fixed": arrays["moving"], "moving": arrays["fixed"],
                      "fixed_organs": arrays["moving_organs"], "moving_organs": arrays["fixed_organs"]}
        if self.patch is not None:
            arrays = _random_patch(arrays, self.patch, self.rng if self.augment else None)
        if self.augment:
            for key in ("fixed", "moving"):
                scale, shift = self.rng.uniform(0.9, 1.1), self.rng.uniform(-0.05, 0.05)
                noise = self.rng.normal(0, self.rng.uniform(0, 0.03), arrays[key].shape)
                arrays[key] = np.clip(arrays[key] * scale + shift + noise, 0, 1)
        if self.field_of_view_cuts > 0:
            cut = self.rng.random() < self.field_of_view_cuts
            arrays["field_of_view"] = _random_field_of_view(arrays["fixed"].shape[1:], self.rng) if cut \
                else np.ones_like(arrays["fixed"])
            arrays["fixed"] = arrays["fixed"] * arrays["field_of_view"]
        return {key: torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32)) for key, value in arrays.items()}


def _random_patch(arrays: dict[str, np.ndarray], patch: Sequence[int], rng: np.random.Generator | None
                  ) -> dict[str, np.ndarray]:
    """The same random (or central) patch of every array, padding sides shorter than the patch."""
    shape = arrays["fixed"].shape[1:]
    starts = []
    for size, wanted in zip(shape, patch, strict=True):
        spare = size - wanted
        starts.append(0 if spare <= 0 else int(rng.integers(0, spare + 1)) if rng is not None else spare // 2)
    result = {}
    for key, value in arrays.items():
        window = value[(slice(None),) + tuple(slice(s, s + w) for s, w in zip(starts, patch, strict=True))]
        padding = [(0, 0)] + [(0, max(0, w - n)) for w, n in zip(patch, window.shape[1:], strict=True)]
        result[key] = np.pad(window, padding, mode="edge" if key in ("fixed", "moving") else "constant")
    return result


def _random_field_of_view(shape: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """A box mask (1 channel) that keeps 40–85 % of the first axis (across slices) and, one time in four,
    60–95 % of each other axis: where a short daily scan reaches."""
    mask = np.zeros((1, *shape), np.float32)
    box = []
    for axis, size in enumerate(shape):
        low, high = (0.4, 0.85) if axis == 0 else (0.6, 0.95) if rng.random() < 0.25 else (1.0, 1.0)
        kept = max(1, int(round(size * rng.uniform(low, high))))
        start = int(rng.integers(0, size - kept + 1))
        box.append(slice(start, start + kept))
    mask[(slice(None), *box)] = 1.0
    return mask


def random_smooth_field(shape: Sequence[int], batch: int, amplitude: float, generator: torch.Generator,
                        control_spacing: int = 8) -> torch.Tensor:
    """A random smooth displacement (voxels): Gaussian control points upsampled, plus a global shift."""
    dims = len(shape)
    coarse = [max(2, s // control_spacing) for s in shape]
    control = torch.randn((batch, dims, *coarse), generator=generator) * amplitude
    shift = torch.randn((batch, dims) + (1,) * dims, generator=generator) * amplitude
    mode = "trilinear" if dims == 3 else "bilinear"
    return functional.interpolate(control, size=tuple(shape), mode=mode, align_corners=True) + shift


class RegistrationModule(pl.LightningModule):
    """A :class:`JointNetwork` and its losses.

    ``regulariser``: ``bending`` (weight 0.5, the joint model) or ``edge-aware`` (the core).
    ``augment_voxels``: amplitude of the random extra deformation of the moving scan (voxels).
    ``stitch_rate_scale``: the cross-stitch units' step size as a multiple of ``learning_rate``. They are
    a few hundred parameters among many thousand; at the common rate they hardly leave their start
    (Misra et al. also train theirs faster than the rest).
    """

    def __init__(self, configuration: str = "crossstitch", spatial_dims: int = 3, organs: Sequence[str] = (),
                 label_inputs: bool = True, diffeomorphic: bool = False, photometric: str = "ncc",
                 regulariser: str = "bending", regulariser_weight: float = 0.5, learned_task_weights: bool = False,
                 learning_rate: float = 5e-4, augment_voxels: float = 1.5, filters: Sequence[int] = FILTERS,
                 stitch_rate_scale: float = 1.0):
        super().__init__()
        self.save_hyperparameters()
        self.organs = list(organs)
        self.network = JointNetwork(configuration, spatial_dims, len(self.organs), label_inputs and bool(self.organs),
                                    diffeomorphic, tuple(filters))
        self.photometric = losses.PhotometricLoss(photometric, spatial_dims)
        self.bending = losses.bending_energy()
        self.overlap = losses.overlap_loss()
        self.segmentation_loss = losses.segmentation_loss()
        tasks = int(self.network.predicts_field) + int(self.network.predicts_segmentation)
        self.task_weights = losses.TaskWeights(tasks, learned_task_weights)
        self.warp = Warp(mode="bilinear", padding_mode="border")
        self.generator = torch.Generator().manual_seed(0)

    def forward(self, fixed, moving, moving_organs=None):
        return self.network(fixed, moving, moving_organs)

    def _deform_moving(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Warp the moving scan (and its contours) by a random smooth field: more motion to learn."""
        amplitude = self.hparams.augment_voxels
        if amplitude <= 0 or not self.network.predicts_field:
            return batch
        field = random_smooth_field(batch["fixed"].shape[2:], batch["fixed"].shape[0], amplitude,
                                    self.generator).to(batch["moving"])
        batch = dict(batch)
        batch["moving"] = self.warp(batch["moving"], field)
        if "moving_organs" in batch:
            batch["moving_organs"] = self.warp(batch["moving_organs"], field)
        return batch

    def losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each task's deep-supervised loss on a batch (no task weighting)."""
        labelled = "fixed_organs" in batch and bool(self.organs)
        scanned = batch.get("field_of_view")
        output = self(batch["fixed"], batch["moving"], batch.get("moving_organs"))
        result = {}
        if "ddf" in output:
            terms = []
            for weight, ddf in zip(SCALE_WEIGHTS, output["ddf"], strict=True):
                term = self.photometric(self.warp(batch["moving"], ddf), batch["fixed"], scanned)
                if self.hparams.regulariser == "bending":
                    term = term + self.hparams.regulariser_weight * self.bending(ddf)
                else:
                    term = term + self.hparams.regulariser_weight * losses.edge_aware_smoothness(ddf, batch["fixed"])
                if labelled:
                    term = term + self.overlap(_with_background(self.warp(batch["moving_organs"], ddf)),
                                               _with_background(batch["fixed_organs"]))
                terms.append(weight * term)
            result["registration"] = torch.stack(terms).sum()
        if "seg" in output and labelled:  # beyond a cut scan the target is background, as its contours would be
            target = _label_indices(batch["fixed_organs"] * (scanned if scanned is not None else 1))
            result["segmentation"] = torch.stack([weight * self.segmentation_loss(logits, target) for weight, logits
                                                  in zip(SCALE_WEIGHTS, output["seg"], strict=True)]).sum()
        return result

    def training_step(self, batch, batch_index):
        task_losses = self.losses(self._deform_moving(batch))
        total = self.task_weights(list(task_losses.values()))
        for name, value in task_losses.items():
            self.log(f"train_{name}", value, prog_bar=True, sync_dist=True)
        self.log("train_loss", total, prog_bar=True, sync_dist=True)
        return total

    def validation_step(self, batch, batch_index):
        output = self(batch["fixed"], batch["moving"], batch.get("moving_organs"))
        if "fixed_organs" not in batch:
            ddf = output["ddf"][-1]
            self.log("val_score", -self.photometric(self.warp(batch["moving"], ddf), batch["fixed"]), sync_dist=True)
            return
        target = batch["fixed_organs"] > 0.5
        scores = {}
        if "ddf" in output:
            warped = self.warp(batch["moving_organs"], output["ddf"][-1]) > 0.5
            scores["val_contour_dice"] = _mean_dice(warped, target)
        if "seg" in output:
            predicted = functional.one_hot(output["seg"][-1].argmax(1), len(self.organs) + 1).movedim(-1, 1)[:, 1:]
            scores["val_segmentation_dice"] = _mean_dice(predicted.bool(), target)
        self.log_dict(scores, sync_dist=True, prog_bar=True)
        # Checkpoints follow the contours (the registration), or the segmentation when there is no field.
        self.log("val_score", next(iter(scores.values())), sync_dist=True)

    def configure_optimizers(self):
        stitches = [p for name, p in self.named_parameters() if name.startswith(STITCH_PREFIXES)]
        others = [p for name, p in self.named_parameters() if not name.startswith(STITCH_PREFIXES)]
        rate = self.hparams.learning_rate
        groups = [{"params": others}] + ([{"params": stitches, "lr": rate * self.hparams.stitch_rate_scale}]
                                         if stitches else [])
        return torch.optim.RAdam(groups, lr=rate)


def _with_background(organs: torch.Tensor) -> torch.Tensor:
    background = (1 - organs.sum(1, keepdim=True)).clamp(0, 1)
    return torch.cat([background, organs], dim=1)


def _label_indices(organs: torch.Tensor) -> torch.Tensor:
    """Integer labels (0 background, i+1 organ i) from partial-volume organ masks."""
    return _with_background(organs).argmax(1, keepdim=True)


def _mean_dice(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean Dice over the organs present in the target."""
    axes = tuple(range(2, target.dim()))
    intersection = (prediction & target).sum(axes).float()
    total = (prediction.sum(axes) + target.sum(axes)).float()
    present = target.sum(axes) > 0
    return (2 * intersection[present] / total[present].clamp(min=1)).mean()
