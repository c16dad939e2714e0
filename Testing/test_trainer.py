"""The shared Trainer, case reader, case cache and training loader: a resumed run gets its whole --minutes again and
goes on from its latest validation; cases read by several processes equal those read in one; a cached case is not
read again; every DDP rank and loader worker draws its own examples."""

from __future__ import annotations

import shutil
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from synthlab.brain import read_entry
from synthlab.case_cache import CachedReader
from synthlab.datalist import read_datalist
from synthlab.errors import InputError
from synthlab.trainer import (
    RandomExamples,
    checkpoint_folder,
    make_trainer,
    read_cases,
    resume_point,
    training_loader,
)


class _TinyModule(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_index):
        return self.layer(batch).pow(2).mean()

    def validation_step(self, batch, batch_index):
        self.log("val_score", -self.layer(batch).pow(2).mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(out, steps: int) -> pl.Trainer:
    data = DataLoader(torch.randn(4, 2), batch_size=1)
    trainer, _ = make_trainer(out, steps, max_minutes=1.0, progress_bar=False)
    resume = resume_point(out)
    trainer.fit(_TinyModule(), data, data, ckpt_path=str(resume) if resume else None)
    return trainer


def test_a_resumed_run_is_not_charged_for_the_earlier_runs_time(tmp_path):
    assert _fit(tmp_path, 4).global_step == 4
    checkpoint_path = resume_point(tmp_path)
    checkpoint = torch.load(checkpoint_path, weights_only=False)
    timers = [state for state in checkpoint["callbacks"].values() if "time_elapsed" in state]
    assert timers, "the timer's state should be in the checkpoint"
    for state in timers:  # as if the earlier run had trained for an hour
        state["time_elapsed"] = {stage: 3600.0 for stage in state["time_elapsed"]}
    torch.save(checkpoint, checkpoint_path)
    assert _fit(tmp_path, 8).global_step == 8


class _Worsening(_TinyModule):
    """Every validation scores lower than the one before: only the first is ever the best."""

    def validation_step(self, batch, batch_index):
        self.log("val_score", -float(self.global_step))


def test_last_checkpoint_follows_every_validation_not_only_the_best(tmp_path):
    """Resuming continues from the latest validated step, not from the last time the score improved."""
    data = DataLoader(torch.randn(4, 2), batch_size=1)
    trainer, best = make_trainer(tmp_path, 12, max_minutes=None, progress_bar=False)
    trainer.fit(_Worsening(), data, data)
    assert torch.load(resume_point(tmp_path), weights_only=False)["global_step"] == 12
    assert torch.load(best.best_model_path, weights_only=False)["global_step"] == 4


def test_a_moved_run_folder_keeps_its_best_score_when_it_resumes(tmp_path):
    """A run copied elsewhere and resumed must still export its best weights, not the first validation after the
    move (Lightning's ModelCheckpoint drops its best score when the folder changes)."""
    data = DataLoader(torch.randn(4, 2), batch_size=1)
    trainer, _ = make_trainer(tmp_path / "first", 8, max_minutes=None, progress_bar=False)
    trainer.fit(_Worsening(), data, data)
    shutil.copytree(tmp_path / "first", tmp_path / "moved")
    shutil.rmtree(tmp_path / "first")
    trainer, best = make_trainer(tmp_path / "moved", 16, max_minutes=None, progress_bar=False)
    trainer.fit(_Worsening(), data, data, ckpt_path=str(resume_point(tmp_path / "moved")))
    assert trainer.global_step == 16 and float(best.best_model_score) == -4.0
    assert Path(best.best_model_path).parent == checkpoint_folder(tmp_path / "moved")
    assert torch.load(best.best_model_path, weights_only=False)["global_step"] == 4


class _Draws(RandomExamples):
    """Each example is the next number of the dataset's random stream."""

    def __len__(self) -> int:
        return 12

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor(self.rng.random())


def _one_epoch(workers: int) -> list[float]:
    return torch.cat(list(training_loader(_Draws(seed=3), batch_size=2, workers=workers))).tolist()


def test_loader_workers_each_draw_their_own_examples_reproducibly():
    in_process = _one_epoch(0)
    assert len(set(in_process)) == 12
    with_workers = _one_epoch(2)
    assert len(set(with_workers)) == 12, "two workers repeated each other's examples"
    assert with_workers == _one_epoch(2)  # the same seed, the same examples


def _ddp_rank_draws(rank: int, store: str, results) -> None:
    """One epoch in this DDP rank, drawn in its own process and by one worker. The loader starts its workers
    fresh (spawn), never forked from a rank's threads: a worker inherits no process group and must learn the
    rank another way."""
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        spawned = training_loader(_Draws(seed=3), batch_size=2, workers=1)
        assert spawned.multiprocessing_context.get_start_method() == "spawn"
        results[rank] = {"in process": _one_epoch(0), "spawned worker": torch.cat(list(spawned)).tolist()}
    finally:
        torch.distributed.destroy_process_group()


def test_every_ddp_rank_and_worker_draws_its_own_examples(tmp_path):
    results = torch.multiprocessing.Manager().dict()
    torch.multiprocessing.spawn(_ddp_rank_draws, args=(str(tmp_path / "store"), results), nprocs=2)
    draws = [value for rank in (0, 1) for epoch in results[rank].values() for value in epoch]
    assert len(draws) == 48 and len(set(draws)) == 48, "two ranks or workers repeated each other's examples"


def _recorded_progress():
    events = []
    return events, lambda fraction, message="": events.append((fraction, message))


def test_cases_read_by_two_processes_equal_those_read_in_one_and_keep_their_order(brain_data):
    entries = read_datalist(brain_data / "datalist.json")["training"][:3]
    read = partial(read_entry, channels=("flair", "t1"), spacing=6.0, bias_levels=1)
    alone_events, alone_progress = _recorded_progress()
    alone = read_cases(read, entries, alone_progress, "brains")
    pooled_events, pooled_progress = _recorded_progress()
    pooled = read_cases(read, entries, pooled_progress, "brains", workers=2)
    assert [case.name for case in pooled] == [entry["case"] for entry in entries]
    for one, other in zip(alone, pooled, strict=True):
        # ITK's bias fit sums in one thread per reading process: equal to the last digits of float32, no more
        np.testing.assert_allclose(one.image, other.image, atol=1e-4)
        assert np.array_equal(one.mask, other.mask)
        assert one.canvas.GetOrigin() == other.canvas.GetOrigin()
    assert pooled_events[0][1] == "reading 3 brains, 2 at once"
    assert pooled_events[-1] == (1.0, "read brains 3/3")
    assert alone_events[-1][1] == "reading brains 3/3"


def test_a_bad_case_read_in_a_worker_gives_the_same_one_line_error(brain_data, tmp_path):
    entries = read_datalist(brain_data / "datalist.json")["training"][:2]
    entries[1] = {**entries[1], "flair": str(tmp_path / "missing.nii.gz")}
    read = partial(read_entry, channels=("flair",), spacing=6.0)
    with pytest.raises(InputError) as alone:
        read_cases(read, entries, lambda *_: None, "brains")
    with pytest.raises(InputError) as pooled:
        read_cases(read, entries, lambda *_: None, "brains", workers=2)
    assert (pooled.value.name, pooled.value.problem) == (alone.value.name, alone.value.problem)
    assert "missing.nii.gz" in str(pooled.value)


def _refuse_to_read(*_, **__):
    raise AssertionError("read again although the case is in the cache")


def test_a_cached_case_is_read_once_and_again_only_when_its_files_or_settings_change(brain_data, tmp_path,
                                                                                    monkeypatch):
    first, second = read_datalist(brain_data / "datalist.json")["training"][:2]
    (tmp_path / "case").mkdir()
    for name in ("flair", "mask"):
        (tmp_path / "case" / f"{name}.nii.gz").write_bytes(Path(first[name]).read_bytes())
    entry = {"case": "copy", "flair": str(tmp_path / "case" / "flair.nii.gz"),
             "mask": str(tmp_path / "case" / "mask.nii.gz")}
    cache = tmp_path / "cache"
    read = partial(read_entry, channels=("flair",), spacing=6.0, bias_levels=1)
    pooled = read_cases(read, [entry, second], lambda *_: None, "brains", workers=2, cache=cache)
    for case, direct in zip(pooled, (read(entry), read(second)), strict=True):
        np.testing.assert_allclose(case.image, direct.image, atol=1e-4)  # ITK's threads, as above
        assert np.array_equal(case.mask, direct.mask)
    assert len(list(cache.glob("*.pickle"))) == 2

    with monkeypatch.context() as patched:
        patched.setattr("synthlab.brain.read_brain", _refuse_to_read)
        again = CachedReader(read, cache)(entry)
    assert np.array_equal(again.image, pooled[0].image) and again.canvas.GetOrigin() == pooled[0].canvas.GetOrigin()

    CachedReader(partial(read_entry, channels=("flair",), spacing=8.0, bias_levels=1), cache)(entry)
    assert len(list(cache.glob("*.pickle"))) == 3, "another spacing must be read afresh"
    (tmp_path / "case" / "flair.nii.gz").write_bytes(Path(second["flair"]).read_bytes())
    changed = CachedReader(read, cache)(entry)
    assert len(list(cache.glob("*.pickle"))) == 4, "another image under the same path must be read afresh"
    assert not np.array_equal(changed.image, pooled[0].image)
