"""One Lightning module trains HierSynth's stages and every baseline, so they share data, losses and budget.

Variants (``VARIANTS``) and their stages:

- ``hiersynth``: ``global`` (GSM) → ``local`` (LSM + PaC, GSM frozen) → optional ``joint``.
- ``gsm-lsm``: the same without PaC.  ``gsm``: the GSM alone (one stage).
- ``unet``: a monolithic U-Net with L1.  ``pix2pix``: the same U-Net with a PatchGAN.

Generator loss: L1 + w_ssim·(1 − SSIM) + w_adversarial·LSGAN + w_pac·PaC (``LOSS_WEIGHTS``), the terms a
variant does not use left out. Validation synthesises whole validation
volumes; ``val_score`` is the mean of the brain SSIM and the tumour-ROI SSIM.

With ``cosine_steps`` above 0 every optimiser's rate is annealed to zero over that many generator
updates (a cosine); otherwise it stays constant.
"""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from monai.losses import PatchAdversarialLoss, SSIMLoss

from synthlab.hiersynth.evaluation import cbv_metrics
from synthlab.hiersynth.losses import PerfusionContrast
from synthlab.hiersynth.networks import conditional_discriminator, synthesise_stacks
from synthlab.hiersynth.variants import LOSS_WEIGHTS, VARIANTS, make_network
from synthlab.trainer import cosine_annealed


class CBVSynthModule(pl.LightningModule):
    """One stage of one variant. ``network`` is the whole generator; the stage decides what trains."""

    def __init__(self, variant: str, stage: str, in_channels: int, learning_rate: float = 2e-4,
                 cosine_steps: int = 0, tumour_share: float = 0.0):
        """``tumour_share`` (of the training slices drawn from tumour slices) is only recorded, so that a run is
        resumed with the data mix it started with."""
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.choice = VARIANTS[variant]
        self.network = make_network(variant, in_channels)
        self.discriminator = conditional_discriminator(in_channels) if self.choice.adversarial else None
        self.pac = PerfusionContrast() if self.choice.pac and stage in ("local", "joint") else None
        self.adversarial = PatchAdversarialLoss(criterion="least_squares")
        self.ssim = SSIMLoss(spatial_dims=2, data_range=1.0)
        if stage == "local":
            self.network.gsm.requires_grad_(False)

    @property
    def optimisers_per_batch(self) -> int:
        """Lightning counts every optimiser step in ``global_step``: the discriminator's too."""
        return 2 if self.discriminator is not None else 1

    def trained_parameters(self) -> list[torch.nn.Parameter]:
        stage = self.hparams.stage
        if stage == "global":
            parameters = list(self.network.gsm.parameters())
        elif stage == "local":
            parameters = list(self.network.lsm.parameters())
        else:
            parameters = list(self.network.parameters())
        return parameters + (list(self.pac.parameters()) if self.pac is not None else [])

    def generate(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """(base, residual, output) as this stage trains them (the GSM frozen in ``local``)."""
        if self.hparams.stage == "global":
            base = self.network.gsm(image)
            return base, None, base
        if self.hparams.stage == "local":
            self.network.gsm.eval()
            with torch.no_grad():
                base = self.network.gsm(image)
            residual = self.network.lsm(image, base)
            return base, residual, base + residual
        return self.network(image)

    def training_step(self, batch, batch_index):
        image, cbv, brain = batch["image"], batch["cbv"], batch["brain"]
        optimisers = self.optimizers()
        generator_optimiser = optimisers[0] if isinstance(optimisers, list) else optimisers
        base, residual, output = self.generate(image)
        output = output * brain
        terms = {"l1": F.l1_loss(output, cbv)}
        if self.choice.ssim:
            terms["ssim"] = LOSS_WEIGHTS["ssim"] * self.ssim(output, cbv)
        if self.discriminator is not None:
            fake = self.discriminator(torch.cat([image, output], 1))[-1]
            terms["adversarial"] = LOSS_WEIGHTS["adversarial"] * self.adversarial(
                fake, target_is_real=True, for_discriminator=False)
        if self.pac is not None:
            terms["pac"] = LOSS_WEIGHTS["pac"] * self.pac(residual * brain, (cbv - base.detach()) * brain, cbv,
                                                          brain.bool())
        loss = sum(terms.values())
        generator_optimiser.zero_grad()
        self.manual_backward(loss)
        generator_optimiser.step()
        if self.discriminator is not None:
            self._discriminator_step(optimisers[1], image, cbv, output.detach())
        for scheduler in self._schedulers():
            scheduler.step()
        self.log_dict({f"train_{name}": value for name, value in terms.items()}, sync_dist=True)
        self.log("train_loss", loss, prog_bar=True, sync_dist=True)

    def _schedulers(self) -> list:
        schedulers = self.lr_schedulers()
        return [] if schedulers is None else schedulers if isinstance(schedulers, list) else [schedulers]

    def _discriminator_step(self, optimiser, image, real, fake) -> None:
        real_logits = self.discriminator(torch.cat([image, real], 1))[-1]
        fake_logits = self.discriminator(torch.cat([image, fake], 1))[-1]
        loss = 0.5 * (self.adversarial(real_logits, target_is_real=True, for_discriminator=True)
                      + self.adversarial(fake_logits, target_is_real=False, for_discriminator=True))
        optimiser.zero_grad()
        self.manual_backward(loss)
        optimiser.step()
        self.log("train_discriminator", loss, sync_dist=True)

    def validation_step(self, batch, batch_index):
        stacks = batch["image"][0]
        truth, brain, tumour = (batch[key][0].cpu().numpy() for key in ("cbv", "brain", "tumour"))
        predicted = synthesise_stacks(self.generate, stacks, self.device).numpy() * brain
        metrics = cbv_metrics(predicted, truth, brain.astype(bool), tumour.astype(bool))
        score = np.mean([metrics["ssim_brain"], metrics.get("ssim_tumour", metrics["ssim_brain"])])
        self.log("val_score", float(score), sync_dist=True, prog_bar=True, batch_size=1)
        self.log("val_ssim_brain", metrics["ssim_brain"], sync_dist=True, batch_size=1)

    def configure_optimizers(self):
        rate = self.hparams.learning_rate * (0.1 if self.hparams.stage == "joint" else 1.0)
        optimisers = [torch.optim.Adam(self.trained_parameters(), lr=rate, betas=(0.5, 0.999))]
        if self.discriminator is not None:
            optimisers.append(torch.optim.Adam(self.discriminator.parameters(), lr=rate, betas=(0.5, 0.999)))
        return cosine_annealed(optimisers, self.hparams.cosine_steps)
