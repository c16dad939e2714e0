"""What every ``synthlab train`` command shares: a Lightning Trainer that checkpoints and resumes.

Training runs in ``--out``: ``checkpoints/last.ckpt`` (resume point, written every
epoch) and ``checkpoints/best.ckpt`` (the best validation score). Running the same
command again resumes from ``last.ckpt``; finished training exports safetensors
weights and a card, never pickles.
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed
from pytorch_lightning.callbacks import EMAWeightAveraging, ModelCheckpoint, Timer
from torch.utils.data import DataLoader, Dataset, get_worker_info

from synthlab.case_cache import CachedReader
from synthlab.errors import InputError
from synthlab.processes import map_in_processes
from synthlab.progress import StageProgress
from synthlab.registry import sha256_of

Case = TypeVar("Case")


def checkpoint_folder(out: Path) -> Path:
    return Path(out) / "checkpoints"


def resume_point(out: Path) -> Path | None:
    """``last.ckpt`` of an earlier run in ``out``, if there is one."""
    last = checkpoint_folder(out) / "last.ckpt"
    return last if last.is_file() else None


class RunTimer(Timer):
    """``--minutes`` counts this run only, so a resumed run gets its full time again (Lightning's own timer
    carries the earlier runs' time over from the checkpoint and may stop a resumed run at once)."""

    def load_state_dict(self, state_dict: dict) -> None:
        """Ignore the training time recorded by earlier runs."""


class RandomExamples(Dataset):
    """A training set that draws each example from its own random state (started from ``seed``), whatever the
    index: copies of it in DDP ranks and loader workers must each be given their own stream (``reseed``), or
    they repeat each other. Subclasses draw from ``self.rng`` and extend ``reseed`` with any other random state.
    ``rank`` is the DDP rank of the process that iterates it (set by ``training_loader``'s loader)."""

    def __init__(self, seed: int):
        self.seed = seed
        self.rank: int | None = None
        self.rng = np.random.default_rng(seed)

    def reseed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)


def _stream_seed(seed: int, rank: int, worker: int) -> int:
    """The random stream of DDP ``rank``'s loader ``worker`` (0: the rank's own process)."""
    return int(np.random.SeedSequence([seed, rank, worker]).generate_state(1)[0])


def _reseed_worker(worker: int) -> None:
    dataset = get_worker_info().dataset
    dataset.reseed(_stream_seed(dataset.seed, dataset.rank, worker + 1))


class _RankStreamsLoader(DataLoader):
    """Tells its dataset the DDP rank when it first starts iterating, before any worker starts: workers read
    the rank from their copy of the dataset, however the platform starts them (fork or spawn). Without workers,
    each DDP rank moves to its own stream there and then."""

    def __iter__(self):
        if self.dataset.rank is None:
            distributed = torch.distributed.is_initialized()
            self.dataset.rank = torch.distributed.get_rank() if distributed else 0
            if distributed and torch.distributed.get_world_size() > 1 and self.num_workers == 0:
                self.dataset.reseed(_stream_seed(self.dataset.seed, self.dataset.rank, 0))
        return super().__iter__()


def training_loader(dataset: RandomExamples, batch_size: int, workers: int = 0, shuffle: bool = False
                    ) -> DataLoader:
    """Training batches, made by ``workers`` background processes (0: in the training process, one batch at a
    time). Each worker and DDP rank draws its own examples, reproducibly from the dataset's ``seed``.

    Workers are started fresh ("spawn"), not forked: a DDP rank already runs threads (gloo, ITK's and
    OpenMP's pools, CUDA), and a process forked while one of them holds a lock can wait on it for ever."""
    return _RankStreamsLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=True, num_workers=workers,
                              persistent_workers=workers > 0, worker_init_fn=_reseed_worker if workers else None,
                              multiprocessing_context="spawn" if workers else None)


def read_cases(read: Callable[[dict], Case], entries: list[dict], progress: StageProgress, what: str,
               workers: int = 0, cache: Path | None = None) -> list[Case]:
    """``read`` of each datalist entry, in the entries' order, by ``workers`` processes when 2 or more (bias fits
    and resampling take seconds a case); ``read`` must then be picklable (see ``map_in_processes``). With a
    ``cache`` folder, a case prepared before from the same files with the same settings is taken from there."""
    return map_in_processes(CachedReader(read, cache) if cache else read, entries, progress, what, workers)


class MovableCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint that keeps its best score when the run folder was moved or copied since the
    checkpoint was written (Lightning's own forgets it then, so the next validation, however poor, would become
    the best and be exported); the saved paths are taken to the same file names in the new folder."""

    def load_state_dict(self, state_dict: dict) -> None:
        if self.dirpath and state_dict.get("dirpath", self.dirpath) != self.dirpath:
            state_dict = {**state_dict, "dirpath": self.dirpath,
                          **{key: self._here(state_dict.get(key))
                             for key in ("best_model_path", "kth_best_model_path", "last_model_path")},
                          "best_k_models": {self._here(path): score
                                            for path, score in state_dict.get("best_k_models", {}).items()}}
        super().load_state_dict(state_dict)

    def _here(self, path: str | None) -> str | None:
        return str(Path(self.dirpath) / Path(path).name) if path else path


def make_trainer(out: Path, max_steps: int, max_minutes: float | None, devices: int = 1,
                 accelerator: str = "auto", monitor: str = "val_score", progress_bar: bool = True,
                 some_parameters_idle: bool = False, ema_decay: float = 0.0) -> tuple[pl.Trainer, ModelCheckpoint]:
    """A Trainer that keeps ``best.ckpt`` (highest ``monitor``) and ``last.ckpt`` (the latest validation, where a
    resumed run goes on); DDP when ``devices > 1``
    (told when part of the network does not train, e.g. one stage of a two-stage model).

    With ``ema_decay`` above 0 the weights that are validated and checkpointed (and so exported) are an
    exponential moving average of the trained ones, updated every step (Lightning's EMAWeightAveraging).
    """
    warnings.filterwarnings("ignore", message=".*Using PyTorch native grid_sample.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*non-tuple sequence for multidimensional indexing.*")
    strategy = ("ddp_find_unused_parameters_true" if some_parameters_idle else "ddp") if devices > 1 else "auto"
    # No "-v1" copies: a run folder that was moved or copied keeps resuming from (and writing) last.ckpt.
    best = MovableCheckpoint(dirpath=checkpoint_folder(out), filename="best", monitor=monitor, mode="max",
                             save_top_k=1, enable_version_counter=False)
    # Its own callback: Lightning's save_last writes last.ckpt only when the monitored score improves.
    latest = MovableCheckpoint(dirpath=checkpoint_folder(out), filename="last", save_top_k=1,
                               enable_version_counter=False)
    timer = [RunTimer(duration=timedelta(minutes=max_minutes))] if max_minutes else []
    averaging = [EMAWeightAveraging(decay=ema_decay)] if ema_decay else []
    trainer = pl.Trainer(
        default_root_dir=str(out), max_steps=max_steps,
        accelerator=accelerator, devices=devices, strategy=strategy,
        callbacks=[best, latest, *timer, *averaging], log_every_n_steps=5,
        enable_progress_bar=progress_bar, enable_model_summary=False, logger=pl.loggers.CSVLogger(str(out)),
        num_sanity_val_steps=0)
    return trainer, best


def cosine_annealed(optimisers: list[torch.optim.Optimizer], steps: int) -> list:
    """``configure_optimizers``' answer: the optimisers as they are (``steps`` 0), or each with its rate annealed
    to zero over ``steps`` optimiser steps along a cosine."""
    if not steps:
        return optimisers
    return [{"optimizer": optimiser,
             "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps),
                              "interval": "step"}}
            for optimiser in optimisers]


def require_same_settings(checkpoint: Path | None, hyperparameters) -> None:
    """Refuse to resume a checkpoint trained with other network settings (its weights would not fit)."""
    if checkpoint is None:
        return
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False).get("hyper_parameters", {})
    differing = {key: (saved.get(key), value) for key, value in dict(hyperparameters).items()
                 if key in saved and _plain(saved[key]) != _plain(value)}
    if differing:
        described = ", ".join(f"{key} {old} (now {new})" for key, (old, new) in differing.items())
        raise InputError("--out", f"holds a run trained with {described}; resume with the same settings or "
                                  "use a new folder")


def _plain(value):
    return list(value) if isinstance(value, tuple | list) else value


def best_network_weights(best: ModelCheckpoint, out: Path) -> dict:
    """The ``network.*`` weights of the best checkpoint (``last.ckpt`` when no validation ran), unprefixed."""
    path = best.best_model_path or str(resume_point(out))
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    return {key.removeprefix("network."): value for key, value in state.items() if key.startswith("network.")}


def exported_steps(weights: Path) -> int:
    """Optimiser steps behind exported stage weights (from their card); 0 when there are none."""
    card = Path(weights).with_suffix(".json")
    if not Path(weights).is_file() or not card.is_file():
        return 0
    return int(json.loads(card.read_text()).get("training", {}).get("steps", 0))


def forget_run_of_another_source(folder: Path, source: Path, how: str = "") -> None:
    """A stage trained from other weights (another junior, another GSM), or started another ``how``, starts
    again from scratch."""
    marker = folder / "source.sha256"
    expected = sha256_of(source) + (f" {how}" if how else "")
    if folder.exists() and (not marker.is_file() or marker.read_text() != expected):
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    marker.write_text(expected)
