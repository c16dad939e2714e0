"""The shared Trainer: a resumed run gets its whole --minutes again."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from synthlab.trainer import make_trainer, resume_point


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
