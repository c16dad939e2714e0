"""The shared Trainer and training loader: a resumed run gets its whole --minutes again; every DDP rank and loader
worker draws its own examples."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from synthlab.trainer import RandomExamples, make_trainer, resume_point, training_loader


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
